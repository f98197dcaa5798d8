// Regression: a bundle that was delivered once is never delivered again, whoever puts it back into the landing
// directory and under whatever name (the name is only a hint; the receiver dedupes on the sealed origin, epoch and
// sequence). A copy whose message ids match what was delivered is a retransmission: dropped quietly, counted as a
// duplicate, not quarantined; the message stays in the inbox exactly once.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bundleName, daemonAlive, expectStillDelivers, landingNames, pairKey, plant, randomEpoch, sealBundle, startDaemon,
  startDaemons, takeAll, until, useClusters, daemonLogLines, quarantined, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

/** Retransmissions beta's daemon dropped, from its log. */
function dropped(cluster: Parameters<typeof daemonLogLines>[0]): number {
  return daemonLogLines(cluster, 'beta').filter((l) => l.msg === 'dropped a retransmitted bundle: every message in it was delivered already').length;
}

describe('a replayed bundle', () => {
  it('is dropped as a retransmission under its own name and under another, and the message is in the inbox once', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 1, epoch);
    const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'transfers', id: 'transfer-1', payload: Buffer.from('move 100 from A to B') },
    ]);
    await plant(cluster, 'beta', name, sealed);
    await until('the original delivered', () => cluster.inboxNames('beta', 'transfers').length === 1);
    await until('the original left the landing area', () => landingNames(cluster, 'beta', 'alpha').length === 0);

    await plant(cluster, 'beta', name, sealed);
    await until('the replay dropped', () => landingNames(cluster, 'beta', 'alpha').length === 0 && dropped(cluster) === 1);
    // A name that says "sequence 7 of another epoch": beta reads the sealed header, not the name.
    const renamed = bundleName(7, 1, randomEpoch());
    await plant(cluster, 'beta', renamed, sealed);
    await until('the renamed replay dropped', () => landingNames(cluster, 'beta', 'alpha').length === 0 && dropped(cluster) === 2);
    expect(quarantined(cluster, 'beta')).toEqual([]);

    const got = await takeAll(await cluster.spool('beta'), 'transfers');
    expect(got.map((m) => [m.id, m.origin, m.payload.toString()])).toEqual([['transfer-1', 'alpha', 'move 100 from A to B']]);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });

  it('drops a copy of a bundle alpha\'s daemon really shipped, captured from beta\'s landing directory', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    // Only alpha runs at first: its bundle waits, published, in beta's landing area, where it is copied.
    await startDaemon(cluster, 'alpha');
    const id = await (await cluster.spool('alpha')).send('transfers', 'move 5 from C to D');
    const published = () => landingNames(cluster, 'beta', 'alpha').filter((n) => !n.endsWith('.part'));
    await until('alpha\'s bundle published in beta\'s landing directory', () => published().length === 1);
    const [name] = published();
    const captured = readFileSync(join(cluster.host('beta').root, 'landing', 'alpha', name as string));

    await startDaemon(cluster, 'beta');
    await until('the original delivered', () => cluster.inboxNames('beta', 'transfers').length === 1 && landingNames(cluster, 'beta', 'alpha').length === 0);
    await plant(cluster, 'beta', name as string, captured);
    await until('the replay dropped', () => landingNames(cluster, 'beta', 'alpha').length === 0 && dropped(cluster) === 1);
    expect(quarantined(cluster, 'beta')).toEqual([]);

    const got = await takeAll(await cluster.spool('beta'), 'transfers');
    expect(got.map((m) => m.id)).toEqual([id]);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
