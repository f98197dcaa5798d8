// Builds ferry's confined deployment on this machine (tests, demo, chaos, `npm run cluster`): per-peer chrooted SFTP logins behind one private sshd.
//
// Receiver R gets, for every sender P, the login `f<id>-<R>-<P>`, made by running through /bin/sh the very steps `ferry peer add
// --print` prints (peer-recipe.ts). What is made is written down first, in /srv/ferry-test/<id>/deployment.json, so destroy(),
// destroyStale() after a SIGKILLed run, or `npm run cluster -- down` from another process removes exactly that. Needs root.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { peerRecipe, REMOTE_ROOT, type RecipeStep } from '../deploy/peer-recipe.js';
import { freePort, generateKey, requireSshd, SSHD_PATH } from './private-sshd.js';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Throws `message` as an Error; usable as an expression (`a ?? raise(…)`). */
function raise(message: string): never {
  throw new Error(message);
}

/** Where every deployment keeps its root-owned parts: chroots, authorized keys, sshd, its record. */
export const SRV_BASE = '/srv/ferry-test';
const LOGIN_RE = /^[a-z_][a-z0-9._-]{0,31}$/;

/** How to build a deployment. */
export interface DeploymentOptions {
  /** Host names (ferry host names; lower-case ones keep the user names readable, others are hashed). Required. */
  hosts: string[];
  /** Where the hosts' directories go; created, made 0755 (daemon users traverse it), removed by destroy(). Required. */
  dir: string;
  /** Give every host its own daemon user `f<id>-<host>`. Default false: daemons run as the caller (root). */
  daemonUsers?: boolean;
  /** Prefix of every user made: 4 to 6 of [a-z0-9]. Default: random. */
  id?: string;
  /** sshd's LogLevel. Default `ERROR`. */
  logLevel?: string;
  /** Extra global sshd_config lines (they come before the Match blocks). Default none. */
  sshdConfig?: string[];
  /** Leave sshd running when this process exits (`npm run cluster -- up`); destroyStale() spares it while sshd lives. Default false. */
  persistent?: boolean;
}

/** A daemon user of one host. */
export interface DaemonUser { name: string; uid: number; gid: number }

/** One host: `dir` is `<dir>/<name>`, `root` its spool, `keys` its key directory (0700), `identity` its SSH client key, `knownHosts` pins the sshd. */
export interface DeploymentHost {
  name: string; dir: string; root: string; keys: string; identity: string; knownHosts: string;
  /** With `daemonUsers: true`. */
  daemonUser?: DaemonUser;
}

/**
 * How `sender` logs in to `receiver`: the login `user` (uid, primary gid), the sender's `identity` and `knownHosts`,
 * `remoteRoot` (the landing directory as the login sees it), the `chroot` and the receiver's `landingDir` for it.
 */
export interface Login {
  receiver: string; sender: string; user: string; uid: number; gid: number; host: '127.0.0.1'; port: number;
  identity: string; knownHosts: string; remoteRoot: typeof REMOTE_ROOT; chroot: string; landingDir: string;
}

/** Everything a deployment made, as JSON (`deployment.json`): enough for another process to tear it down. */
export interface DeploymentRecord {
  id: string; dir: string; srvDir: string; port: number; hostKeyPub: string; sshdPid?: number; sshdConfig: string;
  users: string[]; groups: string[]; mounts: string[]; hosts: DeploymentHost[]; logins: Login[];
}

/** A built deployment. */
export interface Deployment {
  readonly id: string;
  readonly port: number;
  /** The private sshd's host key line. */
  readonly hostKeyPub: string;
  readonly hosts: Map<string, DeploymentHost>;
  /** The login of `sender` on `receiver`. */
  login(receiver: string, sender: string): Login;
  /** The recipe steps that made that login (run them again: they change nothing). */
  recipe(receiver: string, sender: string): RecipeStep[];
  /** Spawns `argv` as `host`'s daemon user (see {@link spawnAs}), or directly without daemon users. */
  runAs(host: string, argv: string[], opts?: SpawnOptions): ChildProcess;
  /** Pids of sshd's per-connection processes. */
  connectionPids(): Promise<number[]>;
  /** Sends `signal` to every per-connection process (SIGSTOP freezes connections, SIGCONT thaws them). */
  signalConnections(signal: NodeJS.Signals): Promise<number>;
  /** SIGKILLs the per-connection processes: cuts every connection; the listener keeps accepting. */
  killConnections(): Promise<number>;
  /** What was made, as written to deployment.json. */
  record(): DeploymentRecord;
  /** Stops sshd, unmounts, deletes users, groups, /srv/ferry-test/<id> and `dir`. Idempotent. */
  destroy(): Promise<void>;
}

