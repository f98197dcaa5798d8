// Regression: alpha pins beta's SSH host key. When the key presented is not the pinned one (a man in the middle, a
// rebuilt host), alpha must not upload a byte: the bundle waits, `ferry status` names the host-key problem with the
// presented key's SHA256 fingerprint, the daemon keeps running, and once known_hosts is fixed everything flows.

import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { askDaemon } from '../../src/daemon/lock.js';
import type { DaemonStatus } from '../../src/daemon/daemon.js';
import { generateKey } from '../../src/devtools/private-sshd.js';
import { fingerprintSha256 } from '../../src/transport/index.js';
import {
  daemonAlive, expectStillDelivers, landingNames, sleep, startDaemons, statusJson, takeAll, until, useClusters, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

describe('a peer presenting a host key other than the pinned one', () => {
  it('gets nothing, shows up in `ferry status` with the fingerprint, and receives everything once known_hosts is fixed', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    const alpha = cluster.host('alpha');
    // alpha's own known_hosts pins a different ed25519 key for the sshd's address.
    const impostorKey = await generateKey(join(alpha.dir, 'other_host_key'), 'not-the-real-host');
    const knownHosts = join(alpha.dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${cluster.deployment.port} ${impostorKey.split(/\s+/).slice(0, 2).join(' ')}\n`, { mode: 0o600 });
    const config = cluster.configText('alpha').split(`known_hosts = "${cluster.deployment.hosts.get('alpha')!.knownHosts}"`).join(`known_hosts = "${knownHosts}"`);
    expect(config).toContain(knownHosts);
    writeFileSync(alpha.config, config);
    await startDaemons(cluster, 'alpha', 'beta');

    const presented = fingerprintSha256(Buffer.from(cluster.deployment.hostKeyPub.split(/\s+/)[1] as string, 'base64'));
    const ids = [await (await cluster.spool('alpha')).send('q', 'first'), await (await cluster.spool('alpha')).send('q', 'second')];
    await until('alpha reports the host-key failure', async () => {
      const peer = (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta');
      return peer?.lastError !== null && peer?.lastError !== undefined;
    });
    const peer = (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta');
    expect(peer?.lastError).toMatch(/host key/);
    expect(peer?.lastError).toContain(presented);
    expect(peer?.lastSuccess).toBeNull();
    expect(peer?.backlog).toBe(2);
    // The daemon keeps the error's code; status shows the sentence.
    const live = (await askDaemon(alpha.root, 'status')) as DaemonStatus | undefined;
    expect(live?.peers.find((p) => p.peer === 'beta')?.lastError?.code).toBe('EHOSTKEY');

    // It keeps retrying (with backoff) and keeps refusing; not one byte reached beta.
    await sleep(1500);
    expect(daemonAlive(cluster, 'alpha')).toBe(true);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
    expect(cluster.inboxNames('beta', 'q')).toEqual([]);

    // The operator verifies the key out of band and pins the right one.
    writeFileSync(knownHosts, readFileSync(cluster.deployment.hosts.get('alpha')!.knownHosts));
    await until('the waiting messages delivered', () => cluster.inboxNames('beta', 'q').length === 2, 45_000);
    const got = await takeAll(await cluster.spool('beta'), 'q');
    expect(got.map((m) => m.id)).toEqual(ids);
    await until('alpha\'s status shows the success', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.lastSuccess != null);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
