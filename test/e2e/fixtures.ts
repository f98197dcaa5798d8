// Shared helpers for the end-to-end and replication regression tests: clusters of real daemons over a real sshd,
// planting sealed bundles in a landing area, reading quarantine reasons, running the CLI.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { Cluster, FERRY_BIN, type ClusterOptions } from '../../src/devtools/cluster.js';
import { formatBundleName, writeSealedBundle, type BundleHeader, type SealKey, type WriteBundleOptions } from '../../src/envelope/index.js';
import { loginAs } from '../helpers/login.js';
import { loadKeyDir } from '../../src/keys/index.js';
import type { Spool } from '../../src/spool/spool.js';

export { Cluster, FERRY_BIN };

/**
 * Clusters on the confined deployment (each peer its own chrooted SFTP login, one private sshd per cluster),
 * made by the returned function; an afterEach stops every daemon and tears the deployment down (users, mounts,
 * chroots, sshd, directory), whether the test passed or not.
 */
export function useClusters(): (opts: Omit<ClusterOptions, 'dir'> & { dir?: string }) => Promise<Cluster> {
  const made: { cluster?: Cluster; dir: string }[] = [];
  afterEach(async () => {
    const all = made.splice(0);
    for (const m of all) await m.cluster?.destroy().catch(() => undefined);
    for (const m of all) rmSync(m.dir, { recursive: true, force: true });
  });
  return async (opts) => {
    const entry: { cluster?: Cluster; dir: string } = { dir: opts.dir ?? mkdtempSync(join(os.tmpdir(), 'ferry-e2e-')) };
    made.push(entry);
    entry.cluster = await Cluster.create({ logLevel: 'info', ...opts, dir: entry.dir });
    return entry.cluster;
  };
}

/** Starts a host's daemon and fails at once (with its log) when it did not come up. */
export async function startDaemon(cluster: Cluster, name: string): Promise<number> {
  const child = await cluster.startDaemon(name);
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    throw new Error(`daemon of ${name} exited at start (${child.exitCode ?? child.signalCode}): ${daemonLog(cluster, name).slice(-2000)}`);
  }
  return child.pid;
}

/** Starts several hosts' daemons at once (each one waits for its control socket). */
export async function startDaemons(cluster: Cluster, ...names: string[]): Promise<number[]> {
  return Promise.all(names.map((n) => startDaemon(cluster, n)));
}

/** True while the host's daemon process is alive. */
export function daemonAlive(cluster: Cluster, name: string): boolean {
  const d = cluster.host(name).daemon;
  return d !== undefined && d.exitCode === null && d.signalCode === null;
}

/** The daemon's log so far (JSON lines). */
export function daemonLog(cluster: Cluster, name: string): string {
  try {
    return readFileSync(cluster.host(name).log, 'utf8');
  } catch {
    return '';
  }
}

/** Result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/ferry ARGS --config <host's config>` and collects its output (never throws on a non-zero exit). */
export function ferry(cluster: Cluster, host: string, args: string[], timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FERRY_BIN, ...args, '--config', cluster.host(host).config], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A peer's line of `ferry status --json`. */
export interface StatusPeer {
  peer: string;
  backlog: number;
  published: number;
  blocked: { seq: number; code: string; reason: string } | null;
  lastSuccess: string | null;
  lastError: string | null;
  failures: number;
}

