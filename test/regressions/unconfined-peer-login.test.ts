// Regression (trust boundary, attack 3): DESIGN and the README's configuration example showed `remote_root =
// "/var/spool/ferry"`, and the tests, demo and chaos harness all ran that shape (same uid, whole spool, no chroot).
// Through such a login a peer committed plaintext into the receiver's outbox, wrote into its inbox, downloaded its
// inbox and both of its pair keys, and overwrote its dedupe state; `ferry doctor` noticed nothing.
//
// Now `ferry doctor` logs in and proves the login confined to its landing directory, failing with the fix when it is
// not; and no example, default, demo path or cluster config hands a peer the spool.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runChecks } from '../../src/cli/doctor.js';
import { DEFAULT_REMOTE_ROOT, starterConfig } from '../../src/config/config.js';
import { startSshd, type Sshd } from '../../src/devtools/private-sshd.js';
import { REPO } from '../fixtures/spool.js';
import { useClusters } from '../e2e/fixtures.js';

const makeCluster = useClusters();
const sshds: Sshd[] = [];
afterEach(async () => {
  for (const s of sshds.splice(0)) await s.stop();
});

describe('a peer login that reaches more than its landing directory', () => {
  it('fails `ferry doctor` on the sender with the fix, while a confined one passes', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    const confined = await runChecks({ config: cluster.host('alpha').config });
    expect(confined.find((c) => c.name === 'beta confinement')).toMatchObject({ ok: true });

    // An SFTP account without a chroot (this machine's root, over a second private sshd), pointed at beta's landing directory.
    const loose = await startSshd({ forceCommand: true });
    sshds.push(loose);
    const landing = cluster.deployment.login('beta', 'alpha').landingDir;
    const config = cluster.configText('alpha').replace(/\[peers\.beta\]\nssh = "[^"]+"\nidentity = "[^"]+"\nknown_hosts = "[^"]+"\nremote_root = "[^"]+"/,
      `[peers.beta]\nssh = "${loose.user}@127.0.0.1:${loose.port}"\nidentity = "${loose.identityPath}"\nknown_hosts = "${loose.knownHostsPath}"\nremote_root = "${landing}"`);
    expect(config).toContain(loose.knownHostsPath);
    writeFileSync(cluster.host('alpha').config, config);
    const checks = await runChecks({ config: cluster.host('alpha').config });
    const c = checks.find((x) => x.name === 'beta confinement');
    expect(c?.ok).toBe(false);
    expect(c?.detail).toMatch(/\/etc/);
    expect(c?.fix).toMatch(/ferry peer add alpha --print/);
  });

  it('appears in no example, default, demo, harness or contrib file', () => {
    expect(DEFAULT_REMOTE_ROOT).toBe('/landing');
    expect(starterConfig('alpha', '/var/spool/ferry', '/etc/ferry/keys')).not.toMatch(/^\s*#?\s*remote_root\s*=\s*"\/var\/spool/m);
    const files = ['README.md', 'CHANGELOG.md', ...readdirSync(join(REPO, 'contrib'), { recursive: true }).map((f) => join('contrib', String(f))), ...readdirSync(join(REPO, 'scripts')).map((f) => join('scripts', f))];
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(join(REPO, f), 'utf8');
      } catch {
        continue; // a directory
      }
      // A remote_root setting that is not the landing directory under the chroot.
      for (const m of text.matchAll(/^\s*remote_root\s*=\s*"([^"]*)"/gm)) expect(m[1], `${f}: ${m[0]}`).toBe('/landing');
    }
  });
});
