// Regression (cold review of the power-loss fixes): recovery's check for a message name a power cut brought back
// beside its lease ("same inode in new/ and lease/") also matched a message returned to new/ a moment before — a
// rename keeps the inode. A reclaimer (any idle take, or the daemon's 30-s pass) that had just looked at the lease
// while its holder aborted unlinked the returned message: gone from new/, lease/ and dead/, no power cut needed.
//
// Now only a second link (nlink 2: what a half-undone rename leaves) is removed; a renamed file has one link.
import { promises as fsp, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

describe('a reclaimer racing a return', () => {
  it('never removes the message its holder returned to new/ while the reclaimer was looking at the lease', async () => {
    const root = join(tmp.path, 'spool');
    const spool = await Spool.open(root, { host: 'h', create: true });
    const d = spool.delivery();
    const w = await d.add({ id: 'm1', origin: 'h', queue: 'q', headers: { k: 'v' }, committed: Date.now() });
    await w.write(Buffer.from('payload'));
    await w.end();
    await d.prepare();
    await d.publish();
    const msg = await spool.take('q', { leaseMs: 600_000 });
    expect(msg).not.toBeNull();
    const realLstat = fsp.lstat;
    let armed = true;
    // The holder aborts right after the reclaimer's lstat of the lease (the window, made certain).
    fsp.lstat = (async (p: Parameters<typeof realLstat>[0], ...rest: unknown[]) => {
      const r = await (realLstat as (...a: unknown[]) => Promise<unknown>).call(fsp, p, ...rest);
      if (armed && String(p).includes('/lease/')) {
        armed = false;
        expect(await msg?.abort('consumer failed')).toBe('returned');
      }
      return r;
    }) as typeof fsp.lstat;
    try {
      await spool.inbox.reclaimExpired('q');
    } finally {
      fsp.lstat = realLstat;
    }
    expect(armed).toBe(false);
    const dir = join(root, 'inbox', 'q');
    expect(readdirSync(join(dir, 'new'))).toHaveLength(1);
    expect(readdirSync(join(dir, 'lease'))).toEqual([]);
    const again = await spool.take('q', { leaseMs: 600_000 });
    expect((await again?.read())?.toString()).toBe('payload');
    expect(again?.headers.k).toBe('v');
  });
});
