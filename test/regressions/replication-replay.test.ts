// Regression: a bundle that was delivered once is never delivered again, whoever puts it back in the landing area and
// under whatever name (the name is only a hint; the receiver dedupes on the sealed origin, channel and sequence). The
// copy is quarantined as EENVELOPE_REPLAY and the message stays in the inbox exactly once.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bundleName, daemonAlive, expectStillDelivers, landingNames, pairKey, plant, randomEpoch, sealBundle, startDaemon,
  startDaemons, takeAll, until, useClusters, waitQuarantined, usePrivateSshd,
} from '../e2e/fixtures.js';

const sshd = usePrivateSshd();
const makeCluster = useClusters();

describe('a replayed bundle', () => {
  it('is quarantined as EENVELOPE_REPLAY under its own name and under another, and the message is in the inbox once', async () => {
    const cluster = await makeCluster(sshd(), { hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch, 'alpha');
    const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'transfers', id: 'transfer-1', payload: Buffer.from('move 100 from A to B') },
    ]);
    await plant(cluster, 'beta', name, sealed);
    await until('the original delivered', () => cluster.inboxNames('beta', 'transfers').length === 1);
    await until('the original left the landing area', () => landingNames(cluster, 'beta').length === 0);

    await plant(cluster, 'beta', name, sealed);
    const same = await waitQuarantined(cluster, 'beta', name);
    expect(same.code).toBe('EENVELOPE_REPLAY');
    const renamed = bundleName(7, 1, randomEpoch(), 'alpha');
    await plant(cluster, 'beta', renamed, sealed);
    const other = await waitQuarantined(cluster, 'beta', renamed);
    expect(other.code).toBe('EENVELOPE_REPLAY');

    const got = await takeAll(await cluster.spool('beta'), 'transfers');
    expect(got.map((m) => [m.id, m.origin, m.payload.toString()])).toEqual([['transfer-1', 'alpha', 'move 100 from A to B']]);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });

  it('quarantines a copy of a bundle alpha\'s daemon really shipped, captured from beta\'s landing area', async () => {
    const cluster = await makeCluster(sshd(), { hosts: ['alpha', 'beta'] });
    // Only alpha runs at first: its bundle waits, published, in beta's landing area, where it is copied.
    await startDaemon(cluster, 'alpha');
    const id = await (await cluster.spool('alpha')).send('transfers', 'move 5 from C to D');
    await until('alpha\'s bundle in beta\'s landing area', () => landingNames(cluster, 'beta').length === 1);
    const [name] = landingNames(cluster, 'beta');
    const captured = readFileSync(join(cluster.host('beta').root, 'landing', 'new', name as string));

    await startDaemon(cluster, 'beta');
    await until('the original delivered', () => cluster.inboxNames('beta', 'transfers').length === 1 && landingNames(cluster, 'beta').length === 0);
    await plant(cluster, 'beta', name as string, captured);
    const q = await waitQuarantined(cluster, 'beta', name as string);
    expect(q.code).toBe('EENVELOPE_REPLAY');

    const got = await takeAll(await cluster.spool('beta'), 'transfers');
    expect(got.map((m) => m.id)).toEqual([id]);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
