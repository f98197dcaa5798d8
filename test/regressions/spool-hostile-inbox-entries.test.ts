// Security regression: something other than a regular file in inbox/<q>/new (a symlink, a FIFO, a directory) is
// dead-lettered with a reason when taken: never read through, never blocking the consumer.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Spool } from '../../src/spool/spool.js';
import { deliver, names, openSpool, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

/** An entry planted in new/ with a name that sorts before anything delivered now. */
const PLANTED = '1000000000.M1P1.evil';

function readDeadMeta(spool: Spool, name: string): { dead?: { reason: string } } {
  return JSON.parse(readFileSync(join(spool.layout.inboxQueue('work'), 'meta', `${name}.json`), 'utf8')) as { dead?: { reason: string } };
}

describe('a hostile entry in an inbox queue', () => {
  it.each<[string, (path: string) => void]>([
    ['a symlink to a secret file', (path) => symlinkSync(join(tmp.path, 'secret'), path)],
    ['a dangling symlink', (path) => symlinkSync(join(tmp.path, 'nowhere'), path)],
    ['a FIFO', (path) => execFileSync('mkfifo', [path])],
    ['a directory', (path) => mkdirSync(path)],
  ])('is dead-lettered with a reason when it is %s, and take returns the next real message', async (_what, plant) => {
    writeFileSync(join(tmp.path, 'secret'), 'the secret');
    const spool = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    plant(join(spool.layout.inboxDir('work', 'new'), PLANTED));
    const [real] = await deliver(spool, 'work', ['real message']);

    const msg = await spool.take('work');
    expect(msg?.name).toBe(real);
    expect((await msg?.read())?.toString()).toBe('real message');
    await msg?.commit();

    expect(names(spool.layout.inboxDir('work', 'dead'))).toEqual([PLANTED]);
    expect(readDeadMeta(spool, PLANTED).dead?.reason).toMatch(/not a regular file/);
    expect(names(spool.layout.inboxDir('work', 'new'))).toEqual([]);
    expect(names(spool.layout.inboxDir('work', 'lease'))).toEqual([]);
    expect(readFileSync(join(tmp.path, 'secret'), 'utf8')).toBe('the secret');
  });

  it('is dead-lettered when it is the only entry, and take returns null instead of hanging on a FIFO', async () => {
    const spool = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    execFileSync('mkfifo', [join(spool.layout.inboxDir('work', 'new'), PLANTED)]);
    expect(await spool.take('work')).toBeNull();
    expect(names(spool.layout.inboxDir('work', 'dead'))).toEqual([PLANTED]);
  });

  it('never hands a symlink planted in lease/ under a taken message\'s name to the reader', async () => {
    writeFileSync(join(tmp.path, 'secret'), 'the secret');
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'work', ['real message']);
    const msg = await spool.take('work');
    if (!msg) throw new Error('nothing taken');
    // Swap the leased payload for a symlink between take and read.
    rmSync(msg.path);
    symlinkSync(join(tmp.path, 'secret'), msg.path);
    await expect(msg.read()).rejects.toMatchObject({ code: 'ESPOOL_SYMLINK' });
  });
});
