// Listing the outbox: ferry's commit files and files maildir producers renamed into outbox/<q>/new, oldest first.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSpool, readOutbox, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

describe('Outbox.entries', () => {
  it('lists a maildir producer\'s file in outbox/<q>/new as a raw entry of that queue', async () => {
    const spool = await openSpool(tmp.path);
    // What a legacy script does: write tmp/X, then mv it into new/.
    const qdir = join(spool.layout.outbox, 'legacy');
    mkdirSync(join(qdir, 'tmp'), { recursive: true });
    mkdirSync(join(qdir, 'new'));
    writeFileSync(join(qdir, 'tmp', '1700000000.M5P42.script'), 'from a shell script\n');
    expect(await spool.outbox.entries()).toEqual([]);
    renameSync(join(qdir, 'tmp', '1700000000.M5P42.script'), join(qdir, 'new', '1700000000.M5P42.script'));

    const entries = await spool.outbox.entries();
    expect(entries).toEqual([{ kind: 'raw', name: '1700000000.M5P42.script', path: join(qdir, 'new', '1700000000.M5P42.script'), queue: 'legacy' }]);
    const [msg] = await readOutbox(spool);
    expect(msg?.payload.toString()).toBe('from a shell script\n');
  });

  it('ignores dot-files in new/ (a producer\'s own temporary names)', async () => {
    const spool = await openSpool(tmp.path);
    await spool.outbox.ensureQueue('legacy');
    writeFileSync(join(spool.layout.outboxNew('legacy'), '.partial'), 'x');
    expect(await spool.outbox.entries()).toEqual([]);
  });

  it('lists commit files and raw files together, oldest first', async () => {
    const spool = await openSpool(tmp.path);
    await spool.outbox.ensureQueue('legacy');
    writeFileSync(join(spool.layout.outboxNew('legacy'), '1000000000.1_1.old-host'), 'ancient');
    await spool.send('orders', 'first');
    await spool.send('orders', 'second');
    const entries = await spool.outbox.entries();
    expect(entries.map((e) => e.kind)).toEqual(['raw', 'commit', 'commit']);
    expect((await readOutbox(spool)).map((m) => m.payload.toString())).toEqual(['ancient', 'first', 'second']);
  });

  it('counts depths per queue for commit files and raw files', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('orders', '12345');
    await tx.send('orders', '678');
    await tx.send('audit', 'a');
    await tx.commit();
    await spool.outbox.ensureQueue('legacy');
    writeFileSync(join(spool.layout.outboxNew('legacy'), '1700000000.M1P1.h'), 'xy');
    const depths = await spool.outbox.depths();
    expect(Object.fromEntries([...depths].map(([q, d]) => [q, [d.messages, d.bytes]]))).toEqual({ orders: [2, 8], audit: [1, 1], legacy: [1, 2] });
  });
});
