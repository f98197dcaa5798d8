// Send transactions: one commit file per transaction, invisible until commit, nothing left by abort or by a refused send.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { readCommitIndex } from '../../src/outbox/commit-file.js';
import { filesBelow, names, openSpool, readOutbox, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

describe('Spool.send', () => {
  it('returns an id and commits exactly that message, with its headers and byte-identical payload', async () => {
    const spool = await openSpool(tmp.path);
    const payload = Buffer.concat([randomBytes(300_000), Buffer.from([0, 255, 10, 13])]);
    const id = await spool.send('orders', payload, { headers: { kind: 'order', 'trace.id': 'abc-123' } });
    expect(id).toMatch(/\.alpha$/);
    const messages = await readOutbox(spool);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ kind: 'commit', queue: 'orders', id, headers: { kind: 'order', 'trace.id': 'abc-123' } });
    expect(messages[0]?.payload.equals(payload)).toBe(true);
  });

  it.each([
    ['text', 'héllo wörld', Buffer.from('héllo wörld')],
    ['an empty payload', '', Buffer.alloc(0)],
    ['a Uint8Array view into a larger buffer', new Uint8Array(Buffer.from('xxPAYLOADxx').buffer, Buffer.from('xxPAYLOADxx').byteOffset + 2, 7), Buffer.from('PAYLOAD')],
  ])('stores %s byte for byte', async (_what, input, expected) => {
    const spool = await openSpool(tmp.path);
    await spool.send('q', input);
    const [msg] = await readOutbox(spool);
    expect(msg?.payload.equals(expected)).toBe(true);
  });

  it('copies a stream payload (async generator of mixed chunks), in order', async () => {
    const spool = await openSpool(tmp.path);
    const big = randomBytes(600_000);
    async function* chunks(): AsyncGenerator<Uint8Array | string> {
      yield 'head:';
      yield big;
      await new Promise((resolve) => setImmediate(resolve));
      yield new Uint8Array([1, 2, 3]);
      yield ':tail';
    }
    await spool.send('stream', chunks());
    const [msg] = await readOutbox(spool);
    expect(msg?.payload.equals(Buffer.concat([Buffer.from('head:'), big, Buffer.from([1, 2, 3]), Buffer.from(':tail')]))).toBe(true);
  });

  it('keeps ids unique across sends', async () => {
    const spool = await openSpool(tmp.path);
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) ids.add(await spool.send('q', String(i)));
    expect(ids.size).toBe(50);
  });
});

