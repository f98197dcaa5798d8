// Consume-transform-produce: messages taken and messages sent inside one transaction commit or abort together.

import { describe, expect, it } from 'vitest';
import type { Spool } from '../../src/spool/spool.js';
import { deliver, names, openSpool, readOutbox, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

function inboxState(spool: Spool): { new: string[]; lease: string[]; meta: string[] } {
  return {
    new: names(spool.layout.inboxDir('jobs', 'new')),
    lease: names(spool.layout.inboxDir('jobs', 'lease')),
    meta: names(spool.layout.inboxDir('jobs', 'meta')),
  };
}

describe('a transaction that takes and sends', () => {
  it('on commit removes the taken message and makes the sent message visible', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['job-1']);
    const tx = spool.transaction();
    const msg = await tx.take('jobs');
    expect(msg).not.toBeNull();
    const input = (await msg?.read())?.toString();
    await tx.send('results', `done:${input}`);
    expect(await spool.outbox.entries()).toEqual([]);
    await tx.commit();
    expect(inboxState(spool)).toEqual({ new: [], lease: [], meta: [] });
    expect((await readOutbox(spool)).map((m) => [m.queue, m.payload.toString()])).toEqual([['results', 'done:job-1']]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
  });

  it('on abort returns the taken message (one attempt counted) and sends nothing', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'jobs', ['job-1']);
    const tx = spool.transaction();
    await tx.take('jobs');
    await tx.send('results', 'done:job-1');
    await tx.abort();
    expect(inboxState(spool)).toEqual({ new: [name], lease: [], meta: [`${name}.json`] });
    expect(await readOutbox(spool)).toEqual([]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
    const again = await spool.take('jobs');
    expect(again?.name).toBe(name);
    expect(again?.meta.attempts).toBe(1);
  });

  it('takes several messages from several queues and removes them all on commit', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['j1', 'j2']);
    await deliver(spool, 'other', ['o1']);
    const tx = spool.transaction();
    await tx.take('jobs');
    await tx.take('jobs');
    await tx.take('other');
    await tx.send('results', 'r');
    await tx.commit();
    expect(inboxState(spool)).toEqual({ new: [], lease: [], meta: [] });
    expect(names(spool.layout.inboxDir('other', 'new'))).toEqual([]);
    expect(await readOutbox(spool)).toHaveLength(1);
  });

  it('commits a take-only transaction by removing the taken message', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['j1']);
    const tx = spool.transaction();
    await tx.take('jobs');
    expect(await tx.commit()).toEqual([]);
    expect(inboxState(spool)).toEqual({ new: [], lease: [], meta: [] });
    expect(await spool.outbox.entries()).toEqual([]);
  });

  it('refuses to commit a taken message on its own: the transaction owns it', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['j1']);
    const tx = spool.transaction();
    const msg = await tx.take('jobs');
    await expect(msg?.commit()).rejects.toMatchObject({ code: 'EUSAGE' });
    await tx.abort();
  });

  it('commits nothing, sends nothing and returns the message when a taken lease was lost (ELEASE_LOST)', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'jobs', ['j1']);
    const tx = spool.transaction();
    await tx.take('jobs', { leaseMs: 30 });
    await tx.send('results', 'r');
    await new Promise((resolve) => setTimeout(resolve, 80));
    await spool.recover();
    await expect(tx.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    expect(await readOutbox(spool)).toEqual([]);
    expect(inboxState(spool).new).toEqual([name]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
  });
});