/** `ferry status --json` of a host, parsed (the fields tests read). */
export async function statusJson(cluster: Cluster, host: string): Promise<{ peers: StatusPeer[]; landing: StatusLanding[]; quarantine: number; daemon: { running: boolean } }> {
  const r = await ferry(cluster, host, ['status', '--json']);
  if (r.code !== 0) throw new Error(`ferry status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { peers: StatusPeer[]; landing: StatusLanding[]; quarantine: number; daemon: { running: boolean } };
}

/** A landing directory's line of `ferry status --json`. */
export interface StatusLanding {
  peer: string;
  waiting: number;
  blocked: { seq: number; code: string; reason: string } | null;
  gaps: number;
  refused: number;
  hostile: number;
  error: string | null;
}

/** One message taken from an inbox, with what ferry knows about it. */
export interface Received {
  payload: Buffer;
  id: string;
  origin: string;
  queue: string;
  headers: Record<string, string>;
  committed: number;
  delivered: number;
}

/** Takes (and commits) every message waiting in `queue`, oldest first. */
export async function takeAll(spool: Spool, queue: string): Promise<Received[]> {
  const out: Received[] = [];
  for (;;) {
    const m = await spool.take(queue);
    if (m === null) return out;
    out.push({ payload: await m.read(), id: m.id, origin: m.origin, queue: m.meta.queue, headers: m.headers, committed: m.meta.committed, delivered: m.meta.delivered });
    await m.commit();
  }
}

/** A quarantined landing file and the reason file beside it. */
export interface Quarantined {
  name: string;
  code: string;
  reason: string;
  landing: string;
  /** Whose landing directory it came from. */
  peer: string;
}

/**
 * Everything in a host's state/quarantine/<peer>/ with its reason. The copy goes in first and its reason after it,
 * so an entry counts once both are there.
 */
export function quarantined(cluster: Cluster, host: string): Quarantined[] {
  const base = join(cluster.host(host).root, 'state', 'quarantine');
  if (!existsSync(base)) return [];
  const out: Quarantined[] = [];
  for (const peer of readdirSync(base).sort()) {
    const dir = join(base, peer);
    for (const n of readdirSync(dir).filter((f) => f.endsWith('.reason.json')).sort()) {
      const name = n.slice(0, -'.reason.json'.length);
      if (!existsSync(join(dir, name))) continue;
      const r = JSON.parse(readFileSync(join(dir, n), 'utf8')) as { code: string; reason: string; landing: string; peer: string };
      out.push({ name, code: r.code, reason: r.reason, landing: r.landing, peer: r.peer });
    }
  }
  return out;
}

/**
 * Bundles (and uploads) still waiting in `from`'s landing directory on `host`. Not counted: its receipt, and the
 * receiver's own `.ferry-*.tmp` that exists for an instant while it replaces that receipt.
 */
export function landingNames(cluster: Cluster, host: string, from: string): string[] {
  try {
    return readdirSync(join(cluster.host(host).root, 'landing', from))
      .filter((n) => n !== 'ferry.receipt' && !(n.startsWith('.ferry-') && n.endsWith('.tmp')));
  } catch {
    return [];
  }
}

/**
 * Uploads `bytes` as `name` into `from`'s landing directory on `host` through `from`'s own login on `host` (the
 * chrooted SFTP account), written as `<name>.part` and renamed in whole, as a sender does.
 */
export async function plant(cluster: Cluster, host: string, name: string, bytes: Uint8Array, from = 'alpha'): Promise<void> {
  const s = await loginAs(cluster, host, from);
  try {
    // As a sender does: under `<name>.part` (a dot-name would be swept as junk before the rename), then renamed whole.
    await s.put(`/landing/${name}.part`, bytes);
    await s.rename(`/landing/${name}.part`, `/landing/${name}`);
  } finally {
    s.end();
  }
}

/** The pair key binding `a` and `b`, read from `host`'s key directory the way the daemon reads it. */
export async function pairKey(cluster: Cluster, host: string, a: string, b: string): Promise<SealKey> {
  const { keys, errors } = await loadKeyDir(cluster.host(host).keys);
  if (errors.length > 0) throw new Error(`key directory of ${host}: ${errors.map((e) => e.message).join('; ')}`);
  const key = keys.find((k) => (k.peers[0] === a && k.peers[1] === b) || (k.peers[0] === b && k.peers[1] === a));
  if (!key) throw new Error(`no ${a}–${b} key in ${host}'s key directory`);
  return key;
}

/** A message to seal into a test bundle. */
export interface TestMessage {
  queue: string;
  id: string;
  payload: Uint8Array;
  headers?: Record<string, string>;
  compression?: 'gzip' | 'br';
}

/** Seals `messages` into one bundle held in memory (seqs follow `header.firstSeq`). */
export async function sealBundle(key: SealKey, header: Omit<BundleHeader, 'count' | 'created'>, messages: TestMessage[], opts: WriteBundleOptions = {}): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  const outgoing = messages.map((m, i) => ({
    meta: { seq: header.firstSeq + i, queue: m.queue, id: m.id, headers: m.headers ?? {}, committed: Date.now(), size: m.payload.length },
    ...(m.compression ? { compression: m.compression } : {}),
    payload: async function* () { yield m.payload; },
  }));
  await writeSealedBundle({ write: async (c) => { parts.push(c); } }, key, { ...header, count: messages.length, created: Date.now() }, outgoing, opts);
  return Buffer.concat(parts);
}

