// Regression: the receiver's dedupe state kept each origin's 8 most recently seen channel epochs,
// "recent" by the wall clock. After the clock stepped back, the channel being delivered right then
// was stamped older than the others and evicted at once, so a replay of its bundles (a sender's
// retransmission after a crash) would have been delivered a second time (I3). Recency is now a
// counter, which no clock moves.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DedupeStore } from '../../src/receive/dedupe.js';

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const epoch = (i: number) => i.toString(16).padStart(16, '0');

describe('dedupe after the clock steps back 2 h', () => {
  it('keeps the channel it is delivering, and still refuses a replay of what it delivered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-dedupe-'));
    dirs.push(dir);
    const store = new DedupeStore(dir);
    await store.load();
    const trueNow = Date.now();
    // Eight older channels of origin beta, recorded before the jump (e.g. from earlier restarts).
    for (let i = 1; i <= 8; i++) {
      vi.spyOn(Date, 'now').mockReturnValue(trueNow - 3600_000 + i * 1000);
      await store.record('beta', epoch(i), [1]);
    }
    // The clock steps back two hours; the current channel delivers.
    vi.spyOn(Date, 'now').mockReturnValue(trueNow - 2 * 3600_000);
    await store.record('beta', epoch(9), [1, 2, 3]);

    const reloaded = new DedupeStore(dir);
    await reloaded.load();
    for (const seq of [1, 2, 3]) expect(reloaded.has('beta', epoch(9), seq)).toBe(true);
    expect(reloaded.expected('beta', epoch(9))).toBe(4);
    // Bounded still: the least recently delivered-to channel went instead.
    expect(reloaded.mark('beta', epoch(1))).toBeUndefined();
    expect(reloaded.mark('beta', epoch(2))).toBeDefined();
  });

  it('continues above the timestamps an older dedupe.json holds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-dedupe-'));
    dirs.push(dir);
    const store = new DedupeStore(dir);
    await store.load();
    vi.spyOn(Date, 'now').mockReturnValue(1_700_000_000_000);
    await store.record('beta', epoch(1), [1]);
    await store.record('beta', epoch(2), [1]);
    expect(store.mark('beta', epoch(2))?.seen).toBeGreaterThan(store.mark('beta', epoch(1))?.seen ?? Infinity);
  });
});
