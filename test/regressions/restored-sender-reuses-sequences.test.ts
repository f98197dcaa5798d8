// Regression (trust boundary, attack 6): restoring a sender's spool from a snapshot reused sequence numbers under the
// same epoch: a new message was quarantined as a "replay" (documented as harmless), another inside a mixed bundle was
// discarded with no log line, and `flush` said delivered.
//
// Now the restored sender reads the receiver's receipt, sees it ahead of every sequence it ever sealed, logs
// ESENDER_RESTORED and moves the channel to a new epoch, re-sealing what waits; the receiver refuses reused
// sequences with other ids as ESEQ_REUSE (never as noise) and delivers the re-sealed messages at most once (by id).
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { daemonLogLines, ferry, startDaemon, startDaemons, statusJson, until, useClusters } from '../e2e/fixtures.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();

describe('a sender restored from a snapshot', () => {
  it('moves to a new epoch and every message committed after the restore arrives once; nothing is lost or delivered twice', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const root = cluster.host('alpha').root;
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 5, 'before'), 'alpha');
    await until('proved delivered', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);

    await cluster.stopDaemon('alpha');
    const snapshot = join(cluster.host('alpha').dir, 'snapshot');
    cpSync(root, snapshot, { recursive: true });
    await startDaemon(cluster, 'alpha');
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 5, 'lost-with-the-disk'), 'alpha');
    await until('proved delivered', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);

    // The disk dies; alpha comes back from the snapshot, which knows nothing of the last five.
    await cluster.stopDaemon('alpha');
    rmSync(root, { recursive: true, force: true });
    cpSync(snapshot, root, { recursive: true });
    const after = await sendHonest(cluster, 'alpha', 'q', 3, 'after-restore'); // sealed under reused sequence numbers
    await startDaemon(cluster, 'alpha');
    await expectExactly(cluster, 'beta', 'q', after, 'alpha');
    await until('alpha logged the restore', () => daemonLogLines(cluster, 'alpha').some((l) => l.code === 'ESENDER_RESTORED'));
    const flushed = await ferry(cluster, 'alpha', ['flush', '--timeout', '30']);
    expect(flushed.code, flushed.stderr).toBe(0);
    // And the channel goes on in its new epoch.
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 2, 'later'), 'alpha');
  });

  it('a snapshot taken with messages still waiting to be proven delivered: they arrive once, not twice', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemon(cluster, 'alpha'); // beta down: the bundles wait unproven in alpha's channel
    const pending = await sendHonest(cluster, 'alpha', 'q', 4, 'pending');
    await until('published', async () => ((await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.published ?? 0) >= 1);
    await cluster.stopDaemon('alpha');
    const root = cluster.host('alpha').root;
    const snapshot = join(cluster.host('alpha').dir, 'snapshot');
    cpSync(root, snapshot, { recursive: true });
    await startDaemons(cluster, 'alpha', 'beta');
    await expectExactly(cluster, 'beta', 'q', pending, 'alpha');
    const more = await sendHonest(cluster, 'alpha', 'q', 3, 'more');
    await expectExactly(cluster, 'beta', 'q', more, 'alpha');
    await until('proved delivered', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);

    await cluster.stopDaemon('alpha');
    rmSync(root, { recursive: true, force: true });
    cpSync(snapshot, root, { recursive: true }); // the four pending bundles are back, and look unproven
    const after = await sendHonest(cluster, 'alpha', 'q', 2, 'after');
    await startDaemon(cluster, 'alpha');
    await expectExactly(cluster, 'beta', 'q', after, 'alpha');
    await until('alpha has nothing left to prove', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);
    await expectExactly(cluster, 'beta', 'q', [], 'alpha');
  });
});
