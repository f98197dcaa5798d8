// Taking from an inbox queue: oldest first, invisible while taken, gone on commit, back in front on abort,
// dead-lettered after too many attempts, returned when a lease expires.

import { readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InboxMeta } from '../../src/inbox/meta.js';
import type { Spool } from '../../src/spool/spool.js';
import { deliver, names, openSpool, sleep, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

function dir(spool: Spool, sub: 'new' | 'lease' | 'meta' | 'dead' | 'tmp'): string {
  return spool.layout.inboxDir('work', sub);
}

function metaOf(spool: Spool, name: string): InboxMeta {
  return JSON.parse(readFileSync(join(dir(spool, 'meta'), `${name}.json`), 'utf8')) as InboxMeta;
}

async function takeOrFail(spool: Spool, opts: { leaseMs?: number } = {}) {
  const msg = await spool.take('work', opts);
  if (!msg) throw new Error('expected a message');
  return msg;
}

describe('delivery', () => {
  it('makes nothing visible before publish, and payload plus meta visible after', async () => {
    const spool = await openSpool(tmp.path);
    const delivery = spool.delivery();
    const writer = await delivery.add({ queue: 'work', origin: 'beta', id: 'm-1', headers: { k: 'v' }, committed: 1_700_000_000_000 });
    await writer.write(Buffer.from('pay'));
    await writer.write(Buffer.from('load'));
    await writer.end();
    await delivery.prepare();
    expect(names(dir(spool, 'new'))).toEqual([]);
    expect(await spool.take('work')).toBeNull();
    await delivery.publish();
    const [name] = delivery.items.map((i) => i.name);
    expect(names(dir(spool, 'new'))).toEqual([name]);
    expect(readFileSync(join(dir(spool, 'new'), name as string), 'utf8')).toBe('payload');
    expect(names(dir(spool, 'tmp'))).toEqual([]);
  });

  it('leaves nothing when discarded', async () => {
    const spool = await openSpool(tmp.path);
    const delivery = spool.delivery();
    const writer = await delivery.add({ queue: 'work', origin: 'beta', id: 'm-1', headers: {}, committed: 1 });
    await writer.write(Buffer.from('x'));
    await delivery.discard();
    expect(names(dir(spool, 'tmp'))).toEqual([]);
    expect(names(dir(spool, 'new'))).toEqual([]);
  });
});

describe('Spool.take', () => {
  it('takes messages oldest first, with their origin, id and headers', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'work', ['one'], { origin: 'beta', id: 'id-1', headers: { kind: 'first' } });
    await deliver(spool, 'work', ['two'], { origin: 'gamma', id: 'id-2', headers: { kind: 'second' } });
    await deliver(spool, 'work', ['three'], { origin: 'beta', id: 'id-3' });
    const seen: [string, string, string, Record<string, string>][] = [];
    for (let i = 0; i < 3; i++) {
      const msg = await takeOrFail(spool);
      seen.push([(await msg.read()).toString(), msg.origin, msg.id, msg.headers]);
      await msg.commit();
    }
    expect(seen).toEqual([
      ['one', 'beta', 'id-1', { kind: 'first' }],
      ['two', 'gamma', 'id-2', { kind: 'second' }],
      ['three', 'beta', 'id-3', {}],
    ]);
    expect(await spool.take('work')).toBeNull();
  });

  it('hides a taken message from a second take, in this process and from another spool handle', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'work', ['only']);
    const msg = await takeOrFail(spool);
    expect(await spool.take('work')).toBeNull();
    const other = await openSpool(tmp.path);
    expect(await other.take('work')).toBeNull();
    expect(names(dir(spool, 'new'))).toEqual([]);
    expect(names(dir(spool, 'lease'))).toHaveLength(1);
    await msg.commit();
  });

  it('removes the message and its meta on commit', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'work', ['bye']);
    expect(names(dir(spool, 'meta'))).toEqual([`${name}.json`]);
    const msg = await takeOrFail(spool);
    await msg.commit();
    for (const sub of ['new', 'lease', 'meta', 'dead', 'tmp'] as const) expect(names(dir(spool, sub))).toEqual([]);
    expect(await spool.take('work')).toBeNull();
    await expect(msg.commit()).rejects.toMatchObject({ code: 'ETXN_CLOSED' });
  });

  it('returns an aborted message to the front of the queue with one attempt counted and the reason kept', async () => {
    const spool = await openSpool(tmp.path);
    const [first] = await deliver(spool, 'work', ['a', 'b', 'c']);
    const msg = await takeOrFail(spool);
    expect(msg.name).toBe(first);
    expect(await msg.abort('handler crashed')).toBe('returned');
    const again = await takeOrFail(spool);
    expect(again.name).toBe(first);
    expect(again.meta.attempts).toBe(1);
    expect(again.meta.errors).toEqual(['handler crashed']);
    await again.commit();
  });

  it('returns an aborted message to the front for a consumer in another process (another spool handle)', async () => {
    const spool = await openSpool(tmp.path);
    const other = await openSpool(tmp.path);
    const [first] = await deliver(spool, 'work', ['a', 'b']);
    const msg = await takeOrFail(other);
    await msg.abort();
    expect((await takeOrFail(spool)).name).toBe(first);
  });

  it('moves a message to dead/ with a reason in its meta after maxAttempts aborts', async () => {
    const spool = await openSpool(tmp.path, { maxAttempts: 3 });
    const [name] = await deliver(spool, 'work', ['poison']);
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) outcomes.push(await (await takeOrFail(spool)).abort(`failure ${i + 1}`));
    expect(outcomes).toEqual(['returned', 'returned', 'dead']);
    expect(await spool.take('work')).toBeNull();
    expect(names(dir(spool, 'dead'))).toEqual([name]);
    expect(readFileSync(join(dir(spool, 'dead'), name as string), 'utf8')).toBe('poison');
    const meta = metaOf(spool, name as string);
    expect(meta.attempts).toBe(3);
    expect(meta.dead?.reason).toContain('failure 3');
    expect(meta.errors).toEqual(['failure 1', 'failure 2', 'failure 3']);
    expect(await spool.inbox.counts('work')).toEqual({ new: 0, leased: 0, cur: 0, dead: 1 });
  });

  it('returns a message whose lease expired, counting one attempt (reclaimExpired)', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'work', ['slow']);
    const msg = await takeOrFail(spool, { leaseMs: 50 });
    expect(await spool.inbox.reclaimExpired('work', msg.leaseExpires - 1)).toBe(0);
    expect(names(dir(spool, 'new'))).toEqual([]);
    await sleep(120);
    expect(await spool.inbox.reclaimExpired('work')).toBe(1);
    expect(names(dir(spool, 'new'))).toEqual([name]);
    expect(metaOf(spool, name as string).attempts).toBe(1);
  });

  it('takes a message whose lease expired again, with one attempt counted (take reclaims)', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'work', ['slow']);
    await takeOrFail(spool, { leaseMs: 50 });
    await sleep(120);
    const again = await takeOrFail(spool);
    expect(again.name).toBe(name);
    expect(again.meta.attempts).toBe(1);
  });

  it('refuses commit with ELEASE_LOST after the lease was reclaimed, leaving the message in the queue', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'work', ['slow']);
    const stale = await takeOrFail(spool, { leaseMs: 50 });
    await sleep(120);
    await spool.recover();
    await expect(stale.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    expect(names(dir(spool, 'new'))).toEqual([name]);
  });

  it('refuses commit with ELEASE_LOST when the expired message was taken again by the same process, and the new holder keeps it', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'work', ['slow']);
    const stale = await takeOrFail(spool, { leaseMs: 50 });
    await sleep(120);
    const fresh = await takeOrFail(spool);
    expect(fresh.name).toBe(name);
    await expect(stale.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    await expect(stale.extend(60_000)).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    expect((await fresh.read()).toString()).toBe('slow');
    await fresh.commit();
    expect(await spool.take('work')).toBeNull();
  });

  it('does not reclaim a lease whose file was written in the same clock tick it was claimed, before its expiry is stamped', async () => {
    const spool = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    // What a consumer leaves for an instant: the message renamed into lease/, mtime still its write time, which
    // the file system's coarse clock can make equal to the rename's ctime.
    const lease = join(dir(spool, 'lease'), '1700000000.M1P1.alpha~P1-0a0b0c0d');
    writeFileSync(lease, 'just claimed');
    const st = statSync(lease);
    expect(st.mtimeMs).toBe(st.ctimeMs);
    expect(await spool.inbox.reclaimExpired('work')).toBe(0);
    expect(names(dir(spool, 'lease'))).toHaveLength(1);
    expect(await spool.inbox.reclaimExpired('work', Date.now() + 60_000)).toBe(1);
  });

  it('keeps a message whose lease was extended', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'work', ['long job']);
    const msg = await takeOrFail(spool, { leaseMs: 50 });
    await msg.extend(60_000);
    await sleep(120);
    expect(await spool.inbox.reclaimExpired('work')).toBe(0);
    expect(await spool.take('work')).toBeNull();
    await msg.commit();
    expect(names(dir(spool, 'lease'))).toEqual([]);
  });

  it('waits for a message delivered while it waits', async () => {
    const spool = await openSpool(tmp.path);
    const producer = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    const timer = setTimeout(() => { void deliver(producer, 'work', ['late']); }, 150);
    try {
      const msg = await spool.take('work', { waitMs: 10_000 });
      expect((await msg?.read())?.toString()).toBe('late');
    } finally {
      clearTimeout(timer);
    }
  });

  it('returns null after the wait when nothing comes', async () => {
    const spool = await openSpool(tmp.path);
    expect(await spool.take('work', { waitMs: 300 })).toBeNull();
  });

  it('stops waiting when its signal aborts', async () => {
    const spool = await openSpool(tmp.path);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    expect(await spool.take('work', { waitMs: 60_000, signal: controller.signal })).toBeNull();
  });

  it('takes a plain maildir file dropped into new/ with meta derived from the file', async () => {
    const spool = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    const name = '1700000000.M7P99.legacy-host';
    writeFileSync(join(dir(spool, 'new'), name), 'dropped by a legacy deliverer');
    const when = new Date(1_700_000_123_000);
    utimesSync(join(dir(spool, 'new'), name), when, when);
    const msg = await takeOrFail(spool);
    expect(msg.name).toBe(name);
    expect(msg.meta).toMatchObject({ id: name, origin: 'alpha', queue: 'work', headers: {}, attempts: 0, committed: 1_700_000_123_000 });
    expect((await msg.read()).toString()).toBe('dropped by a legacy deliverer');
    await msg.commit();
    expect(names(dir(spool, 'new'))).toEqual([]);
  });

  it('streams a taken payload', async () => {
    const spool = await openSpool(tmp.path);
    const big = Buffer.alloc(1_000_000, 7);
    await deliver(spool, 'work', [big]);
    const msg = await takeOrFail(spool);
    const chunks: Buffer[] = [];
    for await (const chunk of msg.stream()) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    expect(msg.size).toBe(big.length);
  });
});