describe('Transaction', () => {
  it('commits messages to several queues as one commit file, in send order', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    const sent = [
      await tx.send('orders', 'o1'),
      await tx.send('invoices', 'i1', { headers: { n: '1' } }),
      await tx.send('orders', 'o2'),
      await tx.send('audit', 'a1'),
    ];
    expect(await tx.commit()).toEqual(sent);
    const entries = await spool.outbox.entries();
    expect(entries).toHaveLength(1);
    const messages = await readOutbox(spool);
    expect(messages.map((m) => [m.queue, m.id, m.payload.toString()])).toEqual([
      ['orders', sent[0], 'o1'], ['invoices', sent[1], 'i1'], ['orders', sent[2], 'o2'], ['audit', sent[3], 'a1'],
    ]);
    expect(new Set(messages.map((m) => m.entry)).size).toBe(1);
  });

  it('shows nothing in the outbox before commit', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('orders', 'o1');
    await tx.send('invoices', 'i1');
    expect(await spool.outbox.entries()).toEqual([]);
    expect(names(spool.layout.commitsNew)).toEqual([]);
    await tx.commit();
    expect(await spool.outbox.entries()).toHaveLength(1);
  });

  it('leaves nothing behind when aborted', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('orders', 'o1');
    await tx.send('invoices', randomBytes(400_000));
    await tx.abort();
    expect(await spool.outbox.entries()).toEqual([]);
    expect(filesBelow(spool.layout.commits)).toEqual(['new', 'tmp']);
  });

  it('refuses to send or commit once committed or aborted (ETXN_CLOSED)', async () => {
    const spool = await openSpool(tmp.path);
    const done = spool.transaction();
    await done.send('q', 'x');
    await done.commit();
    const aborted = spool.transaction();
    await aborted.abort();
    for (const tx of [done, aborted]) {
      await expect(tx.send('q', 'y')).rejects.toMatchObject({ code: 'ETXN_CLOSED' });
      await expect(tx.commit()).rejects.toMatchObject({ code: 'ETXN_CLOSED' });
    }
    expect(await readOutbox(spool)).toHaveLength(1);
  });

  it('commits an empty transaction as a no-op', async () => {
    const spool = await openSpool(tmp.path);
    expect(await spool.transaction().commit()).toEqual([]);
    expect(filesBelow(spool.layout.commits)).toEqual(['new', 'tmp']);
  });

  it.each([
    ['../x'],
    [''],
    ['a/b'],
    ['q'.repeat(129)],
    ['.hidden'],
    ['-dash-first'],
    ['sp ace'],
    ['nul\0byte'],
  ])('refuses the queue name %j with EQUEUE_NAME and creates nothing', async (queue) => {
    const spool = await openSpool(tmp.path);
    const before = filesBelow(spool.root);
    const err = await spool.send(queue, 'payload').catch((e: unknown) => e);
    expect(isFerryError(err, 'EQUEUE_NAME')).toBe(true);
    expect(filesBelow(spool.root)).toEqual(before);
  });

  it('accepts a queue name of exactly 128 characters', async () => {
    const spool = await openSpool(tmp.path);
    await spool.send('q'.repeat(128), 'x');
    expect((await readOutbox(spool))[0]?.queue).toBe('q'.repeat(128));
  });

  it.each<[string, Record<string, string>]>([
    ['an empty header name', { '': 'v' }],
    ['a header name with a space', { 'bad key': 'v' }],
    ['a header name with a newline', { 'a\nb': 'v' }],
    ['a header name starting with a dot', { '.x': 'v' }],
    ['a header value over 4096 bytes', { big: 'é'.repeat(2049) }],
    ['more than 64 headers', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v']))],
    ['a value that is not a string', { n: 5 as unknown as string }],
  ])('refuses %s with EHEADER and creates nothing', async (_what, headers) => {
    const spool = await openSpool(tmp.path);
    const before = filesBelow(spool.root);
    const err = await spool.send('q', 'payload', { headers }).catch((e: unknown) => e);
    expect(isFerryError(err, 'EHEADER')).toBe(true);
    expect(filesBelow(spool.root)).toEqual(before);
  });

  it('keeps the transaction usable after a refused message: only the valid messages commit, readable', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('q', 'first');
    await expect(tx.send('../x', 'bad queue')).rejects.toMatchObject({ code: 'EQUEUE_NAME' });
    await expect(tx.send('q', 'bad header', { headers: { 'bad key': 'v' } })).rejects.toMatchObject({ code: 'EHEADER' });
    await expect(tx.send('q', 'bad destination', { to: ['not a host'] })).rejects.toMatchObject({ code: 'EHOST_NAME' });
    await tx.send('q', 'last');
    await tx.commit();
    expect((await readOutbox(spool)).map((m) => m.payload.toString())).toEqual(['first', 'last']);
  });

  it('aborts the whole transaction when a payload stream fails midway: nothing is committed', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('q', 'before');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('partial bytes');
      throw new Error('disk read failed');
    }
    await expect(tx.send('q', failing())).rejects.toThrow('disk read failed');
    await expect(tx.send('q', 'after')).rejects.toMatchObject({ code: 'ETXN_CLOSED' });
    await expect(tx.commit()).rejects.toMatchObject({ code: 'ETXN_CLOSED' });
    expect(await spool.outbox.entries()).toEqual([]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
  });

  it('records destinations given with `to`', async () => {
    const spool = await openSpool(tmp.path);
    const tx = spool.transaction();
    await tx.send('q', 'x', { to: ['beta', 'gamma'] });
    await tx.commit();
    const [entry] = await spool.outbox.entries();
    expect((await readCommitIndex(entry?.path as string)).messages[0]?.to).toEqual(['beta', 'gamma']);
  });
});
