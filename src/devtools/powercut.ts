// Node API of the power-cut simulator (tools/powercut): mount it over a backing directory, cut the power, reboot.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FerryError } from '../errors.js';

const execFileP = promisify(execFile);

/** The interpreter that has Debian's python3-pyfuse3 (a pyenv `python3` on PATH does not). */
export const POWERCUT_PYTHON = '/usr/bin/python3';
/** The file system itself; the same relative place from `src/devtools` and `dist/devtools`. */
export const POWERCUT_SCRIPT = fileURLToPath(new URL('../../tools/powercut/powercut.py', import.meta.url));
const SETUP = 'npm run powercut:setup';

/** `strict`: a cut drops every non-durable change. `reorder`: a cut keeps a seeded random subset the model allows. */
export type PowercutMode = 'strict' | 'reorder';

/** Options of {@link mountPowercut}. */
export interface PowercutOptions {
  /** Directory the mount shows; a cut rewrites it in place to the surviving state. Must exist. */
  backing: string;
  /** Directory to mount on: created if missing, must be empty and not already a mount point. */
  mount: string;
  /** Private state (shadow copies, staging, log, cut report); must be on the backing's file system. Default `<backing>.powercut`. */
  stateDir?: string;
  /** Default `strict`. */
  mode?: PowercutMode;
  /** Seed of `reorder` mode's choices, a non-negative integer. Default 0. */
  seed?: number;
  /** Cut the power by itself right after the Nth mutating operation (see {@link PowercutOp}). Default: never. */
  cutAfter?: number;
  /** How long to wait for the mount to come up, in ms. Default 15 000. */
  timeoutMs?: number;
}

/** One non-durable change at the moment of a cut. */
export interface PowercutChange {
  kind: 'entry' | 'content' | 'metadata';
  /** Path inside the mount (the directory's last known path for entries of a removed directory). */
  path: string;
  /** For entries: what happened to the name since its directory's last fsync. */
  change?: 'added' | 'removed' | 'replaced';
}

/** A process the cut killed with SIGKILL, and what tied it to the mount. */
export interface KilledProcess {
  pid: number;
  why: 'fd' | 'cwd' | 'root' | 'mmap';
  comm: string;
  uid: number;
}

/** What a cut did. `kept` is always empty in strict mode. */
export interface CutReport {
  reason: 'cut' | 'cut-after';
  mode: PowercutMode;
  seed: number;
  /** Mutating operations done before the cut. */
  ops: number;
  killed: KilledProcess[];
  /** The process that asked for the cut, if it used the mount: left alive (it is the test, not the system under test). */
  spared: KilledProcess[];
  /** Bind mounts of the mount that the cut unmounted (lazily). */
  unmounted: string[];
  kept: PowercutChange[];
  dropped: PowercutChange[];
  keptCount: number;
  droppedCount: number;
  /** Time spent rewriting the backing directory. */
  rewriteMs: number;
}

/** The simulator's counters. */
export interface PowercutStatus {
  pid: number;
  mount: string;
  backing: string;
  mode: PowercutMode;
  seed: number;
  cutAfter: number | null;
  /** Mutating operations so far (the counter `cutAfter` compares with). */
  ops: number;
  /** Changes made durable since mount (by fsync, fdatasync, fsyncdir or `sync`). */
  durable: number;
  /** Non-durable changes a cut would drop now; null while the mount is ending. */
  pending: { entries: number; contents: number; metadata: number } | null;
  cutting: boolean;
  /** Inodes the simulator holds open. */
  inodes: number;
}

/**
 * One mutating operation, in order, as the file system saw it (`write` is one kernel request, up to 1 MiB).
 * Ops: create, mknod, mkdir, symlink, link, unlink, rmdir, rename, write, truncate, setattr, fsync, fdatasync, fsyncdir.
 */
export interface PowercutOp {
  n: number;
  op: string;
  path: string;
  to?: string;
  target?: string;
  off?: number;
  len?: number;
  size?: number;
  set?: string;
  flags?: number;
  sync?: boolean;
}

