// A delivery that journaled and then failed part-way is finished from its journal on retry, never decoded again.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatBundleName } from '../../src/envelope/bundle-name.js';
import { sodiumReady, writeSealedBundle, type SealKey } from '../../src/envelope/index.js';
import { Receiver } from '../../src/receive/receiver.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

async function sealed(key: SealKey, epoch: string, count: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  await writeSealedBundle({ write: async (c) => { chunks.push(Buffer.from(c)); } }, key,
    { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1, count, created: Date.now() },
    Array.from({ length: count }, (_, i) => ({
      meta: { seq: 1 + i, queue: 'q', id: `m${i}`, headers: {}, committed: Date.now(), size: 3 },
      payload: async function* () { yield Buffer.from(`m${i}`.padEnd(3, '.')); },
    })));
  return Buffer.concat(chunks);
}

/** A beta spool with a receiver, and one sealed bundle of `count` messages from alpha waiting in landing/new. */
async function landedBundle(dir: string, count: number) {
  await sodiumReady();
  const spool = await Spool.open(join(dir, 'spool'), { host: 'beta', create: true });
  const key: SealKey = { id: 'k1', secret: randomBytes(32), peers: ['alpha', 'beta'] };
  const receiver = new Receiver(spool, (id) => (id === key.id ? key : undefined), quiet);
  await receiver.recover();
  const epoch = randomBytes(8).toString('hex');
  const name = formatBundleName({ firstSeq: 1, count, epoch, origin: 'alpha' });
  writeFileSync(join(spool.layout.landingNew, name), await sealed(key, epoch, count));
  return { spool, receiver, epoch, name };
}

describe('receiver retry after a failure past its journal', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('delivers each message once when the dedupe write fails after the messages were published', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-recv-'));
    const { spool, receiver, epoch, name } = await landedBundle(dir, 5);

    const record = receiver.dedupe.record.bind(receiver.dedupe);
    receiver.dedupe.record = async () => { throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }); };
    await expect(receiver.processBundle(name)).rejects.toThrow(/no space/);
    const inbox = join(spool.layout.inboxQueue('q'), 'new');
    expect(readdirSync(inbox)).toHaveLength(5); // published before the failure
    expect(readdirSync(spool.layout.landingNew)).toEqual([name]); // still there for the retry

    receiver.dedupe.record = record;
    expect(await receiver.processBundle(name)).toBe('delivered');
    expect(readdirSync(inbox)).toHaveLength(5); // not 10
    expect(readdirSync(spool.layout.landingNew)).toEqual([]);
    expect(receiver.dedupe.expected('alpha', epoch)).toBe(6);
  });
});

describe('receiver on a full disk', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('drains a bundle one message at a time after ENOSPC, each exactly once, and removes it at the end', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-recv-full-'));
    const { spool, receiver, epoch } = await landedBundle(dir, 5);

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
    expect(readdirSync(spool.layout.landingNew)).toEqual([]);
    expect(receiver.dedupe.expected('alpha', epoch)).toBe(6);
    expect(readdirSync(spool.layout.quarantine)).toEqual([]);
  });
});
