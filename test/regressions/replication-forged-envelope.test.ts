// Regression: a bundle that is well formed but sealed with a key beta does not share with anyone is never delivered.
// An attacker who can write beta's landing area (a stolen SFTP login) but holds no pair key can make bundles that
// parse; they must be quarantined with a reason, and the daemon must go on delivering genuine traffic.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generatePairKey, makePairKey } from '../../src/keys/index.js';
import {
  bundleName, daemonAlive, expectStillDelivers, inboxFiles, landingNames, pairKey, plant, randomEpoch, sealBundle,
  startDaemons, statusJson, useClusters, waitQuarantined, usePrivateSshd,
} from '../e2e/fixtures.js';

const sshd = usePrivateSshd();
const makeCluster = useClusters();

describe('a forged envelope planted in the landing area', () => {
  it('is quarantined as EKEY_UNKNOWN when sealed with a well-formed key id beta does not hold, and delivery goes on', async () => {
    const cluster = await makeCluster(sshd(), { hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    // A fresh alpha–beta key: the id has exactly the format of the real one, but only the attacker holds it.
    const forged = await generatePairKey('alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch, 'alpha');
    await plant(cluster, 'beta', name, await sealBundle(forged, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'payments', id: 'forged-1', payload: Buffer.from('pay mallory 1000000') },
    ]));

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EKEY_UNKNOWN');
    expect(['EKEY_UNKNOWN', 'EENVELOPE_MAC']).toContain(q.code);
    expect(q.reason).toContain(forged.id);
    expect(inboxFiles(cluster, 'beta', 'payments')).toEqual([]);
    expect(landingNames(cluster, 'beta')).toEqual([]);
    expect((await statusJson(cluster, 'beta')).quarantine).toBe(1);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });

  it('is quarantined as EENVELOPE_MAC when it names the real key id but was sealed with another secret', async () => {
    const cluster = await makeCluster(sshd(), { hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const real = await pairKey(cluster, 'beta', 'alpha', 'beta');
    // The key id travels in the clear, so an attacker knows it; the secret it cannot guess.
    const forged = makePairKey({ id: real.id, peers: ['alpha', 'beta'], created: new Date(), secret: new Uint8Array(randomBytes(32)) });
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch, 'alpha');
    await plant(cluster, 'beta', name, await sealBundle(forged, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'payments', id: 'forged-2', payload: Buffer.from('pay mallory 1000000') },
    ]));

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_MAC');
    expect(inboxFiles(cluster, 'beta', 'payments')).toEqual([]);
    expect(landingNames(cluster, 'beta')).toEqual([]);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
