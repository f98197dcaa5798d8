// A delivery that journaled and then failed part-way is finished from its journal on retry, never decoded again.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pairKey, plant, receivingSpool, sealBundle } from '../fixtures/bundles.js';

/** A beta spool with a receiver, and one sealed bundle of `count` messages from alpha waiting in alpha's landing directory. */
async function landedBundle(dir: string, count: number) {
  const key = pairKey();
  const { spool, receiver, landing } = await receivingSpool(join(dir, 'spool'), key);
  const b = await sealBundle(key, { payloads: Array.from({ length: count }, (_, i) => `m${i}`.padEnd(3, '.')) });
  plant(landing(), b.name, b.bytes);
  return { spool, receiver, name: b.name, landing: landing() };
}

describe('receiver retry after a failure past its journal', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('delivers each message once when recording the delivered mark fails after the messages were published', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-recv-'));
    const { spool, receiver, name, landing } = await landedBundle(dir, 5);

    const save = receiver.states.save.bind(receiver.states);
    receiver.states.save = async () => { throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }); };
    await expect(receiver.processOnce()).rejects.toThrow(/no space/);
    const inbox = join(spool.layout.inboxQueue('q'), 'new');
    expect(readdirSync(inbox)).toHaveLength(5); // published before the failure
    expect(readdirSync(landing)).toContain(name); // still there for the retry

    receiver.states.save = save;
    expect(await receiver.processOnce()).toBe(1);
    expect(readdirSync(inbox)).toHaveLength(5); // not 10
    expect(readdirSync(landing)).toEqual(['ferry.receipt']);
    expect(receiver.states.get('alpha').current?.hwm).toBe(5);
  });
});

describe('receiver on a full disk', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('drains a bundle one message at a time after ENOSPC, each exactly once, and removes it at the end', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-recv-full-'));
    const { spool, receiver, landing } = await landedBundle(dir, 5);

    // The whole bundle does not fit: the first delivery fails like a full disk does.
    const { InboxDelivery } = await import('../../src/inbox/delivery.js');
    const prepare = InboxDelivery.prototype.prepare;
    let calls = 0;
    InboxDelivery.prototype.prepare = async function (this: InstanceType<typeof InboxDelivery>) {
      if (calls++ === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      expect(this.items.length).toBe(1); // afterwards: one message per round
      return prepare.call(this);
    };
    try {
      await expect(receiver.processOnce()).rejects.toThrow(/no space/);
      expect(readdirSync(join(spool.layout.inboxQueue('q'), 'tmp'))).toEqual([]);
      await receiver.processOnce();
    } finally {
      InboxDelivery.prototype.prepare = prepare;
    }
    const inbox = join(spool.layout.inboxQueue('q'), 'new');
    expect(readdirSync(inbox)).toHaveLength(5);
    expect(readdirSync(landing)).toEqual(['ferry.receipt']);
    expect(receiver.states.get('alpha').current?.hwm).toBe(5);
    expect(readdirSync(spool.layout.quarantine)).toEqual([]);
  });
});
