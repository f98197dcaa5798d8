// A cluster of ferry hosts on this machine, on the confined deployment the README documents: for the demo, the tests, the chaos harness and the benchmarks.
//
// Each host gets its own spool, key directory, config and SSH identity; every sender logs in to each receiver as
// its own chrooted, SFTP-only system user that reaches nothing but its landing directory there (deployment.ts, which
// runs the very steps `ferry peer add --print` prints). One private loopback sshd serves them all, so every byte
// between hosts crosses real SSH/SFTP. Daemons run as real child processes (so tests can SIGKILL them), as each
// host's own system user when `daemonUsers` is set. Needs root.
import { type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, createWriteStream, openSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatePairKey, keyFileName, writeKeyFile } from '../keys/index.js';
import { Spool } from '../spool/spool.js';
import { createDeployment, type Deployment, type DeploymentHost } from './deployment.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The CLI entry point (bin/ferry) of this checkout. */
export const FERRY_BIN = join(here, '..', '..', 'bin', 'ferry');

/** One host of a cluster. */
export interface ClusterHost {
  name: string;
  dir: string;
  root: string;
  keys: string;
  config: string;
  log: string;
  /** The host's own system user, when the cluster has daemon users. */
  daemonUser?: { name: string; uid: number; gid: number };
  daemon?: ChildProcess;
}

/** How to build a cluster. */
export interface ClusterOptions {
  /** Host names. */
  hosts: string[];
  /** Routes per host: queue → destinations. Default: every host routes "*" to every other host. */
  routes?: Record<string, Record<string, string[]>>;
  /** Extra top-level config lines per host (e.g. `lifetime = 5`). */
  extraConfig?: string[];
  /** Extra `[receive]` settings (limits) for every host, e.g. `{ max_bundle_bytes: 1048576 }`. */
  receive?: Record<string, number | string>;
  /** Log level of the daemons. Default "info". */
  logLevel?: string;
  /** Where to put everything (made, and removed by destroy()). */
  dir: string;
  /** Run each host's daemon (and its CLI through {@link Cluster.runAs}) as its own system user. Default false: as the caller. */
  daemonUsers?: boolean;
  /** Leave the sshd running after this process exits (`npm run cluster -- up`). Default false. */
  persistent?: boolean;
}

/** A set of hosts that ship to each other through their confined logins. */
export class Cluster {
  readonly hosts = new Map<string, ClusterHost>();

  private constructor(readonly opts: ClusterOptions, readonly deployment: Deployment) {}

  /** Builds the deployment, then writes spools, configs and one pair key per pair of hosts. Cleans up when it fails. */
  static async create(opts: ClusterOptions): Promise<Cluster> {
    const deployment = await createDeployment({ hosts: opts.hosts, dir: opts.dir, daemonUsers: opts.daemonUsers ?? false, persistent: opts.persistent ?? false });
    try {
      const c = new Cluster(opts, deployment);
      for (const name of opts.hosts) {
        const d = deployment.hosts.get(name) as DeploymentHost;
        c.hosts.set(name, { name, dir: d.dir, root: d.root, keys: d.keys, config: join(d.dir, 'ferry.toml'), log: join(d.dir, 'daemon.log'), ...(d.daemonUser ? { daemonUser: d.daemonUser } : {}) });
      }
      for (const h of c.hosts.values()) {
        writeFileSync(h.config, c.configText(h.name), { mode: 0o644 });
        if (h.daemonUser) {
          await c.runAs(h.name, ['init', '--host', h.name]);
          chownSync(h.config, 0, 0);
        } else {
          await Spool.open(h.root, { host: h.name, create: true });
        }
      }
      const names = [...c.hosts.keys()];
      for (let i = 0; i < names.length; i++) {
        for (let j = i + 1; j < names.length; j++) {
          const key = await generatePairKey(names[i] as string, names[j] as string);
          for (const n of [names[i], names[j]]) {
            const h = c.host(n as string);
            const file = join(h.keys, keyFileName(key));
            await writeKeyFile(file, key);
            if (h.daemonUser) chownSync(file, h.daemonUser.uid, h.daemonUser.gid);
          }
        }
      }
      return c;
    } catch (err) {
      await deployment.destroy().catch(() => undefined);
      throw err;
    }
  }

