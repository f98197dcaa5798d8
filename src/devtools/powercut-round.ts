// The exhaustive power-cut round: one protocol round (send → accept → ship → deliver → take) with the power of one host
// cut after each of its file-system operations in turn, then a reboot, recovery, the rest of the round, and a check.
//
// Two hosts, alpha (sends) and beta (receives), each a spool; the host under test sits on the power-cut simulator
// (tools/powercut), the other on a plain directory. One child process drives the whole round with the library's own
// parts — Spool transactions, Acceptor, Shipper (`shipOnce`), LocalTransport into the peer's landing directory (the
// same upload → fsync → rename → fsync steps as SFTP), Receiver — one step at a time, so the sequence of operations is
// the same on every run and "cut after operation i" names the same instant each time. The child's working directory
// is on the mount, so the cut always kills it. After the reboot a second child recovers both spools and drives the
// round to its end; the checker then counts lost, duplicated, reordered and corrupted messages from what both children
// logged outside the mounts ("sent" once a commit returned, "taken" once a take's commit returned).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Acceptor, type Log } from '../channel/acceptor.js';
import { Shipper } from '../channel/shipper.js';
import { sodiumReady, type SealKey } from '../envelope/index.js';
import { generatePairKey } from '../keys/index.js';
import { Receiver } from '../receive/receiver.js';
import { Spool } from '../spool/spool.js';
import { LocalTransport } from '../transport/local-transport.js';
import { mountPowercut, type CutReport, type PowercutMode } from './powercut.js';
import { messageOf } from '../errors.js';

/**
 * What the round sends: one small message, a transaction of three, one large (secretstream) message, one message
 * consumed by a consume-transform-produce transaction whose result travels back, or a transaction of twelve (a
 * bundle delivered as a batch: the receiver's group sync), one message whose first take aborts (`retry`), or one
 * message taken and committed outside a transaction (`plain`: `spool.take`, `message.commit()`).
 */
export type RoundScenario = 'single' | 'multi' | 'large' | 'ctp' | 'batch' | 'retry' | 'plain';
export const ROUND_SCENARIOS: readonly RoundScenario[] = ['single', 'multi', 'large', 'ctp', 'batch', 'retry', 'plain'];
export type RoundHost = 'alpha' | 'beta';

