// A quarantine that fails part-way (the operations walk once found a move failing with EXDEV) used to leave one
// reason file per retry: `ferry status` counted a dozen quarantined bundles when none were. Quarantine now copies
// in from the peer's landing directory; a copy that fails leaves neither a reason nor half a copy, and the landing
// file stays for the next try.
import { mkdtempSync, promises as fsp, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatBundleName } from '../../src/envelope/bundle-name.js';
import { quarantineCount } from '../../src/receive/receiver.js';
import { CHANNEL, pairKey, plant, receivingSpool } from '../fixtures/bundles.js';

describe('quarantine when the copy fails', () => {
  let dir = '';
  const rename = fsp.rename;
  afterEach(() => {
    fsp.rename = rename;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes no reason file until the copy is in quarantine, and counts bundles, not reasons', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-quarantine-'));
    const { spool, receiver, landing } = await receivingSpool(join(dir, 'spool'), pairKey());
    const name = formatBundleName({ epoch: 1, channel: CHANNEL, firstSeq: 1, count: 1, gap: false });
    plant(landing(), name, randomBytes(200)); // garbage: refused on sight

    fsp.rename = async (from, to) => {
      if (String(to).startsWith(spool.layout.quarantine)) throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
      return rename(from, to);
    };
    for (let i = 0; i < 3; i++) await expect(receiver.processOnce()).rejects.toThrow(/EIO/);
    expect(await quarantineCount(spool)).toBe(0);
    expect(receiver.counters.quarantined).toBe(0);
    expect(readdirSync(join(spool.layout.quarantine, 'alpha'))).toEqual([]); // no half copy, no reason
    expect(readdirSync(landing())).toContain(name); // still there, nothing lost

    fsp.rename = rename;
    await receiver.processOnce();
    expect(await quarantineCount(spool)).toBe(1);
    const files = readdirSync(join(spool.layout.quarantine, 'alpha')).sort();
    expect(files).toHaveLength(2);
    expect(files.filter((f) => f.endsWith('.reason.json'))).toHaveLength(1);
    expect(readdirSync(landing())).not.toContain(name);
  });
});
