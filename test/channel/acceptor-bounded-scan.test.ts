// The acceptor reads the outbox through bounded scans (I8): order kept, held entries never starve the rest.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';
import { shippedPayloads } from '../fixtures/bundles.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('acceptor with a bounded outbox scan', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('accepts everything in commit order across many small scans, and held entries do not block the ones behind them', async () => {
    await sodiumReady();
    dir = mkdtempSync(join(tmpdir(), 'ferry-scan-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'gamma', create: true });
    const key: SealKey = { id: 'ka', secret: randomBytes(32), peers: ['alpha', 'gamma'] };
    // Queue "later" has no route: its 12 entries are the oldest and stay held.
    const acceptor = new Acceptor(spool, {
      destinations: (q) => (q === 'later' ? [] : ['alpha']), compression: () => 'none', sealingKey: () => key, lifetimeMs: 3_600_000,
    }, quiet, { scanEntries: 5, batchMessages: 3, bundleMessages: 3 });
    await acceptor.recover();
    for (let i = 0; i < 12; i++) await spool.send('later', `held-${i}`);
    for (let i = 0; i < 40; i++) await spool.send('q', `m-${String(i).padStart(2, '0')}`);

    let passes = 0;
    for (;;) {
      const r = await acceptor.acceptOnce();
      passes += 1;
      if (r.messages === 0) break;
      expect(passes).toBeLessThan(100);
    }
    // Everything routable went out, in commit order, once; the held ones are still in the outbox.
    const seen = await shippedPayloads(join(spool.layout.channel('alpha'), 'out'), key);
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => `m-${String(i).padStart(2, '0')}`));
    expect(readdirSync(spool.layout.commitsNew)).toHaveLength(12);

    // A message committed now is found by the next pass (the scan starts over at the end of the outbox).
    await spool.send('q', 'late');
    expect((await acceptor.acceptOnce()).messages).toBe(1);
  });

  it('Outbox.oldest keeps only the limit oldest, paging with after', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-scan-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'gamma', create: true });
    for (let i = 0; i < 30; i++) await spool.send('q', `m${i}`);
    const all = await spool.outbox.entries();
    const first = await spool.outbox.oldest(7);
    expect(first.map((e) => e.name)).toEqual(all.slice(0, 7).map((e) => e.name));
    const next = await spool.outbox.oldest(7, first[6]?.name);
    expect(next.map((e) => e.name)).toEqual(all.slice(7, 14).map((e) => e.name));
  });
});
