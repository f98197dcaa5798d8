// The confined deployment, built for real on this machine: each peer's SFTP login reaches its own landing directory and nothing else.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Client, SFTPWrapper } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDeployment, destroyStale, runRecipe, spawnAs, type Deployment, type Login } from '../../src/devtools/deployment.js';
import { REPO } from '../fixtures/spool.js';

type Cb<T> = (err: Error | null | undefined, value?: T) => void;
const sftpCall = <T = unknown>(start: (cb: Cb<T>) => void): Promise<T> => new Promise((resolve, reject) => start((err, v) => (err ? reject(err) : resolve(v as T))));
const failsWith = (p: Promise<unknown>) => p.then(() => 'ok', (err: Error) => err.message);

const clients: Client[] = [];
/** SSH + SFTP as `login`, host key pinned from the sender's known_hosts. */
async function connect(login: Login): Promise<{ client: Client; sftp: SFTPWrapper }> {
  const pinned = readFileSync(login.knownHosts, 'utf8').trim().split(/\s+/)[2];
  const client = new ssh2.Client();
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once('error', reject);
    client.once('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp }))));
    client.connect({
      host: login.host, port: login.port, username: login.user, privateKey: readFileSync(login.identity), readyTimeout: 10_000,
      algorithms: { serverHostKey: ['ssh-ed25519'] }, hostVerifier: (key: Buffer) => key.toString('base64') === pinned,
    });
  });
}

