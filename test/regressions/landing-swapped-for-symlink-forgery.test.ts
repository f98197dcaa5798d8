// Regression (trust boundary, attack 1): peers logged in as the daemon's own user, so a peer owned landing/ and could
// rename landing/new away and put a symlink in its place. The receiver listed and moved files through that path:
// pointed at inbox/<q>/new, the daemon moved every waiting plaintext message into quarantine, and every send/take on
// the host failed from then on; combined with a late key, a quarantined file was "requeued" by linking it back into
// landing/new — now state/commits/new — and a commit file of the peer's making was sealed and sent as the receiver's.
//
// Now a peer's login cannot rename its landing directory or reach anything beside it; the receiver pins each landing
// directory by descriptor and refuses it (ELANDING) when its path stops leading to that directory, never moves
// anything between a peer's directory and its own state, and removes links a peer plants without following them.
// This test also swaps the directory as root (a deployment gone wrong) to prove the receiver's side on its own.
import { readdirSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ferry, inboxFiles, startDaemons, statusJson, until, useClusters } from '../e2e/fixtures.js';
import { loginAs } from '../helpers/login.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();

describe('a landing directory swapped for a symlink', () => {
  it('cannot be done through the peer\'s login, and links it plants inside are removed without being followed', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const s = await loginAs(cluster, 'beta', 'alpha');
    try {
      await expect(s.rename('/landing', '/landing-away')).rejects.toThrow();
      await expect(s.mkdir('/landing-new')).rejects.toThrow();
      await expect(s.symlink('/landing', '/landing2')).rejects.toThrow();
      // Inside its directory it can plant links: to where the old attack pointed, and to the commit directory.
      const spool = cluster.host('beta').root;
      await s.symlink(join(spool, 'inbox', 'q', 'new'), '/landing/0000000000000001-000000000001-1-c0ffee00c0ffee00.fb');
      await s.symlink(join(spool, 'state', 'commits', 'new'), '/landing/evil');
    } finally {
      s.end();
    }
    await until('the planted links removed', () => readdirSync(join(cluster.host('beta').root, 'landing', 'alpha')).every((n) => n === 'ferry.receipt'));
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 3, 'honest'), 'alpha');
  });

  it('swapped by root while the daemon runs: the directory is refused, waiting inbox messages stay, sends and takes work, others deliver', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta', 'gamma'] });
    await startDaemons(cluster, 'alpha', 'beta', 'gamma');
    const beta = cluster.host('beta').root;
    // Messages waiting in beta's inbox: what the old attack moved into quarantine.
    const waiting = await sendHonest(cluster, 'gamma', 'q', 3, 'waiting');
    await until('they wait in beta\'s inbox', () => cluster.inboxNames('beta', 'q').length === 3);
    const landing = join(beta, 'landing', 'alpha');
    renameSync(landing, join(beta, 'landing-alpha-away'));
    symlinkSync(join(beta, 'inbox', 'q', 'new'), landing);
    await until('beta refuses alpha\'s directory', async () => (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha')?.error?.includes('symlink') === true);
    // Nothing was read or moved through the link: the waiting messages are still there, in order.
    const fromAlpha = await sendHonest(cluster, 'alpha', 'q2', 2, 'alpha-while-refused');
    await new Promise((r) => setTimeout(r, 1500));
    expect(cluster.inboxNames('beta', 'q')).toHaveLength(3);
    expect(readdirSync(join(beta, 'state', 'quarantine'))).toEqual([]);
    // Local sends and takes go on, and gamma's deliveries too.
    const file = join(cluster.host('beta').dir, 'local-message');
    writeFileSync(file, 'local');
    const sent = await ferry(cluster, 'beta', ['send', 'local', file, '--to', 'beta'], 20_000);
    expect(sent.code, `${sent.stdout} ${sent.stderr}`).toBe(0);
    await expectExactly(cluster, 'beta', 'q', waiting, 'gamma');
    await expectExactly(cluster, 'beta', 'g', await sendHonest(cluster, 'gamma', 'g', 2, 'gamma'), 'gamma');
    expect(inboxFiles(cluster, 'beta', 'q2')).toEqual([]);

    // The operator puts the directory back and reloads: alpha's messages, kept by alpha all along, arrive once.
    unlinkSync(landing);
    renameSync(join(beta, 'landing-alpha-away'), landing);
    cluster.host('beta').daemon?.kill('SIGHUP');
    await expectExactly(cluster, 'beta', 'q2', fromAlpha, 'alpha');
  });
});