/** A running (or ended) simulator. Obtain one from {@link mountPowercut} or {@link connectPowercut}. */
export interface PowercutMount {
  readonly mount: string;
  readonly backing: string;
  readonly stateDir: string;
  /** The file system process of the current boot. */
  readonly pid: number;
  /** Cut the power now: kill every user, unmount, rewrite the backing directory to what survives. */
  cut(): Promise<CutReport>;
  /** Make everything durable (what `sync(2)` would do if FUSE forwarded it: it does not). */
  sync(): Promise<void>;
  status(): Promise<PowercutStatus>;
  /** The operations since mount, from the `from`th (0-based). */
  log(from?: number): Promise<PowercutOp[]>;
  /** Clean shutdown keeping everything; refused while processes still use the mount. */
  unmount(): Promise<void>;
  /** Reboot: mount the surviving backing state afresh (after a cut or unmount); keeps mode and seed unless given, never `cutAfter`. */
  remount(options?: Pick<PowercutOptions, 'mode' | 'seed' | 'cutAfter'>): Promise<void>;
  /** Resolves once the file system process ended: with its report if it cut the power, else undefined. */
  exited(): Promise<CutReport | undefined>;
}

interface Resolved extends Required<Omit<PowercutOptions, 'cutAfter'>> {
  cutAfter: number | undefined;
  socket: string;
  record: string;
}

/** Where mounts are recorded for the CLI (`cut --mount M` must find M's control socket). Short: socket paths are limited. */
export function powercutRunDir(): string {
  return process.env.FERRY_POWERCUT_RUN ?? '/run/ferry-powercut';
}

function recordPaths(mount: string): { socket: string; record: string } {
  const h = createHash('sha256').update(mount).digest('hex').slice(0, 16);
  return { socket: path.join(powercutRunDir(), `${h}.sock`), record: path.join(powercutRunDir(), `${h}.json`) };
}

/** Mount points (unescaped) with their device, from /proc/self/mountinfo. */
function mountTable(): Array<{ dev: string; point: string }> {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const f = line.split(' ');
    const point = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    return { dev: f[2] ?? '', point };
  });
}

function usage(message: string, p?: string): FerryError {
  return new FerryError('EUSAGE', message, p === undefined ? {} : { path: p });
}

let pythonChecked = false;
async function checkPython(): Promise<void> {
  if (pythonChecked) return;
  try {
    await execFileP(POWERCUT_PYTHON, ['-B', '-c', 'import pyfuse3, trio']);
  } catch (err) {
    throw new FerryError('EUSAGE', `powercut needs Debian's python3-pyfuse3 for ${POWERCUT_PYTHON} (it cannot import it): run \`${SETUP}\``, { cause: err });
  }
  pythonChecked = true;
}