/** Runs a command; retries while another process holds the passwd/group locks (parallel test files). */
async function run(cmd: string, args: string[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return void (await execFileP(cmd, args));
    } catch (err) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
      if (attempt < 60 && /cannot lock|try again later|unable to lock/i.test(stderr)) await sleep(30 + Math.random() * 120);
      else throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr || (err as Error).message}`, { cause: err });
    }
  }
}

/** Runs recipe steps one by one with `/bin/sh -euc`: the semantics of the rendered script's `set -eu`. */
export async function runRecipe(steps: RecipeStep[]): Promise<void> {
  for (const s of steps) await run('/bin/sh', ['-euc', s.sh]);
}

/** uid and primary gid of `name` from /etc/passwd, or undefined. */
function passwdEntry(name: string): { uid: number; gid: number } | undefined {
  const f = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`))?.split(':');
  return f === undefined ? undefined : { uid: Number(f[2]), gid: Number(f[3]) };
}

const groupExists = (name: string) => readFileSync('/etc/group', 'utf8').split('\n').some((l) => l.startsWith(`${name}:`));

/** `f<id>-<parts>`, or `f<id>-<hash>` when that is no valid user name of at most 32 characters. */
function userName(id: string, ...parts: string[]): string {
  const plain = `f${id}-${parts.join('-')}`;
  return LOGIN_RE.test(plain) ? plain : `f${id}-${createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 12)}`;
}

/** `/proc/<pid>/<file>`, or undefined once the process is gone. */
function proc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return undefined;
  }
}

/** The fields of /proc/<pid>/stat after "pid (comm)": comm may hold spaces and parentheses, so split after the last ')'. */
const statFields = (pid: number) => proc(pid, 'stat')?.replace(/^[^]*\) /, '').split(' ');
/** Start time (clock ticks since boot), to tell a live process from a reused pid; undefined once gone (or a zombie). */
const startTime = (pid: number) => ((f) => (f?.[0] === 'Z' ? undefined : f?.[19]))(statFields(pid));
/** True when `pid` is the sshd started with `config` (its title, rewritten by sshd, still names it), not a reused pid. */
const isOurSshd = (pid: number, config: string) => proc(pid, 'cmdline')?.includes(config) === true;

