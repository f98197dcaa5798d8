// Regression (red team, findings 3 and 4): a peer's login filled its landing directory with 20 000 tiny junk files
// under bundle names. The receiver went through all of them in one pass, copying each into quarantine, while the
// other peers waited (about 10 files a second); every second the daemon's status read every quarantine reason
// file, the reads overlapped, and the daemon ran out of memory and crash-looped. The quarantine (written by the
// daemon, outside the login's disk quota) grew without bound.
//
// Now a pass acts on at most `perPass` files of one peer before the next peer's turn; counting the quarantine reads
// directory listings only; and the quarantine keeps at most so many entries and bytes per peer, dropping the oldest.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatBundleName, openReceipt, RECEIPT_NAME } from '../../src/envelope/index.js';
import { Quarantine } from '../../src/receive/quarantine.js';
import { CHANNEL, pairKey, plant, receivingSpool, sealBundle } from '../fixtures/bundles.js';
import { names, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

function junkName(seq: number): string {
  return formatBundleName({ epoch: 1, channel: CHANNEL, firstSeq: seq, count: 1, gap: false });
}

describe('a login flooding its landing directory', () => {
  it("another peer's bundle is delivered in the first pass, and the flood drains a share per pass", async () => {
    // The flooder is alpha, whose directory comes first in a pass; gamma's honest bundle comes after the flood.
    const key = pairKey(['gamma', 'beta']);
    const { spool, receiver, landing } = await receivingSpool(join(tmp.path, 'spool'), key, { peers: ['alpha', 'gamma'], receiver: { perPass: 50, quarantine: { maxEntries: 30 } } });
    for (let i = 1; i <= 400; i++) plant(landing('alpha'), junkName(i), Buffer.from(`junk ${i}`));
    const b = await sealBundle(key, { payloads: ['from gamma'], origin: 'gamma' });
    plant(landing('gamma'), b.name, b.bytes);

    await receiver.processOnce();
    expect(names(join(spool.layout.inboxQueue('q'), 'new'))).toHaveLength(1); // gamma's message did not wait for the flood
    expect(receiver.more).toBe(true);
    expect(names(landing('alpha')).filter((n) => n !== RECEIPT_NAME).length).toBe(350);

    let passes = 1;
    while (receiver.more) {
      await receiver.processOnce();
      passes += 1;
    }
    expect(passes).toBe(8);
    expect(names(landing('alpha')).filter((n) => n !== RECEIPT_NAME)).toEqual([]);
    // The quarantine kept alpha's newest 30 entries, each with its reason; the rest were counted as pruned.
    const q = join(spool.layout.quarantine, 'alpha');
    const kept = readdirSync(q).filter((n) => !n.endsWith('.reason.json'));
    expect(kept).toHaveLength(30);
    expect(readdirSync(q).filter((n) => n.endsWith('.reason.json'))).toHaveLength(30);
    expect(kept.some((n) => n.endsWith(junkName(400)))).toBe(true);
    expect(receiver.counters.quarantinePruned).toBe(370);
    expect(await new Quarantine(spool.layout.quarantine).count()).toBe(30);
  });

  it('the quarantine keeps within its byte bound too, and a restarted receiver counts what is already there', async () => {
    const key = pairKey();
    const root = join(tmp.path, 'spool2');
    const bound = { maxBytes: 50 * 1024 };
    let r = await receivingSpool(root, key, { peers: ['gamma'], receiver: { quarantine: bound } });
    for (let i = 1; i <= 4; i++) plant(r.landing('gamma'), junkName(i), Buffer.alloc(20 * 1024, i));
    await r.receiver.processOnce();
    const q = join(r.spool.layout.quarantine, 'gamma');
    const entries = () => readdirSync(q).filter((n) => !n.endsWith('.reason.json'));
    expect(entries()).toHaveLength(2);
    r = await receivingSpool(root, key, { peers: ['gamma'], receiver: { quarantine: bound } });
    plant(r.landing('gamma'), junkName(5), Buffer.alloc(20 * 1024, 5));
    await r.receiver.processOnce();
    expect(entries()).toHaveLength(2);
    expect(entries().some((n) => n.endsWith(junkName(5)))).toBe(true);
  });

  it('junk under bundle names cannot push an authenticated refusal out of the receipt', async () => {
    const key = pairKey();
    const { receiver, landing } = await receivingSpool(join(tmp.path, 'spool3'), key, { receiver: { limits: { maxBundleMessages: 1 } } });
    const big = await sealBundle(key, { payloads: ['a', 'b'] }); // two messages: over this receiver's limit
    plant(landing(), big.name, big.bytes);
    await receiver.processOnce();
    for (let i = 10; i < 60; i++) plant(landing(), junkName(i), Buffer.from('junk'));
    await receiver.processOnce();
    const receipt = openReceipt(readFileSync(join(landing(), RECEIPT_NAME)), (id) => (id === key.id ? key : undefined), 'alpha', 'beta');
    const real = receipt.refused.filter((f) => f.firstSeq === 1);
    expect(real).toHaveLength(1);
    expect(real[0]?.authentic).toBe(true);
    expect(real[0]?.code).toBe('EENVELOPE_TOO_LARGE');
  });
});
