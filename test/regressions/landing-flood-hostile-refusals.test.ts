// Regression (red team 2, findings 2, 6 and 7; fixed: quarantine copies a 1 MiB prefix, holds cost no per-pass budget,
// identical refusals are kept once).
// Red team 2: receiver-level attacks by a peer's login on its own landing directory.
import { openSync, closeSync, ftruncateSync, readdirSync, readFileSync, statfsSync, writeSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatBundleName, openReceipt, RECEIPT_NAME } from '../../src/envelope/index.js';
import { CHANNEL, pairKey, plant, receivingSpool, sealBundle } from '../fixtures/bundles.js';
import { useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const ls = (p: string) => (existsSync(p) ? readdirSync(p).sort() : []);

function receiptOf(landingDir: string, key: ReturnType<typeof pairKey>) {
  return openReceipt(readFileSync(join(landingDir, RECEIPT_NAME)), (id) => (id === key.id ? key : undefined), 'alpha', 'beta');
}

describe('refusal list', () => {
  it('replays of one old authentic bundle (closed epoch) under many names no longer push a genuine final refusal out of the receipt', async () => {
    const key = pairKey();
    const { receiver, landing } = await receivingSpool(join(tmp.path, 's1'), key, { receiver: { limits: { maxBundleMessages: 2 } as never } });
    const old = await sealBundle(key, { epoch: 1, payloads: ['old'] });
    plant(landing(), old.name, old.bytes);
    await receiver.processOnce();
    const e2 = await sealBundle(key, { epoch: 2, payloads: ['e2-1'] });
    plant(landing(), e2.name, e2.bytes);
    await receiver.processOnce();
    // The honest sender's genuinely oversized bundle (3 messages > limit 2): an authentic, final refusal.
    const x = await sealBundle(key, { epoch: 2, firstSeq: 2, payloads: ['a', 'b', 'c'] });
    plant(landing(), x.name, x.bytes);
    // The login replays the old epoch-1 bundle 16 times, under names that sort after x.
    for (let i = 0; i < 16; i++) plant(landing(), formatBundleName({ epoch: 2, channel: CHANNEL, firstSeq: 100 + i, count: 1, gap: false }), old.bytes);
    await receiver.processOnce();
    const r = receiptOf(landing(), key);
    const codes = r.refused.map((f) => `${f.code}:${f.epoch}:${f.firstSeq}:${f.authentic}`);
    console.log(codes);
    expect(r.refused.some((f) => f.firstSeq === 2 && f.code === 'EENVELOPE_TOO_LARGE')).toBe(true); // FAILS: pushed out
  });
});

describe('quarantine', () => {
  it('sparse files (a few bytes of quota each) are copied into quarantine only up to its 1 MiB prefix', async () => {
    const key = pairKey();
    const root = join(tmp.path, 's2');
    const { spool, receiver, landing } = await receivingSpool(root, key, { receiver: { perPass: 8 } });
    const fsBefore = statfsSync(root);
    const t0 = Date.now();
    for (let i = 0; i < 8; i++) {
      const name = formatBundleName({ epoch: 1, channel: CHANNEL, firstSeq: 10 + i, count: 1, gap: false });
      const fd = openSync(join(landing(), name), 'w', 0o640);
      writeSync(fd, Buffer.from('FRYB'));
      ftruncateSync(fd, 64 * 2 ** 20); // sparse: 4 KiB on disk
      closeSync(fd);
    }
    const du = ls(landing()).reduce((n, f) => n + (f === RECEIPT_NAME ? 0 : statSync(join(landing(), f)).blocks * 512), 0);
    const t1 = Date.now();
    await receiver.processOnce();
    const took = Date.now() - t1;
    const fsAfter = statfsSync(root);
    const qdir = join(spool.layout.quarantine, 'alpha');
    const qbytes = ls(qdir).reduce((n, f) => n + statSync(join(qdir, f)).blocks * 512, 0);
    console.log({ plantedOnDisk: du, quarantineOnDisk: qbytes, freeDrop: (fsBefore.bavail - fsAfter.bavail) * fsBefore.bsize, passMs: took, plantMs: t1 - t0 });
    expect(qbytes).toBeLessThan(64 * 2 ** 20); // FAILS: 8 x 64 MiB of real blocks for 32 KiB of the login's quota
  }, 120_000);
});

describe('budget', () => {
  it('junk naming an unknown key (held, not refused) costs no per-pass budget: the honest bundle behind it is delivered', async () => {
    const key = pairKey();
    const { spool, receiver, landing } = await receivingSpool(join(tmp.path, 's3'), key, { receiver: { perPass: 20 } });
    const junk = Buffer.concat([Buffer.from('FRY1'), Buffer.from([2, 1, 3]), Buffer.from('zzz'), Buffer.alloc(24), Buffer.alloc(64)]);
        for (let i = 0; i < 20; i++) plant(landing(), formatBundleName({ epoch: 0, channel: CHANNEL, firstSeq: 1 + i, count: 1, gap: false }), junk);
    const honest = await sealBundle(key, { payloads: ['honest'] });
    plant(landing(), honest.name, honest.bytes);
    for (let i = 0; i < 5; i++) await receiver.processOnce();
    console.log(ls(landing()), receiver.status()[0]?.blocked, receiver.more);
    expect(ls(join(spool.layout.inboxQueue('q'), 'new')).length).toBe(1); // FAILS: the honest bundle is never read, and receiver.more stays true (the daemon's receive loop spins)
  });
});