function resolveOptions(o: PowercutOptions): Resolved {
  if (process.getuid?.() !== 0) throw usage('powercut needs root (it mounts with allow_other and kills other users\' processes): run it as root');
  const backing = path.resolve(o.backing);
  const mount = path.resolve(o.mount);
  const st = statSync(backing, { throwIfNoEntry: false });
  if (st === undefined || !st.isDirectory()) {
    throw new FerryError('ENOENT_INPUT', `powercut backing directory ${backing} does not exist: create it, or pass an existing --backing`, { path: backing });
  }
  const inside = (a: string, b: string) => a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`);
  if (inside(mount, backing) || inside(backing, mount)) {
    throw usage(`powercut mount point ${mount} and backing ${backing} overlap (one holds the other): pick a --mount outside the backing directory`, mount);
  }
  mkdirSync(mount, { recursive: true });
  if (mountTable().some((m) => m.point === mount)) {
    throw usage(`powercut mount point ${mount} is already a mount point: run \`npm run powercut -- unmount --mount ${mount}\` first`, mount);
  }
  if (!statSync(mount).isDirectory() || readdirSync(mount).length > 0) {
    throw usage(`powercut mount point ${mount} is not an empty directory: empty it, or pick another --mount`, mount);
  }
  const stateDir = path.resolve(o.stateDir ?? `${backing}.powercut`);
  if (inside(stateDir, backing) || inside(stateDir, mount)) {
    throw usage(`powercut state directory ${stateDir} lies inside the backing or the mount: pick a --state beside them`, stateDir);
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (statSync(stateDir).dev !== st.dev) {
    throw usage(`powercut state directory ${stateDir} is on another file system than ${backing} (a cut links and renames between them): pass a --state on the same file system`, stateDir);
  }
  const mode = o.mode ?? 'strict';
  if (mode !== 'strict' && mode !== 'reorder') throw usage(`expected powercut mode to be strict or reorder, got \`${String(mode)}\`: pass --mode strict or --mode reorder`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw usage(`expected powercut seed to be a non-negative integer, got \`${seed}\`: pass e.g. --seed 1`);
  const cutAfter = o.cutAfter;
  if (cutAfter !== undefined && (!Number.isSafeInteger(cutAfter) || cutAfter < 1)) {
    throw usage(`expected powercut cut-after to be a positive number of operations, got \`${cutAfter}\`: pass e.g. --cut-after 1`);
  }
  return { backing, mount, stateDir, mode, seed, cutAfter, timeoutMs: o.timeoutMs ?? 15_000, ...recordPaths(mount) };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True while process `pid` runs (a zombie counts as ended: pid 1 here may never reap it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** One JSON request on the control socket; resolves with the JSON reply. */
function request<T>(socket: string, mount: string, payload: object, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    let data = '';
    const timer = setTimeout(() => conn.destroy(new Error('timed out')), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.end(`${JSON.stringify(payload)}\n`));
    conn.on('data', (d: string) => (data += d));
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(new FerryError('ENOENT_INPUT', `no powercut file system answers for ${mount} (${(err as NodeJS.ErrnoException).code ?? err.message}): mount one with \`npm run powercut -- mount --backing B --mount ${mount}\``, { path: mount, cause: err }));
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(data) as T);
      } catch (err) {
        reject(new FerryError('EUSAGE', `powercut at ${mount} gave an unreadable reply (${data.slice(0, 80)}): see ${mount}'s state directory log`, { path: mount, cause: err }));
      }
    });
  });
}

class Powercut implements PowercutMount {
  pid = -1;
  private report: string;

  constructor(private o: Resolved) {
    this.report = path.join(o.stateDir, 'cut-report.json');
  }

  get mount(): string { return this.o.mount; }
  get backing(): string { return this.o.backing; }
  get stateDir(): string { return this.o.stateDir; }