/**
 * Waits until the landing file `name` is in `host`'s quarantine, and returns its entry. 45 s: a pass takes ~2 s alone,
 * but one took more than 20 s in the full suite on 2 cores.
 */
export async function waitQuarantined(cluster: Cluster, host: string, name: string, timeoutMs = 45_000): Promise<Quarantined> {
  let found: Quarantined | undefined;
  // Quarantined means both: the copy with its reason is there, and then (the receiver's next step) the landing entry is gone.
  await until(`${name} quarantined on ${host}`, () => {
    found = quarantined(cluster, host).find((q) => q.landing === name);
    return found !== undefined && !landingNames(cluster, host, found.peer).includes(name);
  }, timeoutMs);
  return found as Quarantined;
}

/** Every file of an inbox queue, wherever it sits (tmp/, new/, cur/, lease/, dead/): nothing half-delivered hides. */
export function inboxFiles(cluster: Cluster, host: string, queue: string): string[] {
  const out: string[] = [];
  for (const sub of ['tmp', 'new', 'cur', 'lease', 'dead']) {
    try {
      for (const n of readdirSync(join(cluster.host(host).root, 'inbox', queue, sub))) out.push(`${sub}/${n}`);
    } catch {
      // not there
    }
  }
  return out;
}

/** A bundle file name as a sender names it (epoch number 1 unless told). */
export function bundleName(firstSeq: number, count: number, channel: string, epoch = 1): string {
  return formatBundleName({ epoch, channel, firstSeq, count, gap: false });
}

/** Waits until `fn` holds (polling), or throws naming `what`; a generous bound, never a timing assertion. */
export function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  return Cluster.until(what, fn, timeoutMs);
}

/** The daemon's log as parsed JSON lines (lines that are not JSON are skipped). */
export function daemonLogLines(cluster: Cluster, name: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of daemonLog(cluster, name).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by a kill
    }
  }
  return out;
}

/**
 * Sends one message from `from` and waits for it in `to`'s inbox: the daemons survived whatever came before and
 * still deliver. Returns the message as received.
 */
export async function expectStillDelivers(cluster: Cluster, from: string, to: string, queue = 'after-attack'): Promise<Received> {
  const payload = `still delivering ${Date.now()}`;
  const id = await (await cluster.spool(from)).send(queue, payload);
  await until(`a good message from ${from} in ${to}'s inbox`, () => cluster.inboxNames(to, queue).length >= 1, 30_000);
  const got = await takeAll(await cluster.spool(to), queue);
  if (got.length !== 1 || got[0]?.id !== id || got[0].payload.toString() !== payload || got[0].origin !== from) {
    throw new Error(`expected exactly the good message ${id} from ${from}, got ${JSON.stringify(got.map((m) => [m.id, m.origin]))}`);
  }
  if (!daemonAlive(cluster, to) || !daemonAlive(cluster, from)) throw new Error('a daemon died');
  return got[0];
}

/** A random channel epoch (16 hex digits) for planted bundles, apart from every real channel's. */
export function randomEpoch(): string {
  return randomBytes(8).toString('hex');
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
