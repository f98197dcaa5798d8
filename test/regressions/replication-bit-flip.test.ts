// Regression: one flipped bit anywhere in a sealed bundle (disk rot, a hostile relay, a tampering SFTP user) means
// nothing of it is delivered — not even the messages before the flip that had already verified — and the bundle is
// quarantined with a reason. The daemon carries on.

import { describe, expect, it } from 'vitest';
import {
  bundleName, daemonAlive, expectStillDelivers, inboxFiles, landingNames, pairKey, plant, randomEpoch, sealBundle,
  startDaemons, useClusters, waitQuarantined, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

function flipBit(bytes: Buffer, at: number, bit = 3): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] as number) ^ (1 << bit);
  return copy;
}

function pseudoRandom(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

describe('a sealed bundle with one bit flipped', () => {
  it('is quarantined as EENVELOPE_MAC when the flip is in the middle of a small (secretbox) bundle', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch);
    const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'ledger', id: 'flip-1', payload: pseudoRandom(4096, 7) },
    ]);
    await plant(cluster, 'beta', name, flipBit(sealed, Math.floor(sealed.length / 2)));

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_MAC');
    expect(inboxFiles(cluster, 'beta', 'ledger')).toEqual([]);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });

  it('delivers none of a streamed bundle\'s messages when the flip comes after the first ones verified', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 3, epoch);
    // 3 × 512 KiB: more than a secretbox holds, so it is sealed as a stream of 64 KiB chunks verified one by one.
    const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [1, 2, 3].map((i) => ({
      queue: 'ledger', id: `stream-${i}`, payload: pseudoRandom(512 * 1024, i),
    })));
    expect(sealed[5]).toBe(2); // mode 2: secretstream
    // At 85% the first two messages have already been verified and written to the inbox's tmp/.
    await plant(cluster, 'beta', name, flipBit(sealed, Math.floor(sealed.length * 0.85)));

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_MAC');
    expect(inboxFiles(cluster, 'beta', 'ledger')).toEqual([]);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