  /** Spawn the file system (detached: it outlives a CLI) and wait until it is mounted and serving. */
  async start(): Promise<void> {
    const o = this.o;
    const ready = path.join(o.stateDir, 'ready.json');
    rmSync(ready, { force: true });
    rmSync(this.report, { force: true });
    mkdirSync(powercutRunDir(), { recursive: true, mode: 0o700 });
    const logFile = path.join(o.stateDir, 'powercut.log');
    const log = openSync(logFile, 'w');
    const args = ['-B', POWERCUT_SCRIPT, '--backing', o.backing, '--mount', o.mount, '--state', o.stateDir, '--socket', o.socket,
      '--mode', o.mode, '--seed', String(o.seed), ...(o.cutAfter !== undefined ? ['--cut-after', String(o.cutAfter)] : [])];
    const child = spawn(POWERCUT_PYTHON, args, { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    child.unref();
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      const r = readJson<{ pid: number }>(ready);
      if (r !== undefined) {
        this.pid = r.pid;
        break;
      }
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        if (child.exitCode === null) child.kill('SIGKILL');
        const tail = (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').trim().split('\n').slice(-1)[0] ?? '';
        throw usage(`powercut could not mount ${o.mount} (${tail || 'no output'}): read ${logFile}`, o.mount);
      }
      await sleep(20);
    }
    writeFileSync(o.record, JSON.stringify({ ...o, pid: this.pid }), { mode: 0o600 });
  }

  private ask<T>(payload: object): Promise<T> {
    return request<T>(this.o.socket, this.o.mount, payload);
  }

  async cut(): Promise<CutReport> {
    const r = await this.ask<CutReport & { error?: string }>({ cmd: 'cut' });
    if (r.error !== undefined) throw usage(`powercut at ${this.mount} could not cut the power (${r.error}): run \`npm run powercut -- status --mount ${this.mount}\``, this.mount);
    await this.exited();
    return r;
  }

  async sync(): Promise<void> {
    const r = await this.ask<{ error?: string }>({ cmd: 'sync' });
    if (r.error !== undefined) throw usage(`powercut at ${this.mount} could not sync (${r.error}): wait for its cut to finish`, this.mount);
  }

  status(): Promise<PowercutStatus> {
    return this.ask<PowercutStatus>({ cmd: 'status' });
  }

  async log(from = 0): Promise<PowercutOp[]> {
    return (await this.ask<{ entries: PowercutOp[] }>({ cmd: 'log', from })).entries;
  }

  async unmount(): Promise<void> {
    const r = await this.ask<{ error?: string; pids?: number[] }>({ cmd: 'unmount' });
    if (r.error === 'busy') {
      throw usage(`powercut mount ${this.mount} is busy (pids ${(r.pids ?? []).join(', ') || 'unknown'} use it): stop them, or run \`npm run powercut -- cut --mount ${this.mount}\``, this.mount);
    }
    if (r.error !== undefined) throw usage(`powercut could not unmount ${this.mount} (${r.error}): run \`npm run powercut -- cut --mount ${this.mount}\``, this.mount);
    await this.exited();
  }

  async remount(options: Pick<PowercutOptions, 'mode' | 'seed' | 'cutAfter'> = {}): Promise<void> {
    if (alive(this.pid)) throw usage(`powercut at ${this.mount} is still mounted (pid ${this.pid}): cut or unmount it before a remount`, this.mount);
    const { backing, mount, stateDir, timeoutMs } = this.o;
    this.o = resolveOptions({ backing, mount, stateDir, timeoutMs, mode: options.mode ?? this.o.mode, seed: options.seed ?? this.o.seed, cutAfter: options.cutAfter });
    await this.start();
  }

  async exited(): Promise<CutReport | undefined> {
    while (alive(this.pid)) await sleep(20);
    rmSync(this.o.record, { force: true });
    return readJson<CutReport>(this.report);
  }
}

/** Mount the simulator over `options.backing` at `options.mount`; resolves once it serves requests. Needs root. */
export async function mountPowercut(options: PowercutOptions): Promise<PowercutMount> {
  const o = resolveOptions(options);
  await checkPython();
  const pc = new Powercut(o);
  await pc.start();
  return pc;
}

/** The simulator mounted at `mount` by this or another process (the CLI's way in). */
export function connectPowercut(mount: string): PowercutMount {
  const abs = path.resolve(mount);
  const rec = readJson<Resolved & { pid: number }>(recordPaths(abs).record);
  if (rec === undefined || !alive(rec.pid)) {
    throw new FerryError('ENOENT_INPUT', `no powercut file system is mounted at ${abs}: mount one with \`npm run powercut -- mount --backing B --mount ${abs}\``, { path: abs });
  }
  const pc = new Powercut(rec);
  pc.pid = rec.pid;
  return pc;
}

/**
 * Last-resort cleanup for tests: stop the simulator at `mount` whatever its state, keeping the backing as it is
 * (SIGTERM, then aborting the FUSE connection and a lazy unmount). Never throws.
 */
export async function forceUnmountPowercut(mount: string): Promise<void> {
  const abs = path.resolve(mount);
  const rec = readJson<{ pid: number }>(recordPaths(abs).record);
  if (rec !== undefined && alive(rec.pid)) {
    try { process.kill(rec.pid, 'SIGTERM'); } catch { /* gone */ }
    for (let i = 0; i < 100 && alive(rec.pid); i++) await sleep(20);
  }
  const row = mountTable().filter((m) => m.point === abs).pop();
  if (row !== undefined) {
    const conn = `/sys/fs/fuse/connections/${row.dev.split(':')[1] ?? ''}`;
    try {
      if (!existsSync(`${conn}/abort`)) await execFileP('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections']);
      writeFileSync(`${conn}/abort`, '1');
    } catch { /* not a FUSE mount, or already gone */ }
    try { await execFileP('umount', ['-l', abs]); } catch { /* not mounted */ }
  }
  if (rec !== undefined && alive(rec.pid)) {
    try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ }
    for (let i = 0; i < 50 && alive(rec.pid); i++) await sleep(20);
  }
  const { record, socket } = recordPaths(abs);
  if (rec === undefined || !alive(rec.pid)) for (const f of [record, socket]) rmSync(f, { force: true });
}
