// inboundChecks on a receiver: a deployment made by the recipe passes every check; each broken precondition fails with its fix.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inboundChecks, type Check } from '../../src/deploy/inbound-check.js';
import { createDeployment, runRecipe, type Deployment, type Login } from '../../src/devtools/deployment.js';

/** Runs one command through runRecipe, which retries while a parallel test file holds the passwd/group lock. */
const sh = (cmd: string) => runRecipe([{ why: cmd, sh: cmd }]);

describe('inboundChecks', () => {
  let d: Deployment;
  let login: Login;
  let daemon: { name: string; uid: number; gid: number };
  let sshdConfig: string;

  beforeAll(async () => {
    d = await createDeployment({ hosts: ['alpha', 'beta'], dir: mkdtempSync(join(tmpdir(), 'ferry-inbound-')), daemonUsers: true });
    login = d.login('beta', 'alpha');
    const u = d.hosts.get('beta')?.daemonUser;
    if (u === undefined) throw new Error('no daemon user');
    daemon = u;
    sshdConfig = d.record().sshdConfig;
  }, 120_000);
  // Every test breaks one thing; running the recipe again must repair what it broke.
  afterEach(async () => {
    await runRecipe(d.recipe('beta', 'alpha'));
  });
  afterAll(async () => {
    await d?.destroy();
  });

  const run = (extra: { sshdConfig?: string } = {}) =>
    inboundChecks({ peer: 'alpha', spoolRoot: d.hosts.get('beta')?.root ?? '', login: login.user, chrootBase: join('/srv/ferry-test', d.id, 'beta'), daemonUid: daemon.uid, sshdConfig, ...extra });
  const failed = (checks: Check[]) => checks.filter((c) => !c.ok || c.warning);
  const one = (checks: Check[], name: string) => {
    const c = checks.find((x) => x.name === name);
    if (c === undefined) throw new Error(`no check ${name} in ${checks.map((x) => x.name).join(', ')}`);
    return c;
  };
  const mount = () => join(login.chroot, 'landing');

  it('passes every check on a deployment made by the recipe, sshd -T included', async () => {
    const checks = await run();
    expect(failed(checks)).toEqual([]);
    const names = checks.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining([`login ${login.user}`, 'landing/alpha mode', `chroot ${login.chroot}`, `bind mount ${mount()}`, `sshd chrootdirectory for ${login.user}`, `sshd forcecommand for ${login.user}`]));
  });

  it('fails a landing directory of mode 0777 with `chmod 2770 …`', async () => {
    chmodSync(login.landingDir, 0o777);
    const c = one(await run(), 'landing/alpha mode');
    expect(c).toMatchObject({ ok: false, fix: `chmod 2770 ${login.landingDir}` });
    expect(c.detail).toMatch(/0777: other users can reach/);
  });

  it("fails a landing directory of the daemon's own group with `chgrp <login> …`", async () => {
    chownSync(login.landingDir, daemon.uid, daemon.gid);
    expect(one(await run(), 'landing/alpha group')).toMatchObject({ ok: false, fix: `chgrp ${login.user} ${login.landingDir}` });
  });

  it('fails a landing directory owned by someone else with `chown <daemon user> …`', async () => {
    chownSync(login.landingDir, login.uid, login.gid);
    expect(one(await run(), 'landing/alpha owner')).toMatchObject({ ok: false, fix: `chown ${daemon.name} ${login.landingDir}` });
  });

  it('fails a symlink in place of the landing directory', async () => {
    const moved = `${login.landingDir}.real`;
    renameSync(login.landingDir, moved);
    symlinkSync(moved, login.landingDir);
    try {
      const c = one(await run(), 'landing/alpha');
      expect(c.ok).toBe(false);
      expect(c.detail).toMatch(/is a symlink/);
      expect(c.fix).toMatch(/^rm .*; install -d -o /);
    } finally {
      unlinkSync(login.landingDir);
      renameSync(moved, login.landingDir);
    }
  });

  it('fails a missing bind mount with `mount --bind <landing> <chroot>/landing`', async () => {
    execFileSync('umount', [mount()]);
    const c = one(await run(), `bind mount ${mount()}`);
    expect(c.ok).toBe(false);
    expect(c.fix).toContain(`mount --bind ${login.landingDir} ${mount()}`);
  });

  it('fails a group-writable chroot (sshd would refuse the login) with `chmod go-w`', async () => {
    chmodSync(login.chroot, 0o775);
    const c = one(await run(), `chroot ${login.chroot}`);
    expect(c.ok).toBe(false);
    expect(c.detail).toContain(`${login.chroot} is uid 0 mode 0775`);
    expect(c.fix).toBe(`chown root:root ${login.chroot} && chmod go-w ${login.chroot}`);
  });

  it('fails a daemon user that is not in the login group with `usermod -a -G`', async () => {
    await sh(`gpasswd -d ${daemon.name} ${login.user} >/dev/null`);
    expect(one(await run(), `daemon user in group ${login.user}`)).toMatchObject({ ok: false, fix: `usermod -a -G ${login.user} ${daemon.name}, then restart the daemon` });
  });

  it('fails a login with a real shell with `usermod -s /usr/sbin/nologin`', async () => {
    await sh(`usermod -s /bin/sh ${login.user}`);
    try {
      expect(one(await run(), `login ${login.user} shell`)).toMatchObject({ ok: false, fix: `usermod -s /usr/sbin/nologin ${login.user}` });
    } finally {
      await sh(`usermod -s /usr/sbin/nologin ${login.user}`);
    }
  });

  it('fails a missing login, pointing at `ferry peer add … --print`', async () => {
    const c = one(await inboundChecks({ peer: 'zeta', spoolRoot: d.hosts.get('beta')?.root ?? '', chrootBase: join('/srv/ferry-test', d.id, 'beta'), daemonUid: daemon.uid, sshdConfig }), 'login ferry-in-zeta');
    expect(c).toMatchObject({ ok: false, fix: 'run `ferry peer add zeta --print` and follow it' });
  });

  it("fails when sshd's config has no Match block for the login: no chroot, no forced internal-sftp, forwarding and tty on", async () => {
    const bare = join(d.record().srvDir, 'sshd', 'bare_config');
    writeFileSync(bare, readFileSync(sshdConfig, 'utf8').replace(/^Include .*$/m, ''));
    const checks = await run({ sshdConfig: bare });
    // (x11forwarding defaults to no, so it passes even without the block.)
    for (const key of ['chrootdirectory', 'forcecommand', 'allowtcpforwarding', 'permittty']) {
      const c = one(checks, `sshd ${key} for ${login.user}`);
      expect(c.ok, key).toBe(false);
      expect(c.fix).toMatch(/ferry peer add alpha --print/);
    }
    expect(one(checks, `sshd chrootdirectory for ${login.user}`).detail).toBe(`none; expected ${login.chroot}`);
  });

  it('passes every check again once the recipe has run after each of the breakages above', async () => {
    expect(failed(await run())).toEqual([]);
  });
});
