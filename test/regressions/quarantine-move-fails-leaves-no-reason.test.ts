// A quarantine whose move fails (EXDEV across a wrong-way bind mount, found by the operations walk) used to
// leave one reason file per retry: `ferry status` counted a dozen quarantined bundles when none were.
import { mkdtempSync, promises as fsp, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatBundleName } from '../../src/envelope/bundle-name.js';
import { sodiumReady } from '../../src/envelope/index.js';
import { Receiver, quarantineCount } from '../../src/receive/receiver.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('quarantine when the move fails', () => {
  let dir = '';
  const rename = fsp.rename;
  afterEach(() => {
    fsp.rename = rename;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes no reason file until the bundle is in quarantine, and counts bundles, not reasons', async () => {
    await sodiumReady();
    dir = mkdtempSync(join(tmpdir(), 'ferry-quarantine-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'beta', create: true });
    const receiver = new Receiver(spool, () => undefined, quiet);
    await receiver.recover();
    const name = formatBundleName({ firstSeq: 1, count: 1, epoch: randomBytes(8).toString('hex'), origin: 'alpha' });
    writeFileSync(join(spool.layout.landingNew, name), randomBytes(200)); // garbage: quarantined on sight

    fsp.rename = async (from, to) => {
      if (String(from).startsWith(spool.layout.landingNew) && String(to).startsWith(spool.layout.quarantine)) throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
      return rename(from, to);
    };
    for (let i = 0; i < 3; i++) await expect(receiver.processBundle(name)).rejects.toThrow(/EXDEV/);
    expect(readdirSync(spool.layout.quarantine)).toEqual([]);
    expect(await quarantineCount(spool)).toBe(0);
    expect(receiver.counters.quarantined).toBe(0);
    expect(readdirSync(spool.layout.landingNew)).toEqual([name]); // still there for the operator, nothing lost

    fsp.rename = rename;
    expect(await receiver.processBundle(name)).toBe('quarantined');
    expect(await quarantineCount(spool)).toBe(1);
    const files = readdirSync(spool.layout.quarantine).sort();
    expect(files).toHaveLength(2);
    expect(files.filter((f) => f.endsWith('.reason.json'))).toHaveLength(1);
    expect(readdirSync(spool.layout.landingNew)).toEqual([]);
  });
});
