// Regression: a bundle that is well formed but sealed with a key beta does not share with anyone is never delivered.
// An attacker holding alpha's SFTP login on beta (not its pair key) can put bundles that parse into alpha's landing
// directory. One under a key id beta does not hold waits there (it may be a key not deployed yet: it is delivered
// once the key arrives, and shown in `ferry status` meanwhile); one under the real key id fails authentication and
// is quarantined. Either way nothing reaches the inbox and genuine traffic goes on.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generatePairKey, makePairKey } from '../../src/keys/index.js';
import {
  bundleName, daemonAlive, expectStillDelivers, inboxFiles, landingNames, pairKey, plant, randomEpoch, sealBundle,
  startDaemons, statusJson, until, useClusters, waitQuarantined, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

describe('a forged envelope planted in the landing area', () => {
  it('waits as EKEY_UNKNOWN, never delivered, when sealed with a well-formed key id beta does not hold, and delivery goes on', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    // A fresh alpha–beta key: the id has exactly the format of the real one, but only the attacker holds it.
    const forged = await generatePairKey('alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch);
    await plant(cluster, 'beta', name, await sealBundle(forged, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'payments', id: 'forged-1', payload: Buffer.from('pay mallory 1000000') },
    ]));

    await until('beta to report the bundle waiting for its key', async () => {
      const l = (await statusJson(cluster, 'beta')).landing.find((x) => x.peer === 'alpha');
      return l?.blocked?.code === 'EKEY_UNKNOWN' && l.blocked.reason.includes(forged.id);
    });
    expect(inboxFiles(cluster, 'beta', 'payments')).toEqual([]);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([name]);
    expect((await statusJson(cluster, 'beta')).quarantine).toBe(0);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
    expect(inboxFiles(cluster, 'beta', 'payments')).toEqual([]);
  });

  it('is quarantined as EENVELOPE_MAC when it names the real key id but was sealed with another secret', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const real = await pairKey(cluster, 'beta', 'alpha', 'beta');
    // The key id travels in the clear, so an attacker knows it; the secret it cannot guess.
    const forged = makePairKey({ id: real.id, peers: ['alpha', 'beta'], created: new Date(), secret: new Uint8Array(randomBytes(32)) });
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch);
    await plant(cluster, 'beta', name, await sealBundle(forged, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'payments', id: 'forged-2', payload: Buffer.from('pay mallory 1000000') },
    ]));

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_MAC');
    expect(inboxFiles(cluster, 'beta', 'payments')).toEqual([]);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
