// Starts a private OpenSSH sshd on 127.0.0.1 (demo, tests, chaos, bench): fresh host and client keys, its own config, cut/freeze helpers.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, existsSync, constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Where the tests expect OpenSSH's server. */
export const SSHD_PATH = '/usr/sbin/sshd';
const SSH_KEYGEN = 'ssh-keygen';

/** Options for {@link startSshd}. */
export interface SshdOptions {
  /** Add `ForceCommand internal-sftp` (an SFTP-only account, as a production peer would have). Default false. */
  forceCommand?: boolean;
  /**
   * Add `ChrootDirectory` (implies `ForceCommand internal-sftp`). The chroot is created root-owned, mode 0755, under
   * `/run/ferry-test` because sshd refuses a chroot with any group/other-writable path component (so not under /tmp).
   * Needs root. Default false.
   */
  chroot?: boolean;
  /** Extra sshd_config lines appended verbatim. */
  extraConfig?: string[];
}

/** A running private sshd. */
export interface Sshd {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** The host's private ed25519 key. */
  hostKeyPath: string;
  /** The host's public key line (`ssh-ed25519 AAAA… comment`). */
  hostKeyPub: string;
  /** The client's private ed25519 key (authorized for {@link Sshd.user}). */
  identityPath: string;
  /** A known_hosts file holding `[127.0.0.1]:PORT ssh-ed25519 AAAA…`. */
  knownHostsPath: string;
  /** The account to log in as: the current user. */
  user: string;
  /** Scratch directory holding keys and config; removed by stop(). */
  dir: string;
  /** The chroot directory (as seen from outside) when started with `chroot`, else undefined. */
  chrootDir: string | undefined;
  /** The pid of the listening sshd. */
  pid: number;
  /** Pids of sshd's per-connection processes (children and their descendants). */
  connectionPids(): Promise<number[]>;
  /** Send `signal` to every per-connection process (SIGSTOP freezes live connections, SIGCONT thaws them). */
  signalConnections(signal: NodeJS.Signals): Promise<number>;
  /** Kill sshd's per-connection processes: cuts every live connection; the listener keeps accepting. */
  killConnections(): Promise<number>;
  /** Stop sshd and its connections, remove the scratch (and chroot) directories. Idempotent. */
  stop(): Promise<void>;
}

