// Regression (red team, finding 1; found again by the long hostile chaos runs): a peer's login planted uploads larger
// than the receiver's limit under the names its honest daemon would use next. The receiver refused them by name
// (EENVELOPE_TOO_LARGE, a final refusal), the sender matched the refusal to its own bundle of that name and
// dead-lettered honest messages, then matched the same refusal to the gap record it sent in their place and
// dead-lettered that too: the channel waited for the gap forever, and `ferry flush` said all was well.
//
// Now a refusal is final only when it is about the sender's own bytes: the refused bytes authenticated (the receiver
// names the bundle by its sealed header), or the sender can check the cause on its copy (its bundle really is over
// the receiver's limit). A gap record is matched only by a refusal of a gap record.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatBundleName } from '../../src/envelope/index.js';
import { refusalIsFinal, refusalMatches } from '../../src/channel/receipt-view.js';
import { landingNames, startDaemon, statusJson, until, useClusters } from '../e2e/fixtures.js';
import { loginAs } from '../helpers/login.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();
const KiB = 1024;

describe('refusals of entries a login planted under its daemon\'s names', () => {
  it('oversized uploads planted under the next names are refused, and the honest bundles of those names still arrive', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'], receive: { max_bundle_bytes: 256 * KiB } });
    await startDaemon(cluster, 'beta');
    await startDaemon(cluster, 'alpha');
    const sent = await sendHonest(cluster, 'alpha', 'q', 1, 'first'); // the channel exists, its next names known
    await until('the first message delivered', () => cluster.inboxNames('beta', 'q').length === 1, 30_000);
    const state = JSON.parse(readFileSync(join(cluster.host('alpha').root, 'state', 'channels', 'beta', 'state.json'), 'utf8')) as { epoch: number; channel: string; nextSeq: number };
    const planted: string[] = [];
    const s = await loginAs(cluster, 'beta', 'alpha');
    try {
      for (let seq = state.nextSeq; seq < state.nextSeq + 6; seq++) {
        for (const count of [1, 2]) {
          for (const gap of [false, true]) {
            const name = formatBundleName({ epoch: state.epoch, channel: state.channel, firstSeq: seq, count, gap });
            // Half as a finished upload, half as one still "in progress": both are cut for their size.
            const path = `/landing/${name}${seq % 2 === 0 ? '' : '.part'}`;
            await s.put(path, Buffer.alloc(300 * KiB, 7));
            planted.push(path);
          }
        }
      }
    } finally {
      s.end();
    }
    await until('beta refused and removed every planted upload', () => landingNames(cluster, 'beta', 'alpha').length === 0, 30_000);
    // One message at a time, each its own bundle: the names the login planted.
    for (let i = 0; i < 6; i++) {
      sent.push(...(await sendHonest(cluster, 'alpha', 'q', 1, `honest-${i}`)));
      await until(`message ${i} delivered`, () => cluster.inboxNames('beta', 'q').length === i + 2, 30_000);
    }
    await expectExactly(cluster, 'beta', 'q', sent, 'alpha', 60_000);
    const dead = join(cluster.host('alpha').root, 'state', 'dead', 'beta');
    expect(existsSync(dead) ? readdirSync(dead) : []).toEqual([]);
    const beta = (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha');
    expect(beta?.gaps ?? 0).toBe(0);
    expect(planted.length).toBe(24);
  }, 120_000);
});

describe('refusalIsFinal and refusalMatches', () => {
  const base = { epoch: 3, channel: 'c1', firstSeq: 10, count: 2, code: 'EENVELOPE_TOO_LARGE', reason: 'r', at: 0 };
  const parts = { epoch: 3, channel: 'c1', firstSeq: 10, count: 2, gap: false };

  it('gives up on authenticated bytes only, or on a size our own copy shows over the limit', () => {
    expect(refusalIsFinal({ ...base, authentic: true }, { size: 1, keyExpired: false })).toBe(true);
    expect(refusalIsFinal({ ...base }, { size: 10_000, keyExpired: false })).toBe(false); // no limit named: cannot check
    expect(refusalIsFinal({ ...base, limit: 4096 }, { size: 1000, keyExpired: false })).toBe(false); // ours fits: planted
    expect(refusalIsFinal({ ...base, limit: 4096 }, { size: 5000, keyExpired: false })).toBe(true);
    expect(refusalIsFinal({ ...base, limit: 4096 }, { size: undefined, keyExpired: false })).toBe(false);
  });

  it('an expired-key refusal is final only when our key ring says the key expired too', () => {
    const f = { ...base, code: 'EKEY_EXPIRED' };
    expect(refusalIsFinal(f, { size: 1, keyExpired: false })).toBe(false);
    expect(refusalIsFinal(f, { size: 1, keyExpired: true })).toBe(true);
    expect(refusalIsFinal({ ...f, code: 'EENVELOPE_AUTH' }, { size: 1, keyExpired: true })).toBe(false); // never final
  });

  it('a refusal of a bundle never matches the gap record sent in its place, nor the other way round', () => {
    expect(refusalMatches(base, parts)).toBe(true);
    expect(refusalMatches(base, { ...parts, gap: true })).toBe(false);
    expect(refusalMatches({ ...base, gap: true }, { ...parts, gap: true })).toBe(true);
    expect(refusalMatches({ ...base, gap: true }, parts)).toBe(false);
    expect(refusalMatches(base, { ...parts, count: 1 })).toBe(false);
  });
});