/** All descendants of `root`, children first (as in private-sshd.ts, which does not export it). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    const ppid = Number(statFields(Number(entry))?.[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const out: number[] = [];
  for (let queue = [...(children.get(root) ?? [])], pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): number {
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      // gone meanwhile
    }
  }
  return pids.length;
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port }).once('connect', () => resolve(Boolean(sock.destroy()))).once('error', () => resolve(false));
  });

/** Waits until sshd `pid` accepts on `port`; its log explains a failure. */
async function waitListening(pid: number, port: number, log: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(25)) {
    if (startTime(pid) === undefined || proc(pid, 'cmdline') === '') throw new Error(`sshd exited before listening on ${port}: ${readFileSync(log, 'utf8').trim()}`);
    if (await accepts(port)) return;
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within 10 s: ${readFileSync(log, 'utf8').trim()}`);
}

/** Refuses to remove `dir` while a mount point remains under it: rm -r would delete through the mount. */
function assertNoMountUnder(dir: string): void {
  const inside = (proc(process.pid, 'mountinfo') ?? '').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (inside.length > 0) raise(`refusing to remove ${dir}: still mounted at ${inside.join(', ')}`);
}

/** Removes everything `rec` names, in reverse order of making; safe to call twice, and on a half-made deployment. */
export async function teardown(rec: DeploymentRecord): Promise<void> {
  const pid = rec.sshdPid;
  if (pid !== undefined && isOurSshd(pid, rec.sshdConfig)) {
    const conns = descendants(pid);
    signalAll(conns, 'SIGCONT'); // a frozen connection must not linger as an orphan
    signalAll([...conns, pid], 'SIGKILL');
    for (let i = 0; i < 300 && isOurSshd(pid, rec.sshdConfig); i++) await sleep(10);
  }
  for (const m of [...rec.mounts].reverse()) {
    if (!(await execFileP('mountpoint', ['-q', m]).then(() => true, () => false))) continue;
    await execFileP('umount', [m]).catch(() => execFileP('umount', ['-l', m])); // -l: a lingering process keeps it busy
  }
  // Logins first (they name daemon users as group members), then daemon users; userdel -f if a process lingers.
  for (const u of [...rec.users].reverse()) if (passwdEntry(u) !== undefined) await run('userdel', [u]).catch(() => run('userdel', ['-f', u]));
  for (const g of rec.groups) if (groupExists(g)) await run('groupdel', [g]);
  for (const d of [rec.srvDir, rec.dir]) {
    if (!existsSync(d)) continue;
    assertNoMountUnder(d);
    await rm(d, { recursive: true, force: true });
  }
}

const emptyRecord = (id: string, dir: string, srvDir: string): DeploymentRecord => ({ id, dir, srvDir, port: 0, hostKeyPub: '', sshdConfig: '', users: [], groups: [], mounts: [], hosts: [], logins: [] });

/** Tears down every deployment under /srv/ferry-test whose creating process (`owner.pid`) is dead; returns their ids. */
export async function destroyStale(): Promise<string[]> {
  const removed: string[] = [];
  for (const id of existsSync(SRV_BASE) ? readdirSync(SRV_BASE) : []) {
    const srvDir = join(SRV_BASE, id);
    let rec: DeploymentRecord | undefined;
    try {
      rec = JSON.parse(readFileSync(join(srvDir, 'deployment.json'), 'utf8')) as DeploymentRecord;
      const [pid, start] = readFileSync(join(srvDir, 'owner.pid'), 'utf8').trim().split(' ');
      if (startTime(Number(pid)) === start) continue; // alive, and not a reused pid
    } catch {
      if (Date.now() - statSync(srvDir).mtimeMs < 60_000) continue; // being created right now
    }
    await teardown(rec ?? emptyRecord(id, srvDir, srvDir));
    removed.push(id);
  }
  return removed;
}

/** Builds the deployment: users, spools, logins (through the recipe), one private sshd. Cleans up after itself when it fails. */
export async function createDeployment(opts: DeploymentOptions): Promise<Deployment> {
  requireSshd();
  if (process.getuid?.() !== 0) raise('a deployment needs root: it makes users, chroots and bind mounts');
  const hosts = [...new Set(opts.hosts)];
  if (hosts.length === 0 || hosts.length !== opts.hosts.length || !hosts.every((h) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(h))) raise(`expected distinct ferry host names, got ${JSON.stringify(opts.hosts)}`);
  const id = opts.id ?? randomBytes(8).readBigUInt64BE().toString(36).slice(0, 5);
  if (!/^[a-z0-9]{4,6}$/.test(id)) raise(`deployment id ${JSON.stringify(id)} is invalid; expected 4 to 6 of [a-z0-9]`);
  const srvDir = join(SRV_BASE, id);
  const sshdDir = join(srvDir, 'sshd');
  const includeDir = join(srvDir, 'sshd_config.d');
  const rec: DeploymentRecord = { ...emptyRecord(id, opts.dir, srvDir), sshdConfig: join(sshdDir, 'sshd_config') };
  const save = () => writeFileSync(join(srvDir, 'deployment.json'), `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  // A user and its group are recorded before they are made, so a failure halfway still gets them cleaned up.
  const track = (user: string) => { rec.users.push(user); rec.groups.push(user); save(); };
  // Every parent of a chroot must be root-owned and not group/other-writable, or sshd refuses the login.
  await mkdir(SRV_BASE, { recursive: true, mode: 0o755 });
  await chmod(SRV_BASE, 0o755);
  await mkdir(srvDir, { mode: 0o755 }); // EEXIST: the id is taken
  let child: ChildProcess | undefined;
  try {
    await chmod(srvDir, 0o755);
    save();
    writeFileSync(join(srvDir, 'owner.pid'), `${process.pid} ${startTime(process.pid) ?? ''}\n`);
    await mkdir(sshdDir, { mode: 0o700 });
    await mkdir(includeDir, { mode: 0o755 });
    rec.hostKeyPub = await generateKey(join(sshdDir, 'ssh_host_ed25519_key'), `ferry-deployment-${id}`);
    await mkdir(opts.dir, { recursive: true });
    await chmod(opts.dir, 0o755);

    for (const name of hosts) {
      const dir = join(opts.dir, name);
      const h: DeploymentHost = { name, dir, root: join(dir, 'spool'), keys: join(dir, 'keys'), identity: join(dir, 'ssh', 'id_ed25519'), knownHosts: join(dir, 'ssh', 'known_hosts') };
      if (opts.daemonUsers) {
        const user = userName(id, name);
        track(user);
        await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', user]);
        h.daemonUser = { name: user, ...(passwdEntry(user) ?? raise(`useradd made no user ${user}`)) };
      }
      // The spool and its landing/ only: ferry makes the rest of its layout itself.
      // A caller may have made (or mounted) some of these already, e.g. a small tmpfs as the spool.
      for (const d of [dir, h.root, join(h.root, 'landing'), h.keys, join(dir, 'ssh')]) {
        await mkdir(d, { recursive: true });
        await chmod(d, d === dir ? 0o755 : 0o700);
      }
      await generateKey(h.identity, `ferry@${name}`);
      if (h.daemonUser) await run('chown', ['-R', `${h.daemonUser.uid}:${h.daemonUser.gid}`, dir]);
      rec.hosts.push(h);
      save();
    }

    const hostOf = (n: string) => rec.hosts.find((h) => h.name === n) as DeploymentHost;
    const recipeOf = (r: string, p: string) =>
      peerRecipe({
        peer: p,
        login: userName(id, r, p),
        daemonUser: hostOf(r).daemonUser?.name ?? 'root',
        spoolRoot: hostOf(r).root,
        chrootBase: join(srvDir, r),
        sshdConfigFile: join(includeDir, `${r}-${p}.conf`),
        authorizedKeysDir: join(srvDir, 'authorized_keys'),
        publicKey: readFileSync(`${hostOf(p).identity}.pub`, 'utf8').trim(),
        fstab: false,
        reloadSshd: false,
        receiver: r,
      });
    for (const r of hosts) {
      for (const p of hosts.filter((x) => x !== r)) {
        const user = userName(id, r, p);
        rec.mounts.push(join(srvDir, r, p, 'landing'));
        track(user);
        await runRecipe(recipeOf(r, p));
        const e = passwdEntry(user) ?? raise(`the recipe made no user ${user}`);
        const { identity, knownHosts } = hostOf(p);
        rec.logins.push({ receiver: r, sender: p, user, ...e, host: '127.0.0.1', port: 0, identity, knownHosts, remoteRoot: REMOTE_ROOT, chroot: join(srvDir, r, p), landingDir: join(hostOf(r).root, 'landing', p) });
      }
    }

    // Privilege separation directory: sshd refuses to start as root without it.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const log = join(sshdDir, 'sshd.log');
    // The port found free can be taken before sshd binds it: retry a few times.
    for (let attempt = 0; child === undefined; attempt++) {
      rec.port = await freePort();
      const lines = [
        ...['ListenAddress 127.0.0.1', `Port ${rec.port}`, `HostKey ${join(sshdDir, 'ssh_host_ed25519_key')}`, `PidFile ${join(sshdDir, 'sshd.pid')}`],
        ...['UsePAM no', 'StrictModes yes', 'PermitRootLogin no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PubkeyAuthentication yes'],
        // Only the Match blocks authorize keys: no other account of this machine can log in here.
        'AuthorizedKeysFile none',
        ...['Subsystem sftp internal-sftp', 'MaxStartups 200', 'MaxSessions 100', `LogLevel ${opts.logLevel ?? 'ERROR'}`, ...(opts.sshdConfig ?? [])],
        // Last: each included file is one Match block, which ends at the end of its file.
        `Include ${includeDir}/*.conf`,
      ];
      await writeFile(rec.sshdConfig, `${lines.join('\n')}\n`, { mode: 0o600 });
      const fd = openSync(log, 'w', 0o600);
      const c = spawn(SSHD_PATH, ['-D', '-e', '-f', rec.sshdConfig], { stdio: ['ignore', 'ignore', fd], detached: opts.persistent ?? false });
      closeSync(fd);
      rec.sshdPid = c.pid;
      save();
      try {
        await waitListening(c.pid ?? -1, rec.port, log);
        child = c;
      } catch (err) {
        c.kill('SIGKILL');
        if (attempt >= 4) throw err;
      }
    }
    // A persistent deployment lives as long as its sshd: destroyStale() spares it until then.
    if (opts.persistent) writeFileSync(join(srvDir, 'owner.pid'), `${child.pid} ${startTime(child.pid ?? -1) ?? ''}\n`);
    if (opts.persistent) child.unref();
    const [keyType, keyB64] = rec.hostKeyPub.split(/\s+/);
    for (const h of rec.hosts) {
      await writeFile(h.knownHosts, `[127.0.0.1]:${rec.port} ${keyType} ${keyB64}\n`, { mode: 0o600 });
      if (h.daemonUser) await chown(h.knownHosts, h.daemonUser.uid, h.daemonUser.gid);
    }
    for (const l of rec.logins) l.port = rec.port;
    save();
    return handle(rec, recipeOf);
  } catch (err) {
    child?.kill('SIGKILL');
    await teardown(rec).catch(() => undefined);
    throw err;
  }
}