  /** The host named `name`. */
  host(name: string): ClusterHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in this cluster`);
    return h;
  }

  /** The config text of a host: one [peers.*] table per other host, through that host's login for this one. */
  configText(name: string): string {
    const h = this.host(name);
    const lines = [`host = "${name}"`, `root = "${h.root}"`, `keys = "${h.keys}"`, `log_level = "${this.opts.logLevel ?? 'info'}"`, ...(this.opts.extraConfig ?? []), ''];
    for (const peer of this.hosts.keys()) {
      if (peer === name) continue;
      const l = this.deployment.login(peer, name);
      lines.push(`[peers.${peer}]`, `ssh = "${l.user}@${l.host}:${l.port}"`, `identity = "${l.identity}"`, `known_hosts = "${l.knownHosts}"`, `remote_root = "${l.remoteRoot}"`, '');
    }
    // Where the deployment's recipe put this host's inbound logins and chroots, for `ferry doctor`.
    lines.push('[receive]', `login_prefix = "${loginPrefix(this.deployment, name)}"`, `chroot_base = "${chrootBase(this.deployment, name)}"`, `sshd_config = "${this.deployment.record().sshdConfig}"`);
    for (const [k, v] of Object.entries(this.opts.receive ?? {})) lines.push(`${k} = ${typeof v === 'number' ? v : JSON.stringify(v)}`);
    lines.push('');
    lines.push('[routes]');
    const routes = this.opts.routes?.[name] ?? { '*': [...this.hosts.keys()].filter((p) => p !== name) };
    for (const [q, dests] of Object.entries(routes)) lines.push(`${q === '*' ? '"*"' : q} = [${dests.map((d) => `"${d}"`).join(', ')}]`);
    return `${lines.join('\n')}\n`;
  }

  /** Opens a host's spool in this process (to send or take through the library; only without daemon users). */
  spool(name: string): Promise<Spool> {
    return Spool.open(this.host(name).root, { host: name });
  }

  /** Runs `ferry ARGS --config <host's config>` as the host's user; resolves with its exit code and output. */
  runAs(name: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const h = this.host(name);
    const child = this.deployment.runAs(name, [process.execPath, FERRY_BIN, ...args, '--config', h.config], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdin?.end(input ?? '');
    return new Promise((resolve) => child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr })));
  }

  /**
   * Starts a host's daemon as a child process; resolves once it is up (its control socket answers), or at once
   * with `wait: false` (the chaos harness restarts many daemons without waiting).
   */
  async startDaemon(name: string, env: Record<string, string> = {}, wait = true, detached = false): Promise<ChildProcess> {
    const h = this.host(name);
    let child: ChildProcess;
    if (detached) {
      // Outlives this process (`npm run cluster -- up`): its output goes straight to the log file.
      const fd = openSync(h.log, 'a', 0o644);
      child = this.deployment.runAs(name, [process.execPath, FERRY_BIN, 'daemon', '--config', h.config], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env }, detached: true });
      closeSync(fd);
      child.unref();
    } else {
      const log = createWriteStream(h.log, { flags: 'a' });
      log.on('error', () => undefined); // a full disk must not take the harness down with it
      child = this.deployment.runAs(name, [process.execPath, FERRY_BIN, 'daemon', '--config', h.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      child.stdout?.pipe(log);
      child.stderr?.pipe(log);
    }
    h.daemon = child;
    if (!wait) return child;
    const { askDaemon } = await import('../daemon/lock.js');
    const t0 = Date.now();
    while (Date.now() - t0 < 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child; // died at start (a crash point, or a test of refusal)
      if ((await askDaemon(h.root, 'status', 500)) !== undefined) return child;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`daemon of ${name} did not come up; see ${h.log}`);
  }

  /** Stops a host's daemon: SIGTERM (drain) by default, or SIGKILL. Resolves when it has exited. */
  async stopDaemon(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.host(name).daemon;
    if (!child) return null;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill(signal);
      await exited;
    }
    this.host(name).daemon = undefined;
    return child.exitCode;
  }

  /** Stops every daemon. */
  async stopAll(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await Promise.all([...this.hosts.keys()].map((n) => this.stopDaemon(n, signal)));
  }

  /** Stops every daemon (SIGKILL) and tears the whole deployment down: users, mounts, chroots, sshd, the directory. */
  async destroy(): Promise<void> {
    await this.stopAll('SIGKILL').catch(() => undefined);
    await this.deployment.destroy();
  }

  /** Cuts every live SSH connection (the listener keeps accepting). */
  killConnections(): Promise<number> {
    return this.deployment.killConnections();
  }

  /** Names of the files waiting in a host's inbox queue (new/). */
  inboxNames(name: string, queue: string): string[] {
    try {
      // What consumers see: a message being published is in new/ under a hidden `.in-` name until it is visible.
      return readdirSync(join(this.host(name).root, 'inbox', queue, 'new')).filter((n) => !n.startsWith('.'));
    } catch {
      return [];
    }
  }

  /**
   * The description `npm run cluster -- up` writes as DIR/cluster.json: per host its config, root and daemon pid,
   * and per peer how it logs in there (`hosts.alpha.logins.beta` = how alpha logs in to beta).
   */
  describe(): ClusterDescription {
    const hosts: ClusterDescription['hosts'] = {};
    for (const h of this.hosts.values()) {
      const logins: Record<string, ClusterLogin> = {};
      for (const peer of this.hosts.keys()) {
        if (peer === h.name) continue;
        const l = this.deployment.login(peer, h.name);
        logins[peer] = { user: l.user, host: l.host, port: l.port, identity: l.identity, known_hosts: l.knownHosts, remote_root: l.remoteRoot };
      }
      hosts[h.name] = { config: h.config, root: h.root, daemon_pid: h.daemon?.pid ?? null, logins };
    }
    return { hosts };
  }

  /** Waits until `fn` returns true, polling; throws after `timeoutMs`. */
  static async until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 60_000, pollMs = 20): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await fn()) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
}

/** The part of the login names of `host`'s inbound peers before the peer's name (`f<id>-<host>-`). */
function loginPrefix(d: Deployment, host: string): string {
  const other = d.record().logins.find((l) => l.receiver === host);
  return other === undefined ? 'ferry-in-' : other.user.slice(0, other.user.length - other.sender.length);
}

/** The parent of `host`'s inbound chroots. */
function chrootBase(d: Deployment, host: string): string {
  const other = d.record().logins.find((l) => l.receiver === host);
  return other === undefined ? '/srv/ferry' : dirname(other.chroot);
}

/** How one host logs in to a peer (cluster.json). */
export interface ClusterLogin {
  user: string;
  host: string;
  port: number;
  identity: string;
  known_hosts: string;
  remote_root: string;
}

/** DIR/cluster.json. */
export interface ClusterDescription {
  hosts: Record<string, { config: string; root: string; daemon_pid: number | null; logins: Record<string, ClusterLogin> }>;
}