/** Keys of the messages a scenario sends (in send order), and of the results a ctp round produces. */
export function scenarioKeys(s: RoundScenario): { sent: string[]; results: string[] } {
  if (s === 'multi') return { sent: ['m0', 'm1', 'm2'], results: [] };
  if (s === 'ctp') return { sent: ['m0'], results: ['r-m0'] };
  if (s === 'batch') return { sent: Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, '0')}`), results: [] };
  return { sent: ['m0'], results: [] };
}

/** The payload of message `key` in scenario `s`: deterministic, so the checker knows every byte. */
export function roundPayload(s: RoundScenario, key: string): Buffer {
  if (key.startsWith('r-')) return Buffer.from(`result of ${key.slice(2)}`);
  const size = s === 'large' ? 3 * 1024 * 1024 + 17 : s === 'multi' ? [200, 5000, 300][Number(key.slice(1))] ?? 100 : 200;
  const b = Buffer.alloc(size);
  let x = (createHash('sha256').update(`${s}/${key}`).digest().readUInt32BE(0) | 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** What the children are told: both spool roots, the pair key, the scenario, and where to log (outside the mounts). */
interface ChildConfig {
  alpha: string;
  beta: string;
  key: { id: string; secret: string; peers: [string, string] };
  scenario: RoundScenario;
  log: string;
}

/** One line of a child's log. */
type LogLine =
  | { ev: 'sent'; keys: string[] }
  | { ev: 'taken'; key: string; host: RoundHost; sha: string }
  | { ev: 'taking'; key: string; host: RoundHost }
  | { ev: 'warn' | 'error'; host: RoundHost; msg: string; obj: unknown }
  | { ev: 'done'; pending: string }
  | { ev: 'failed'; err: string };

// ---------------------------------------------------------------------------------------------------------------------
// The child: drives the round.

function say(cfg: ChildConfig, line: LogLine): void {
  appendFileSync(cfg.log, `${JSON.stringify(line)}\n`);
}

function logger(cfg: ChildConfig, host: RoundHost): Log {
  return {
    info() {}, debug() {},
    warn(obj: object, msg?: string) { say(cfg, { ev: 'warn', host, msg: msg ?? '', obj }); },
    error(obj: object, msg?: string) { say(cfg, { ev: 'error', host, msg: msg ?? '', obj }); },
  } as Log;
}

interface Side {
  name: RoundHost;
  peer: RoundHost;
  spool: Spool;
  acceptor: Acceptor;
  receiver: Receiver;
  shipper: Shipper;
}

async function openSide(cfg: ChildConfig, name: RoundHost, key: SealKey, finish: boolean): Promise<Side> {
  const peer: RoundHost = name === 'alpha' ? 'beta' : 'alpha';
  const log = logger(cfg, name);
  const spool = await Spool.open(cfg[name], { host: name });
  // Everyone who held a lease died with the power (or with the driver): return every lease now, whatever its clock.
  if (finish) await spool.recover(Date.now() + 24 * 3600_000);
  const keys = (id: string) => (id === key.id ? key : undefined);
  const acceptor = new Acceptor(spool, {
    destinations: (queue) => (queue === (name === 'alpha' ? 'work' : 'results') ? [peer] : []),
    compression: () => 'none',
    sealingKey: () => key,
    lifetimeMs: 7 * 24 * 3600_000,
  }, log);
  await acceptor.recover();
  const receiver = new Receiver(spool, keys, log, { receiptKey: (p) => (p === peer ? key : undefined) });
  await receiver.recover();
  const channel = acceptor.channel(peer);
  await channel.ensure();
  const transport = new LocalTransport({ peer, dir: join(cfg[peer], 'landing', name) });
  const shipper = new Shipper(channel, transport, log, {
    self: name, keys: { seal: () => key, open: keys }, lock: (fn) => fn(), deadDir: spool.layout.deadOut,
  });
  return { name, peer, spool, acceptor, receiver, shipper };
}

async function acceptAll(side: Side): Promise<number> {
  let n = 0;
  for (;;) {
    const r = await side.acceptor.acceptOnce();
    n += r.messages;
    if (r.messages === 0) return n;
  }
}

/** Takes every message of `queue` on `side`, one transaction each (ctp: the take and its result's send together). */
const aborted = new Set<string>();

async function takeAll(cfg: ChildConfig, side: Side, queue: string, ctp: boolean): Promise<number> {
  let n = 0;
  for (;;) {
    if (cfg.scenario === 'plain') {
      const m = await side.spool.take(queue, { leaseMs: 600_000 });
      if (m === null) return n;
      const body = await m.read();
      const key = m.headers.k ?? '?';
      say(cfg, { ev: 'taking', key, host: side.name });
      await m.commit();
      say(cfg, { ev: 'taken', key, host: side.name, sha: sha(body) });
      n += 1;
      continue;
    }
    const tx = side.spool.transaction();
    const msg = await tx.take(queue, { leaseMs: 600_000 });
    if (msg === null) {
      await tx.abort();
      return n;
    }
    const body = await msg.read();
    const key = msg.headers.k ?? '?';
    if (cfg.scenario === 'retry' && !aborted.has(key)) {
      aborted.add(key); // the first take of each message gives it back: it returns to new/, one attempt counted
      await tx.abort();
      continue;
    }
    if (ctp) await tx.send('results', roundPayload(cfg.scenario, `r-${key}`), { headers: { k: `r-${key}` } });
    say(cfg, { ev: 'taking', key, host: side.name }); // a cut before `taken` leaves the commit's outcome unknown
    await tx.commit();
    say(cfg, { ev: 'taken', key, host: side.name, sha: sha(body) });
    n += 1;
  }
}

/** What is still on its way: outboxes, channels, landing directories, inboxes. '' when nothing. */
function pendingOf(cfg: ChildConfig): string {
  const left: string[] = [];
  const list = (p: string) => (existsSync(p) ? readdirSync(p).filter((n) => !n.startsWith('.')) : []);
  for (const h of ['alpha', 'beta'] as const) {
    const root = cfg[h];
    for (const q of list(join(root, 'outbox'))) if (list(join(root, 'outbox', q, 'new')).length > 0) left.push(`${h} outbox/${q}`);
    if (list(join(root, 'state', 'commits', 'new')).length > 0) left.push(`${h} commits`);
    for (const p of list(join(root, 'state', 'channels'))) {
      const out = list(join(root, 'state', 'channels', p, 'out'));
      if (out.length > 0) left.push(`${h} channel to ${p}: ${out.join(' ')}`);
    }
    for (const p of list(join(root, 'landing'))) {
      const l = list(join(root, 'landing', p)).filter((n) => n !== 'ferry.receipt');
      if (l.length > 0) left.push(`${h} landing from ${p}: ${l.join(' ')}`);
    }
    for (const q of list(join(root, 'inbox'))) {
      for (const sub of ['new', 'lease']) if (list(join(root, 'inbox', q, sub)).length > 0) left.push(`${h} inbox ${q}/${sub}`);
    }
  }
  return left.join('; ');
}

/** Entry point of the driver child: `phase` is `round` (send, then drive) or `finish` (recover, then drive). */
export async function roundChild(configPath: string, phase: 'round' | 'finish'): Promise<void> {
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as ChildConfig;
  try {
    await sodiumReady();
    const key: SealKey = { id: cfg.key.id, secret: Buffer.from(cfg.key.secret, 'hex'), peers: cfg.key.peers };
    const finish = phase === 'finish';
    const alpha = await openSide(cfg, 'alpha', key, finish);
    const beta = await openSide(cfg, 'beta', key, finish);
    if (phase === 'round') {
      const { sent } = scenarioKeys(cfg.scenario);
      const tx = alpha.spool.transaction();
      for (const k of sent) await tx.send('work', roundPayload(cfg.scenario, k), { headers: { k } });
      await tx.commit();
      say(cfg, { ev: 'sent', keys: sent });
    }
    const ctp = cfg.scenario === 'ctp';
    let idle = 0;
    for (let i = 0; i < 40 && idle < 2; i++) {
      let moved = await acceptAll(alpha);
      await alpha.shipper.shipOnce();
      moved += await beta.receiver.processOnce();
      await alpha.shipper.shipOnce(); // the receipt: forget what it covers
      moved += await takeAll(cfg, beta, 'work', ctp);
      moved += await acceptAll(beta);
      await beta.shipper.shipOnce();
      moved += await alpha.receiver.processOnce();
      await beta.shipper.shipOnce();
      moved += await takeAll(cfg, alpha, 'results', false);
      idle = moved === 0 && pendingOf(cfg) === '' ? idle + 1 : 0;
    }
    say(cfg, { ev: 'done', pending: pendingOf(cfg) });
  } catch (err) {
    say(cfg, { ev: 'failed', err: err instanceof Error ? `${(err as { code?: string }).code ?? ''} ${err.message}` : String(err) });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The orchestrator: templates, one case, the check.

const CHILD = fileURLToPath(new URL('../../scripts/powercut-round-child.mjs', import.meta.url));

/** A prepared work directory: template spools and the key, made once and copied for every case. */
export interface RoundBench {
  work: string;
  key: ChildConfig['key'];
}

/** Makes `work/template/{alpha,beta}` (initialised spools with each other's landing directory) and a pair key. `work` must be on a file system the simulator can use (tmpfs is fastest). */
export async function prepareRoundBench(work: string): Promise<RoundBench> {
  await sodiumReady();
  mkdirSync(join(work, 'template'), { recursive: true });
  for (const h of ['alpha', 'beta'] as const) {
    const root = join(work, 'template', h);
    await Spool.open(root, { host: h, create: true });
    mkdirSync(join(root, 'landing', h === 'alpha' ? 'beta' : 'alpha'), { recursive: true, mode: 0o700 });
  }
  const k = await generatePairKey('alpha', 'beta');
  return { work, key: { id: k.id, secret: Buffer.from(k.secret).toString('hex'), peers: [...k.peers] as [string, string] } };
}

/** One case: the scenario, the host whose power is cut, after which of its operations, and the simulator's mode. */
export interface RoundCase {
  scenario: RoundScenario;
  host: RoundHost;
  /** Cut after this many operations on `host`'s mount; undefined: cut when the round is over (after its last). */
  cutAfter?: number;
  mode?: PowercutMode;
  seed?: number;
}

/** What one case found. `problems` empty: every invariant held. */
export interface RoundOutcome {
  case: RoundCase;
  problems: string[];
  /** Operations on the cut host's mount before the cut (or in the whole round, when it ended first). */
  ops: number;
  /** Whether the round child was still running when the power went. */
  cutMidRound: boolean;
  dropped: number;
  kept: number;
  ms: number;
}

function runChild(phase: 'round' | 'finish', config: string, cwd: string, stderrPath: string): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CHILD, config, phase], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => { if (err.length < 20_000) err += d.toString(); });
    c.on('close', (code, signal) => {
      if (err) appendFileSync(stderrPath, `--- ${phase} (${signal ?? code})\n${err}`);
      resolve(signal ? null : code);
    });
  });
}

/** Runs one case in `bench.work/run` (emptied first) and checks it. */
export async function runRoundCase(bench: RoundBench, c: RoundCase): Promise<RoundOutcome> {
  const t0 = Date.now();
  const run = join(bench.work, 'run');
  rmSync(run, { recursive: true, force: true });
  mkdirSync(run);
  const roots = { alpha: join(run, 'alpha'), beta: join(run, 'beta') };
  const backing = join(run, `${c.host}.disk`);
  cpSync(join(bench.work, 'template', c.host), backing, { recursive: true });
  const other: RoundHost = c.host === 'alpha' ? 'beta' : 'alpha';
  cpSync(join(bench.work, 'template', other), roots[other], { recursive: true });
  const log = join(run, 'round.log');
  const stderr = join(run, 'stderr.log');
  const config = join(run, 'config.json');
  writeFileSync(config, JSON.stringify({ ...roots, key: bench.key, scenario: c.scenario, log } satisfies ChildConfig));
  const pc = await mountPowercut({ backing, mount: roots[c.host], mode: c.mode ?? 'strict', seed: c.seed ?? 0, ...(c.cutAfter === undefined ? {} : { cutAfter: c.cutAfter }) });
  const problems: string[] = [];
  let report: CutReport | undefined;
  let ops = 0;
  try {
    const code = await runChild('round', config, roots[c.host], stderr);
    const cutMidRound = code === null;
    if (!cutMidRound) {
      ops = (await pc.status()).ops;
      // FERRY_PCR_OPLOG=<file>: the cut host's operations, numbered as cutAfter counts them (to see what a case cuts after).
      if (process.env.FERRY_PCR_OPLOG) writeFileSync(process.env.FERRY_PCR_OPLOG, (await pc.log()).map((o, i) => `${i + 1} ${JSON.stringify(o)}`).join('\n'));
      if (c.cutAfter !== undefined && code === 0) problems.push(`the round ended after ${ops} operations, before operation ${c.cutAfter}: the operation sequence is not deterministic`);
      if (code !== 0) problems.push(`the round child failed with exit code ${code} before any cut`);
      report = await pc.cut();
    } else {
      report = await pc.exited();
      ops = report?.ops ?? 0;
    }
    await pc.remount({ mode: 'strict' });
    const fin = await runChild('finish', config, roots[c.host], stderr);
    if (fin !== 0) problems.push(`recovery after the cut failed (exit ${fin})`);
    problems.push(...checkRound(c.scenario, readLog(log), roots));
    return { case: c, problems, ops, cutMidRound, dropped: report?.droppedCount ?? 0, kept: report?.keptCount ?? 0, ms: Date.now() - t0 };
  } catch (err) {
    problems.push(`harness: ${messageOf(err)}`);
    return { case: c, problems, ops, cutMidRound: false, dropped: 0, kept: 0, ms: Date.now() - t0 };
  } finally {
    await pc.unmount().catch(async () => { await pc.cut().catch(() => undefined); });
    if (problems.length > 0 && existsSync(stderr)) problems.push(`stderr: ${readFileSync(stderr, 'utf8').slice(-2000)}`);
  }
}

function readLog(path: string): LogLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
}

/** The invariants over one case's log: no loss of what was acknowledged, nothing twice, order, content, nothing stuck or quarantined. */
export function checkRound(s: RoundScenario, lines: LogLine[], roots: Record<RoundHost, string>): string[] {
  const problems: string[] = [];
  const { sent, results } = scenarioKeys(s);
  const acked = new Set(lines.flatMap((l) => (l.ev === 'sent' ? l.keys : [])));
  const takes = lines.filter((l): l is Extract<LogLine, { ev: 'taken' }> => l.ev === 'taken');
  const count = new Map<string, number>();
  for (const t of takes) {
    count.set(t.key, (count.get(t.key) ?? 0) + 1);
    if (![...sent, ...results].includes(t.key)) problems.push(`forged or unknown message ${t.key} taken on ${t.host}`);
    else if (t.sha !== sha(roundPayload(s, t.key))) problems.push(`message ${t.key} taken on ${t.host} with other bytes (corrupted)`);
  }
  for (const [k, n] of count) if (n > 1) problems.push(`message ${k} taken ${n} times (duplicated)`);
  // A take whose commit was running when the power went may have committed: its message may be gone without a
  // `taken` line (for ctp, its result then arrives). Anything else committed must have been taken.
  const indeterminate = new Set(lines.flatMap((l) => (l.ev === 'taking' ? [l.key] : [])).filter((k) => !count.has(k)));
  const consumedUnseen = (k: string) => indeterminate.has(k) && (s !== 'ctp' || count.has(`r-${k}`));
  for (const k of sent) if (acked.has(k) && !count.has(k) && !consumedUnseen(k)) problems.push(`message ${k} was committed (send returned) and never taken (lost)`);
  // A take whose commit returned also committed its result: the result must arrive.
  // (Unless its own take was the one running at the cut, and committed: consumed, without a `taken` line.)
  for (const r of results) if (count.has(r.slice(2)) && !count.has(r) && !indeterminate.has(r)) problems.push(`result ${r} of a committed consume-transform-produce never arrived (lost)`);
  // All or nothing: a transaction is delivered whole or not at all.
  const some = sent.filter((k) => count.has(k) || consumedUnseen(k));
  if (some.length > 0 && some.length < sent.length) problems.push(`transaction delivered in part: ${some.join(',')} of ${sent.join(',')}`);
  const order = takes.filter((t) => sent.includes(t.key)).map((t) => t.key);
  const firsts = order.filter((k, i) => order.indexOf(k) === i);
  if (firsts.join() !== [...firsts].sort().join()) problems.push(`taken out of order: ${firsts.join(' ')}`);
  const done = lines.filter((l): l is Extract<LogLine, { ev: 'done' }> => l.ev === 'done').at(-1);
  if (!done) problems.push('the round never finished');
  else if (done.pending !== '') problems.push(`still on its way after recovery: ${done.pending}`);
  for (const l of lines) if (l.ev === 'failed') problems.push(`a child failed: ${l.err}`);
  for (const h of ['alpha', 'beta'] as const) {
    const q = join(roots[h], 'state', 'quarantine');
    const refused = existsSync(q) ? readdirSync(q).flatMap((p) => readdirSync(join(q, p)).filter((n) => n.endsWith('.reason.json')).map((n) => `${p}/${n}`)) : [];
    if (refused.length > 0) problems.push(`${h} quarantined ${refused.join(' ')}`);
    const dead = join(roots[h], 'state', 'dead');
    const deadFiles = existsSync(dead) ? readdirSync(dead, { recursive: true }).map(String).filter((n) => n.endsWith('.fb')) : [];
    if (deadFiles.length > 0) problems.push(`${h} dead-lettered ${deadFiles.join(' ')}`);
  }
  for (const l of lines) if (l.ev === 'error') problems.push(`${l.host} logged an error: ${l.msg} ${JSON.stringify(l.obj)}`);
  return problems;
}

/** Operations a whole round makes on `host`'s mount (a case cut after its last operation, checked like the others). */
export async function roundOps(bench: RoundBench, scenario: RoundScenario, host: RoundHost): Promise<RoundOutcome> {
  return runRoundCase(bench, { scenario, host });
}