function handle(rec: DeploymentRecord, recipeOf: (r: string, p: string) => RecipeStep[]): Deployment {
  const sshdPid = rec.sshdPid ?? -1;
  const hosts = new Map(rec.hosts.map((h) => [h.name, h]));
  const host = (name: string) => hosts.get(name) ?? raise(`no host ${name} in deployment ${rec.id}`);
  const signalConnections = async (signal: NodeJS.Signals) => signalAll(descendants(sshdPid), signal);
  let destroyed: Promise<void> | undefined;
  return {
    id: rec.id,
    port: rec.port,
    hostKeyPub: rec.hostKeyPub,
    hosts,
    login: (r, p) => rec.logins.find((l) => l.receiver === r && l.sender === p) ?? raise(`no login of ${p} on ${r} in deployment ${rec.id}`),
    recipe: (r, p) => recipeOf(host(r).name, host(p).name),
    runAs: (name, argv, opts = {}) => spawnAs(host(name).daemonUser, argv, opts),
    connectionPids: async () => descendants(sshdPid),
    signalConnections,
    // SIGKILL, not SIGTERM: a cut must look like a dead network path, not a polite goodbye.
    killConnections: () => signalConnections('SIGKILL'),
    record: () => structuredClone(rec),
    destroy: () => (destroyed ??= teardown(rec)),
  };
}

