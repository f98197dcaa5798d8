// A cluster of ferry hosts on this machine, for the demo, the end-to-end and crash tests, the chaos harness and the benchmark.
//
// Each host gets its own spool, key directory and config; all of them reach each other through one
// private loopback sshd (see private-sshd.ts), so every byte between hosts crosses real SSH/SFTP.
// Daemons run as real child processes (`node bin/ferry daemon`), so tests can SIGKILL them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, createWriteStream, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatePairKey, writeKeyFile, keyFileName } from '../keys/index.js';
import { Spool } from '../spool/spool.js';
import type { Sshd } from './private-sshd.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The CLI entry point (bin/ferry) of this checkout. */
export const FERRY_BIN = join(here, '..', '..', 'bin', 'ferry');

/** One host of a test cluster. */
export interface ClusterHost {
  name: string;
  dir: string;
  root: string;
  keys: string;
  config: string;
  log: string;
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
  /** Log level of the daemons. Default "info". */
  logLevel?: string;
  /** Peers per host to leave out of the config (simulates a peer never configured). */
  sshd: Sshd;
  /** Where to put everything. */
  dir: string;
}

/** A set of hosts that ship to each other through one sshd. */
export class Cluster {
  readonly hosts = new Map<string, ClusterHost>();

  private constructor(readonly opts: ClusterOptions) {}

  /** Writes spools, configs and one pair key per pair of hosts. */
  static async create(opts: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(opts);
    for (const name of opts.hosts) {
      const dir = join(opts.dir, name);
      mkdirSync(dir, { recursive: true });
      mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
      c.hosts.set(name, { name, dir, root: join(dir, 'spool'), keys: join(dir, 'keys'), config: join(dir, 'ferry.toml'), log: join(dir, 'daemon.log') });
    }
    for (const h of c.hosts.values()) {
      writeFileSync(h.config, c.configText(h.name));
      await Spool.open(h.root, { host: h.name, create: true });
    }
    const names = [...c.hosts.keys()];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const key = await generatePairKey(names[i] as string, names[j] as string);
        for (const n of [names[i], names[j]]) await writeKeyFile(join(c.host(n as string).keys, keyFileName(key)), key);
      }
    }
    return c;
  }

  /** The host named `name`. */
  host(name: string): ClusterHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in this cluster`);
    return h;
  }

  /** The config text of a host. */
  configText(name: string): string {
    const h = this.host(name);
    const s = this.opts.sshd;
    const lines = [`host = "${name}"`, `root = "${h.root}"`, `keys = "${h.keys}"`, `log_level = "${this.opts.logLevel ?? 'info'}"`, ...(this.opts.extraConfig ?? []), ''];
    for (const peer of this.hosts.keys()) {
      if (peer === name) continue;
      lines.push(`[peers.${peer}]`, `ssh = "${s.user}@127.0.0.1:${s.port}"`, `identity = "${s.identityPath}"`, `known_hosts = "${s.knownHostsPath}"`, `remote_root = "${this.host(peer).root}"`, '');
    }
    lines.push('[routes]');
    const routes = this.opts.routes?.[name] ?? { '*': [...this.hosts.keys()].filter((p) => p !== name) };
    for (const [q, dests] of Object.entries(routes)) lines.push(`${q === '*' ? '"*"' : q} = [${dests.map((d) => `"${d}"`).join(', ')}]`);
    return `${lines.join('\n')}\n`;
  }

  /** Opens a host's spool in this process (to send or take through the library). */
  spool(name: string): Promise<Spool> {
    return Spool.open(this.host(name).root, { host: name });
  }

  /**
   * Starts a host's daemon as a child process; resolves once it is up (its control socket answers),
   * or at once with `wait: false` (the chaos harness restarts many daemons without waiting).
   */
  async startDaemon(name: string, env: Record<string, string> = {}, wait = true): Promise<ChildProcess> {
    const h = this.host(name);
    const log = createWriteStream(h.log, { flags: 'a' });
    log.on('error', () => undefined); // a full disk must not take the harness down with it
    const child = spawn(process.execPath, [FERRY_BIN, 'daemon', '--config', h.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
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

  /** Names of the files waiting in a host's inbox queue (new/). */
  inboxNames(name: string, queue: string): string[] {
    try {
      return readdirSync(join(this.host(name).root, 'inbox', queue, 'new'));
    } catch {
      return [];
    }
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