/** True when an OpenSSH sshd and ssh-keygen are installed where the tests expect them. */
export function hasSshd(): boolean {
  try {
    accessSync(SSHD_PATH, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Throws a clear error when sshd is missing: transport tests must fail, never silently skip. */
export function requireSshd(): void {
  if (!hasSshd()) {
    throw new Error(`transport tests need OpenSSH's server at ${SSHD_PATH}: install openssh-server (apt-get install openssh-server)`);
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Generate an unencrypted key pair (ed25519 unless told) at `file` / `file.pub`; returns the public key line. */
export async function generateKey(file: string, comment = 'ferry-test', type: 'ed25519' | 'rsa' | 'ecdsa' = 'ed25519'): Promise<string> {
  await execFileP(SSH_KEYGEN, ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', comment, '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

/** Start a private sshd (see {@link SshdOptions}); waits until its port accepts connections. */
export async function startSshd(options: SshdOptions = {}): Promise<Sshd> {
  requireSshd();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-sshd-'));
  let chrootDir: string | undefined;
  try {
    const hostKeyPath = path.join(dir, 'ssh_host_ed25519_key');
    const identityPath = path.join(dir, 'id_ed25519');
    const hostKeyPub = await generateKey(hostKeyPath, 'ferry-test-host');
    const clientPub = await generateKey(identityPath, 'ferry-test-client');
    const authorizedKeys = path.join(dir, 'authorized_keys');
    await writeFile(authorizedKeys, `${clientPub}\n`, { mode: 0o600 });
    // Privilege separation directory: sshd refuses to start as root without it.
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });

    if (options.chroot) {
      if (process.getuid?.() !== 0) throw new Error('a ChrootDirectory sshd needs root (sshd can only chroot as root)');
      await mkdir('/run/ferry-test', { recursive: true, mode: 0o755 });
      await chmod('/run/ferry-test', 0o755);
      chrootDir = await mkdtemp('/run/ferry-test/chroot-');
      await chmod(chrootDir, 0o755);
    }

    let lastError: unknown;
    // The port found free can be taken before sshd binds it: retry a few times.
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const cfgPath = path.join(dir, 'sshd_config');
      const lines = [
        `ListenAddress 127.0.0.1`,
        `Port ${port}`,
        `HostKey ${hostKeyPath}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        `StrictModes no`,
        `UsePAM no`,
        `PasswordAuthentication no`,
        `KbdInteractiveAuthentication no`,
        `PubkeyAuthentication yes`,
        `PermitRootLogin prohibit-password`,
        `Subsystem sftp internal-sftp`,
        `LogLevel ERROR`,
        `MaxStartups 100`,
        `MaxSessions 100`,
        ...(options.forceCommand || options.chroot ? ['ForceCommand internal-sftp'] : []),
        ...(chrootDir !== undefined ? [`ChrootDirectory ${chrootDir}`] : []),
        ...(options.extraConfig ?? []),
      ];
      await writeFile(cfgPath, `${lines.join('\n')}\n`, { mode: 0o600 });
      const child = spawn(SSHD_PATH, ['-D', '-e', '-f', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
      });
      try {
        await waitForPort(port, child, () => stderr);
      } catch (err) {
        lastError = err;
        child.kill('SIGKILL');
        continue;
      }
      const knownHostsPath = path.join(dir, 'known_hosts');
      const [keyType, keyB64] = hostKeyPub.split(/\s+/);
      await writeFile(knownHostsPath, `[127.0.0.1]:${port} ${keyType} ${keyB64}\n`, { mode: 0o600 });
      return makeHandle({ child, port, dir, hostKeyPath, hostKeyPub, identityPath, knownHostsPath, chrootDir });
    }
    throw lastError instanceof Error ? lastError : new Error('sshd did not start');
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    if (chrootDir !== undefined) await rm(chrootDir, { recursive: true, force: true });
    throw err;
  }
}

interface HandleParts {
  child: ChildProcess;
  port: number;
  dir: string;
  hostKeyPath: string;
  hostKeyPub: string;
  identityPath: string;
  knownHostsPath: string;
  chrootDir: string | undefined;
}

function makeHandle(p: HandleParts): Sshd {
  const pid = p.child.pid ?? -1;
  let stopped = false;
  const exited = new Promise<void>((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) resolve();
    else p.child.once('exit', () => resolve());
  });
  const connectionPids = () => descendants(pid);
  const signalConnections = async (signal: NodeJS.Signals): Promise<number> => {
    const pids = await connectionPids();
    for (const c of pids) {
      try {
        process.kill(c, signal);
      } catch {
        // already gone
      }
    }
    return pids.length;
  };
  return {
    port: p.port,
    hostKeyPath: p.hostKeyPath,
    hostKeyPub: p.hostKeyPub,
    identityPath: p.identityPath,
    knownHostsPath: p.knownHostsPath,
    user: os.userInfo().username,
    dir: p.dir,
    chrootDir: p.chrootDir,
    pid,
    connectionPids,
    signalConnections,
    // SIGKILL, not SIGTERM: a cut must look like a dead network path, not a polite goodbye.
    killConnections: () => signalConnections('SIGKILL'),
    async stop() {
      if (stopped) return;
      stopped = true;
      await signalConnections('SIGCONT');
      await signalConnections('SIGKILL');
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      await rm(p.dir, { recursive: true, force: true });
      if (p.chrootDir !== undefined) await rm(p.chrootDir, { recursive: true, force: true });
    },
  };
}

/**
 * All descendants of `root` (children first). Read synchronously from /proc where it exists, so a test can cut or
 * freeze connections at a precise moment of an upload (an async `ps` would let a fast upload run on meanwhile).
 */
async function descendants(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  const add = (pid: number, ppid: number) => {
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  };
  if (existsSync('/proc/self/stat')) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
        // "pid (comm) state ppid …": comm may hold spaces and parentheses, so parse after the last ')'.
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        add(Number(entry), ppid);
      } catch {
        // exited meanwhile
      }
    }
  } else {
    const { stdout } = await execFileP('ps', ['-A', '-o', 'pid=,ppid=']);
    for (const line of stdout.split('\n')) {
      const [a, b] = line.trim().split(/\s+/);
      if (a !== undefined && b !== undefined) add(Number(a), Number(b));
    }
  }
  const out: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sshd exited (${child.exitCode ?? child.signalCode}) before listening on ${port}: ${stderr().trim()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within 10 s: ${stderr().trim()}`);
}