/**
 * Spawns `argv` as `user` through `setpriv --reuid --regid --init-groups` (Node's `spawn({uid, gid})` drops the
 * supplementary groups, and the daemon reads uploads through one), or directly when `user` is undefined. cwd defaults to /.
 */
export function spawnAs(user: { uid: number; gid: number } | undefined, argv: string[], opts: SpawnOptions = {}): ChildProcess {
  const full = user === undefined ? argv : ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', ...argv];
  return spawn(full[0] as string, full.slice(1), { cwd: '/', ...opts });
}

/** `npm run cluster -- up`: a persistent deployment with daemon users, described in `<dir>/deployment.json`. The seam to extend (configs, daemons). */
export async function deploymentUp(opts: { dir: string; hosts: string[] }): Promise<Deployment> {
  const d = await createDeployment({ dir: opts.dir, hosts: opts.hosts, daemonUsers: true, persistent: true });
  await writeFile(join(opts.dir, 'deployment.json'), `${JSON.stringify(d.record(), null, 2)}\n`, { mode: 0o644 });
  return d;
}

/** `npm run cluster -- down`: tears down what `<dir>/deployment.json` describes, from any process. */
export async function deploymentDown(dir: string): Promise<DeploymentRecord> {
  const rec = JSON.parse(await readFile(join(dir, 'deployment.json'), 'utf8')) as DeploymentRecord;
  await teardown(rec);
  return rec;
}
