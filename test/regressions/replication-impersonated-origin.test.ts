// Regression: a host cannot pass its messages off as another host's. gamma holds a genuine gamma–beta key and its own
// login on beta; it seals a bundle whose (sealed, authentic) header claims origin "alpha" and puts it in the only
// landing directory its login reaches, gamma's. beta accepts origin alpha only from alpha's directory and only under
// a key that binds alpha and beta, so the bundle is quarantined as EENVELOPE_ORIGIN and nothing reaches the inbox as alpha's.

import { describe, expect, it } from 'vitest';
import type { SealKey } from '../../src/envelope/index.js';
import {
  bundleName, daemonAlive, expectStillDelivers, inboxFiles, landingNames, pairKey, plant, randomEpoch, sealBundle,
  startDaemons, takeAll, until, useClusters, waitQuarantined, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

describe('a bundle from gamma claiming origin alpha', () => {
  it('is quarantined as EENVELOPE_ORIGIN, never delivered as alpha\'s, and beta keeps delivering', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta', 'gamma'] });
    await startDaemons(cluster, 'alpha', 'beta');
    // gamma's own copy of the gamma–beta key: a real, shared, unexpired key.
    const gammaBeta = await pairKey(cluster, 'gamma', 'beta', 'gamma');
    // The writer refuses to seal origin alpha under a gamma–beta key, so gamma lies about the pair the key binds;
    // the secret (all that counts on the wire) is the genuine gamma–beta one.
    const lying: SealKey = { id: gammaBeta.id, secret: gammaBeta.secret, peers: ['alpha', 'beta'] };
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch);
    await plant(cluster, 'beta', name, await sealBundle(lying, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'orders', id: 'impersonated-1', payload: Buffer.from('cancel every order'), headers: { from: 'alpha' } },
    ]), 'gamma');

    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_ORIGIN');
    expect(q.reason).toMatch(/origin alpha/);
    expect(inboxFiles(cluster, 'beta', 'orders')).toEqual([]);
    expect(q.peer).toBe('gamma');
    expect(landingNames(cluster, 'beta', 'gamma')).toEqual([]);
    expect(daemonAlive(cluster, 'beta')).toBe(true);

    // alpha's genuine traffic still flows, and gamma's key still works for gamma's own origin.
    await expectStillDelivers(cluster, 'alpha', 'beta');
    const honestEpoch = randomEpoch();
    await plant(cluster, 'beta', bundleName(1, 1, honestEpoch), await sealBundle(gammaBeta, { origin: 'gamma', destination: 'beta', channel: honestEpoch, firstSeq: 1 }, [
      { queue: 'from-gamma', id: 'honest-1', payload: Buffer.from('hello from gamma') },
    ]), 'gamma');
    await until('gamma\'s honest bundle delivered', () => cluster.inboxNames('beta', 'from-gamma').length === 1);
    const [honest] = await takeAll(await cluster.spool('beta'), 'from-gamma');
    expect({ origin: honest?.origin, id: honest?.id }).toEqual({ origin: 'gamma', id: 'honest-1' });
  });
});