/** Runs a child to its end; resolves with its exit code and output. */
function finish(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

// Tries each [op, path] as the child's user and prints what happened ('ok' or the errno code).
const PROBE = `const fs = require('fs');
console.log(JSON.stringify(JSON.parse(process.argv[1]).map(([op, p]) => {
  try {
    if (op === 'read') return fs.readFileSync(p, 'utf8');
    if (op === 'create') fs.closeSync(fs.openSync(p, 'wx', 0o640));
    else if (op === 'readdir') fs.readdirSync(p);
    else if (op === 'unlink') fs.unlinkSync(p);
    else if (op === 'groups') return process.getgroups();
    return 'ok';
  } catch (e) { return e.code; }
})));`;
type Op = ['read' | 'create' | 'readdir' | 'unlink' | 'groups', string];

async function probeAs(child: ChildProcess): Promise<unknown[]> {
  const r = await finish(child);
  if (r.code !== 0) throw new Error(`probe child failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown[];
}
const probeArgv = (ops: Op[]) => [process.execPath, '-e', PROBE, JSON.stringify(ops)];
const stdio: SpawnOptions = { stdio: ['ignore', 'pipe', 'pipe'] };

describe('a three-host deployment with daemon users', () => {
  let d: Deployment;
  let dir: string;
  let alphaOnBeta: Login;
  let gammaOnBeta: Login;

  beforeAll(async () => {
    await destroyStale();
    dir = mkdtempSync(join(tmpdir(), 'ferry-deployment-'));
    d = await createDeployment({ hosts: ['alpha', 'beta', 'gamma'], dir, daemonUsers: true });
    alphaOnBeta = d.login('beta', 'alpha');
    gammaOnBeta = d.login('beta', 'gamma');
  }, 120_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.destroy();
  });
  afterAll(async () => {
    await d?.destroy();
  });

  it('names every login f<id>-<receiver>-<sender> and every daemon user f<id>-<host>, with /landing as remote root', () => {
    expect(d.id).toMatch(/^[a-z0-9]{4,6}$/);
    expect(alphaOnBeta).toMatchObject({ user: `f${d.id}-beta-alpha`, remoteRoot: '/landing', host: '127.0.0.1', port: d.port, chroot: `/srv/ferry-test/${d.id}/beta/alpha` });
    expect(alphaOnBeta.landingDir).toBe(join(dir, 'beta', 'spool', 'landing', 'alpha'));
    expect(alphaOnBeta.identity).toBe(d.hosts.get('alpha')?.identity);
    expect(d.hosts.get('beta')?.daemonUser?.name).toBe(`f${d.id}-beta`);
    expect(statSync(join(dir, 'beta', 'spool')).mode & 0o7777).toBe(0o700);
    expect(statSync(join(dir, 'beta', 'spool', 'landing')).mode & 0o7777).toBe(0o700);
  });

  it('lets the login create (wx, 0640), write, fsync, hardlink, rename, list and unlink its files in /landing', async () => {
    const { sftp } = await connect(alphaOnBeta);
    const handle = await sftpCall<Buffer>((cb) => sftp.open('/landing/b1.tmp', 'wx', { mode: 0o640 }, cb));
    const data = Buffer.from('sealed bundle bytes');
    await sftpCall((cb) => sftp.write(handle, data, 0, data.length, 0, cb));
    await sftpCall((cb) => sftp.ext_openssh_fsync(handle, cb));
    await sftpCall((cb) => sftp.close(handle, cb));
    await sftpCall((cb) => sftp.ext_openssh_hardlink('/landing/b1.tmp', '/landing/b1.link', cb));
    await sftpCall((cb) => sftp.rename('/landing/b1.link', '/landing/b1', cb));
    await sftpCall((cb) => sftp.unlink('/landing/b1.tmp', cb));
    const names = (await sftpCall<{ filename: string }[]>((cb) => sftp.readdir('/landing', cb))).map((e) => e.filename);
    expect(names).toEqual(['b1']);
    expect(readFileSync(join(alphaOnBeta.landingDir, 'b1'), 'utf8')).toBe('sealed bundle bytes');
    await sftpCall((cb) => sftp.unlink('/landing/b1', cb));
    expect((await sftpCall<unknown[]>((cb) => sftp.readdir('/landing', cb))).length).toBe(0);
  });

  it('gives uploads the login uid, group <login> and mode 0640; the daemon user (with --init-groups) reads and unlinks them', async () => {
    const { sftp } = await connect(alphaOnBeta);
    const handle = await sftpCall<Buffer>((cb) => sftp.open('/landing/b2', 'wx', { mode: 0o640 }, cb));
    await sftpCall((cb) => sftp.write(handle, Buffer.from('payload'), 0, 7, 0, cb));
    await sftpCall((cb) => sftp.close(handle, cb));
    const file = join(alphaOnBeta.landingDir, 'b2');
    const st = statSync(file);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: alphaOnBeta.uid, gid: alphaOnBeta.gid, mode: 0o640 });
    const [groups, content, unlinked] = await probeAs(d.runAs('beta', probeArgv([['groups', ''], ['read', file], ['unlink', file]]), stdio));
    expect(groups).toContain(alphaOnBeta.gid);
    expect([content, unlinked]).toEqual(['payload', 'ok']);
    expect(existsSync(file)).toBe(false);
  });

  it("lets the login read a receipt the daemon user wrote with mode 0640: the setgid landing dir gives it the login's group", async () => {
    const receipt = join(alphaOnBeta.landingDir, 'receipt-1');
    const script = `require('fs').writeFileSync(${JSON.stringify(receipt)}, 'accepted b1', { mode: 0o640 })`;
    expect((await finish(d.runAs('beta', [process.execPath, '-e', script], stdio))).code).toBe(0);
    const st = statSync(receipt);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o777 }).toEqual({ uid: d.hosts.get('beta')?.daemonUser?.uid, gid: alphaOnBeta.gid, mode: 0o640 });
    const { sftp } = await connect(alphaOnBeta);
    expect((await sftpCall<Buffer>((cb) => sftp.readFile('/landing/receipt-1', cb))).toString()).toBe('accepted b1');
  });

  it('shows the login nothing but /landing: / lists only landing, and /etc, /proc, /var, /etc/passwd cannot be stat-ed', async () => {
    const { sftp } = await connect(alphaOnBeta);
    const root = (await sftpCall<{ filename: string }[]>((cb) => sftp.readdir('/', cb))).map((e) => e.filename).filter((n) => n !== '.' && n !== '..');
    expect(root).toEqual(['landing']);
    for (const p of ['/etc', '/proc', '/var', '/etc/passwd', '/landing/../../etc', alphaOnBeta.landingDir]) {
      expect(await failsWith(sftpCall((cb) => sftp.stat(p, cb)))).not.toBe('ok');
    }
    expect(await sftpCall<string>((cb) => sftp.realpath('/landing/../..', cb))).toBe('/');
  });

  it('refuses to let the login create or mkdir in /, or rename /landing', async () => {
    const { sftp } = await connect(alphaOnBeta);
    expect(await failsWith(sftpCall((cb) => sftp.open('/evil', 'wx', { mode: 0o600 }, cb)))).toMatch(/denied/i);
    expect(await failsWith(sftpCall((cb) => sftp.mkdir('/evil.d', cb)))).not.toBe('ok');
    expect(await failsWith(sftpCall((cb) => sftp.rename('/landing', '/elsewhere', cb)))).not.toBe('ok');
    expect(existsSync(join(alphaOnBeta.chroot, 'evil'))).toBe(false);
  });

  it('gives the login no shell, no command and no pty: ForceCommand runs internal-sftp whatever it asks', async () => {
    const { client } = await connect(alphaOnBeta);
    const output = await new Promise<string>((resolve) =>
      client.exec('echo pwned; id', (err, stream) => {
        if (err) return resolve(`refused: ${err.message}`);
        let text = '';
        stream.on('data', (b: Buffer) => (text += b.toString()));
        stream.stderr.on('data', (b: Buffer) => (text += b.toString()));
        stream.on('close', () => resolve(text));
        stream.end();
        setTimeout(() => stream.close(), 3000);
      }),
    );
    expect(output).not.toMatch(/pwned|uid=/);
    expect(output).toContain('This service allows sftp connections only.');
    const pty = await new Promise<string>((resolve) => client.shell((err, stream) => (err ? resolve(err.message) : (stream.close(), resolve('a shell with a pty')))));
    expect(pty).not.toBe('a shell with a pty');
  });

  it("refuses the login's TCP forwarding (forwardOut to the sshd itself)", async () => {
    const { client } = await connect(alphaOnBeta);
    const result = await new Promise<string>((resolve) => client.forwardOut('127.0.0.1', 40000, '127.0.0.1', d.port, (err, ch) => (err ? resolve(err.message) : (ch.close(), resolve('forwarded')))));
    expect(result).toMatch(/prohibited|refused|failure/i);
  });

  it("keeps another peer's login out of alpha's landing directory, over SFTP and through the OS", async () => {
    const secret = join(alphaOnBeta.landingDir, 'x');
    writeFileSync(secret, 'for beta only', { mode: 0o640 });
    chownSync(secret, alphaOnBeta.uid, alphaOnBeta.gid);
    const { sftp } = await connect(gammaOnBeta);
    const names = (await sftpCall<{ filename: string }[]>((cb) => sftp.readdir('/landing', cb))).map((e) => e.filename);
    expect(names).not.toContain('x');
    for (const p of [secret, '/landing/../../alpha/landing/x', `${alphaOnBeta.chroot}/landing/x`]) expect(await failsWith(sftpCall((cb) => sftp.stat(p, cb)))).not.toBe('ok');
    const mount = join(alphaOnBeta.chroot, 'landing');
    const got = await probeAs(spawnAs(gammaOnBeta, probeArgv([['read', secret], ['readdir', alphaOnBeta.landingDir], ['create', join(alphaOnBeta.landingDir, 'y')], ['read', join(mount, 'x')], ['readdir', mount]]), stdio));
    expect(got).toEqual(['EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES']);
  });

  it('keeps a local user that is neither the daemon nor a login (nobody) out of the landing directory and its mount', async () => {
    const mount = join(alphaOnBeta.chroot, 'landing');
    const got = await probeAs(spawnAs({ uid: 65534, gid: 65534 }, probeArgv([['readdir', alphaOnBeta.landingDir], ['read', join(alphaOnBeta.landingDir, 'x')], ['readdir', mount], ['read', join(mount, 'x')], ['create', join(mount, 'z')]]), stdio));
    expect(got).toEqual(['EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES']);
  });

  it('changes nothing when the recipe runs a second time, and the login still works', async () => {
    const snapshot = () => {
      const st = (p: string) => ((s) => [s.uid, s.gid, s.mode, s.ino])(statSync(p));
      const line = (file: string, name: string) => readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
      const key = join('/srv/ferry-test', d.id, 'authorized_keys', alphaOnBeta.user);
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${alphaOnBeta.chroot}/landing `)).length;
      return { landing: st(alphaOnBeta.landingDir), chroot: st(alphaOnBeta.chroot), mount: st(join(alphaOnBeta.chroot, 'landing')), key: readFileSync(key, 'utf8'), passwd: line('/etc/passwd', alphaOnBeta.user), group: line('/etc/group', alphaOnBeta.user), mounts };
    };
    const before = snapshot();
    expect(before.mounts).toBe(1);
    await runRecipe(d.recipe('beta', 'alpha'));
    expect(snapshot()).toEqual(before);
    const { sftp } = await connect(alphaOnBeta);
    expect(await sftpCall<string>((cb) => sftp.realpath('.', cb))).toBe('/landing');
  });

  it('cuts live connections with killConnections(); the listener keeps accepting', async () => {
    const { client } = await connect(alphaOnBeta);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    expect((await d.connectionPids()).length).toBeGreaterThan(0);
    expect(await d.killConnections()).toBeGreaterThan(0);
    await closed;
    const again = await connect(alphaOnBeta);
    expect(await sftpCall<string>((cb) => again.sftp.realpath('.', cb))).toBe('/landing');
  });

  it('leaves no user, group, mount, sshd or directory behind after destroy(), and a second destroy() is a no-op', async () => {
    const rec = d.record();
    await d.destroy();
    await d.destroy();
    const ours = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith(`f${d.id}-`));
    expect(ours('/etc/passwd')).toEqual([]);
    expect(ours('/etc/group')).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(`/srv/ferry-test/${d.id}`);
    expect(existsSync(`/srv/ferry-test/${d.id}`)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/proc/${rec.sshdPid}/cmdline`) && readFileSync(`/proc/${rec.sshdPid}/cmdline`, 'utf8').includes(d.id)).toBe(false);
    expect(rec.users).toHaveLength(3 + 6);
  });
});

describe('deployment cleanup', () => {
  const leftovers = (id: string) => ({
    users: readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => l.startsWith(`f${id}-`)),
    groups: readFileSync('/etc/group', 'utf8').split('\n').filter((l) => l.startsWith(`f${id}-`)),
    mounted: readFileSync('/proc/self/mountinfo', 'utf8').includes(`/srv/ferry-test/${id}/`),
    srv: existsSync(`/srv/ferry-test/${id}`),
  });
  const none = { users: [], groups: [], mounted: false, srv: false };

  it('removes the users and mounts it had already made when sshd then fails to start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-deployment-'));
    const id = `h${Math.random().toString(36).slice(2, 7)}`;
    await expect(createDeployment({ hosts: ['alpha', 'beta'], dir, id, daemonUsers: true, sshdConfig: ['NoSuchSshdOption yes'] })).rejects.toThrow(/sshd exited/);
    expect(leftovers(id)).toEqual(none);
    expect(existsSync(dir)).toBe(false);
  });

  it('lets destroyStale() remove the deployment of a SIGKILLed process, sshd and mounts included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-deployment-'));
    const script = `const { createDeployment } = await import(${JSON.stringify(join(REPO, 'dist', 'devtools', 'deployment.js'))});
const d = await createDeployment({ hosts: ['alpha', 'beta'], dir: ${JSON.stringify(dir)}, daemonUsers: true });
process.stdout.write(JSON.stringify({ id: d.id, sshd: d.record().sshdPid }) + '\\n');
setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const line = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (b: Buffer) => (text += b.toString()).includes('\n') && resolve(text));
      child.once('exit', () => reject(new Error(`child exited before building its deployment: ${text}`)));
    });
    const { id, sshd } = JSON.parse(line) as { id: string; sshd: number };
    expect(leftovers(id).users).toHaveLength(4);
    child.kill('SIGKILL');
    await exited;
    expect(await destroyStale()).toContain(id);
    expect(leftovers(id)).toEqual(none);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/proc/${sshd}/cmdline`) && readFileSync(`/proc/${sshd}/cmdline`, 'utf8').includes(id)).toBe(false);
  });
});
