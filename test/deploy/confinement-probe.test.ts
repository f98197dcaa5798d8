// probeConfinement over real SFTP: a chrooted login is reported confined; an SFTP-only login without a chroot is not, with findings.
import { execFileSync } from 'node:child_process';
import { mkdirSync, chownSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Client, SFTPWrapper } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { probeConfinement } from '../../src/deploy/confinement-probe.js';
import { createDeployment, runRecipe, type Deployment } from '../../src/devtools/deployment.js';
import { startSshd, type Sshd } from '../../src/devtools/private-sshd.js';

const clients: Client[] = [];
/** SSH + SFTP as `user`, the host key pinned. */
function connect(o: { port: number; user: string; identity: string; hostKeyPub: string }): Promise<SFTPWrapper> {
  const pinned = o.hostKeyPub.split(/\s+/)[1];
  const client = new ssh2.Client();
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once('error', reject);
    client.once('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
    client.connect({ host: '127.0.0.1', port: o.port, username: o.user, privateKey: readFileSync(o.identity), readyTimeout: 10_000, hostVerifier: (key: Buffer) => key.toString('base64') === pinned });
  });
}

describe('probeConfinement against real logins', () => {
  let d: Deployment;
  let loose: Sshd | undefined;
  let looseUser: string;
  let looseRoot: string;

  beforeAll(async () => {
    d = await createDeployment({ hosts: ['alpha', 'beta'], dir: mkdtempSync(join(tmpdir(), 'ferry-probe-')) });
    // A throw-away SFTP-only account with no ChrootDirectory, on a second private sshd: what a careless setup gives.
    looseUser = `f${d.id}-loose`;
    // Through runRecipe: it retries while a parallel test file holds the passwd lock.
    await runRecipe([{ why: 'a throw-away user', sh: `useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${looseUser} && usermod -p '*' ${looseUser}` }]);
    const keys = join(d.record().srvDir, 'loose-keys');
    looseRoot = join(d.record().srvDir, 'loose-landing');
    mkdirSync(keys, { mode: 0o755 });
    mkdirSync(looseRoot, { mode: 0o700 });
    const uid = Number(execFileSync('id', ['-u', looseUser], { encoding: 'utf8' }));
    chownSync(looseRoot, uid, uid);
    loose = await startSshd({ extraConfig: [`Match User ${looseUser}`, `    AuthorizedKeysFile ${keys}/%u`, '    ForceCommand internal-sftp'] });
    writeFileSync(join(keys, looseUser), `${readFileSync(`${loose.identityPath}.pub`, 'utf8')}`, { mode: 0o644 });
  }, 120_000);
  afterEach(async () => {
    await d.signalConnections('SIGCONT');
    for (const c of clients.splice(0)) c.destroy();
  });
  afterAll(async () => {
    await loose?.stop();
    if (looseUser !== undefined) await runRecipe([{ why: 'remove the throw-away user', sh: `userdel ${looseUser}` }]);
    await d?.destroy();
  });

  it('reports a chrooted login confined, with no findings, and leaves nothing behind', async () => {
    const login = d.login('beta', 'alpha');
    const sftp = await connect({ port: login.port, user: login.user, identity: login.identity, hostKeyPub: d.hostKeyPub });
    expect(await probeConfinement(sftp, '/landing', 5000)).toEqual({ confined: true, findings: [] });
    expect(readdirSync(login.chroot)).toEqual(['landing']);
    expect(readdirSync(login.landingDir)).toEqual([]);
  });

  it('reports an SFTP-only login without a chroot not confined, naming what it could see', async () => {
    if (loose === undefined) throw new Error('no second sshd');
    const sftp = await connect({ port: loose.port, user: looseUser, identity: loose.identityPath, hostKeyPub: loose.hostKeyPub });
    const report = await probeConfinement(sftp, looseRoot, 5000);
    expect(report.confined).toBe(false);
    expect(report.findings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^the login sees .*etc.* in \/ besides srv: it is not chrooted/),
        'the login can stat /etc: it is not chrooted; see `ferry peer add <this host> --print` on the receiver',
        expect.stringMatching(/^the login can stat \/etc\/passwd: /),
        expect.stringMatching(/^the login can stat \/proc: /),
      ]),
    );
    expect(report.findings.some((f) => f.includes(': `..` leads out of its chroot'))).toBe(true);
  });

  it('reports a frozen server as unproven after its first unanswered call, instead of hanging', async () => {
    const login = d.login('beta', 'alpha');
    const sftp = await connect({ port: login.port, user: login.user, identity: login.identity, hostKeyPub: d.hostKeyPub });
    await d.signalConnections('SIGSTOP');
    const t0 = Date.now();
    const report = await probeConfinement(sftp, '/landing', 150);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(report).toEqual({ confined: false, findings: ["listing / got no answer (no answer within 150 ms): the login's confinement is not proven"] });
  });
});

describe('probeConfinement against a fake SFTP server', () => {
  type Cb = (err: Error | null | undefined, value?: unknown) => void;
  /** A server that lets everything happen; `delayOpen` answers open() only after that many ms. */
  function permissive(delayOpen = 0) {
    const calls: string[] = [];
    const answer = (name: string, value?: unknown) => (...args: unknown[]) => {
      calls.push(`${name} ${typeof args[0] === 'string' ? args[0] : 'handle'}`);
      const cb = args[args.length - 1] as Cb;
      setTimeout(() => cb(undefined, value), name === 'open' ? delayOpen : 0);
    };
    const sftp = {
      readdir: answer('readdir', [{ filename: 'landing' }, { filename: 'etc' }]),
      stat: answer('stat', {}),
      realpath: answer('realpath', '/landing'),
      open: answer('open', Buffer.from('h')),
      close: answer('close'),
      unlink: answer('unlink'),
      mkdir: answer('mkdir'),
      rmdir: answer('rmdir'),
    };
    return { sftp: sftp as unknown as SFTPWrapper, calls };
  }

  it('reports a writable /, and removes the probe file and directory it made there', async () => {
    const { sftp, calls } = permissive();
    const report = await probeConfinement(sftp, '/landing', 1000);
    expect(report.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^the login can create files in \/: /), expect.stringMatching(/^the login can make directories in \/: /)]));
    const created = calls.find((c) => c.startsWith('open '))?.slice(5);
    expect(created).toMatch(/^\/\.ferry-confinement-probe-[0-9a-f]{12}$/);
    expect(calls).toContain(`unlink ${created}`);
    expect(calls).toContain(`rmdir ${created}.d`);
  });

  it('still removes a probe file whose creation was answered only after its timeout', async () => {
    const { sftp, calls } = permissive(300);
    const report = await probeConfinement(sftp, '/landing', 100);
    expect(report.findings.some((f) => f.startsWith('creating /.ferry-confinement-probe-') && f.includes('not proven'))).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    const created = calls.find((c) => c.startsWith('open '))?.slice(5);
    expect(calls).toContain(`unlink ${created}`);
  });
});
