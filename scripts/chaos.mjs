#!/usr/bin/env node
// npm run chaos -- [--kills N] [--messages M] [--seed S] [--max-minutes T] [--hostile] [--power-cuts P] [--keep] [--quiet]
//
// Three hosts on this machine (separate spools, one private loopback sshd), each with a producer
// committing transactions into a queue fanned out to the two other hosts, and a consumer taking
// from its inbox with commits and aborts. A seeded schedule injects faults at random instants:
// SIGKILL of any daemon, producer or consumer; SIGSTOP/SIGCONT pauses of daemons; SSH connections
// cut mid-transfer; a receiver's disk filled (each spool sits on its own small tmpfs); clock jumps
// (forward up to +2 h, back up to −2 h, or back to true time) of one host's daemon, producer or one
// of its two consumers, through the clock file each process reads (FERRY_CLOCK_FILE, src/clock.ts). Then it
// drains and classifies every message, as Jepsen's queue checker does:
//   ok, lost (committed, never delivered), duplicated (delivered twice), unexpected (delivered,
//   never even attempted); and for takes: taken twice (committed by two takes), taken after commit (a
//   payload opened after another take of it committed: scripts/chaos/history.mjs).
// Also: reordered (per origin and queue, a message delivered before one its producer committed earlier: inbox
// names sort in delivery order) and forged (delivered, never committed by any producer under that origin).
// With --hostile, gamma also acts as a malicious peer through its real logins on alpha and beta (deleting,
// hiding, corrupting, truncating and chmod-ing its own uploads, pre-creating its future names, planting links,
// directories and junk, endless uploads, bundles forged under alpha's, beta's or the receiver's own name with its
// keys, replays of its own shipped bundles, fake receipts, and writes into other peers' directories); every honest
// message — gamma's own honest daemon's included — must still arrive exactly once and in order.
// The hosts run on the deployment the README documents: per-peer chrooted SFTP logins, daemons as their own users'
// processes (here: as root, so producers and consumers can use the library in-process), one private sshd.
// With --power-cuts P, each spool sits on the power-cut simulator (tools/powercut, over the host's tmpfs), and P
// times a whole host loses its power: its daemon, producer and consumers are frozen, the simulator cuts (killing
// every process using the spool, the host's side of its peers' SFTP logins included, and leaving only what was
// made durable), they are killed, and the host reboots: a fresh mount of what survived, the chroots' landing bind
// mounts made again, recovery, restart.
// Prints one summary line; exits 1 on any lost, duplicated, reordered, forged, unexpected or double take.
// Clock jumps move only the wall clock ferry reads through src/clock.ts, per process group, not the
// machine's clock (that would disturb everything else running here): the kernel's file times stay true.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, existsSync, openSync, closeSync, ftruncateSync, statfsSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster } from '../dist/devtools/cluster.js';
import { Spool } from '../dist/index.js';
import { mountPowercut, forceUnmountPowercut } from '../dist/devtools/powercut.js';
import { compareNames } from '../dist/maildir/unique.js';
import { consumerHistory } from './chaos/history.mjs';
import { HostilePeer } from './chaos/hostile.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const KILLS = Number(opt('kills', 50));
const MESSAGES = Number(opt('messages', 3000));
const SEED = Number(opt('seed', Date.now() % 1_000_000));
const KEEP = argv.includes('--keep');
// Stop injecting faults after this long even if fewer kills were reached (the summary says how many).
const MAX_MINUTES = Number(opt('max-minutes', Infinity));
const QUIET = argv.includes('--quiet');
const HOSTILE = argv.includes('--hostile');
const HOSTILE_HOST = 'gamma';
const POWER_CUTS = Number(opt('power-cuts', 0));
const HOSTS = ['alpha', 'beta', 'gamma'];

let seed = SEED >>> 0;
const rand = () => { seed = (seed + 0x6d2b79f5) >>> 0; let t = seed; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (s) => { if (!QUIET) process.stderr.write(`${s}\n`); };

const work = mkdtempSync(join(tmpdir(), 'ferry-chaos-'));
const mounts = [];
const children = new Map(); // key → ChildProcess
const counts = { kills: 0, pauses: 0, cuts: 0, diskFull: 0, clockJumps: 0, hostile: 0, powerCuts: 0, powerDropped: 0, cutFailures: 0 };
const powercuts = new Map(); // host → its simulator, with --power-cuts
// On the simulator a full disk leaves it this much: its shadow copies live on the same tmpfs, and a simulator that
// cannot keep its books would lose what it was told was durable. Still far below ferry's reserve (2 % of the disk).
const SIMULATOR_ROOM = 8 * 1024 * 1024;
let cluster;
let hostile;
const t0 = Date.now();

function mountTmpfs(dir, mib) {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
    mounts.push(dir);
    return true;
  } catch {
    return false;
  }
}

// Clock groups: one host's daemon, its producer, each of its consumers. Each reads its offset (ms)
// from its own file, re-read every 100 ms, so a running process jumps when the file changes.
const CONSUMERS = 2; // per host, so a consumer whose clock runs ahead can steal a lease the other still holds
const MAX_JUMP_MS = 2 * 3600_000;
const clockGroups = HOSTS.flatMap((h) => [`${h}-daemon`, `${h}-producer`, ...Array.from({ length: CONSUMERS }, (_, i) => `${h}-consumer${i}`)]);
const clockFile = (group) => join(work, 'clocks', group);
function setClock(group, offsetMs) {
  mkdirSync(join(work, 'clocks'), { recursive: true });
  writeFileSync(`${clockFile(group)}.tmp`, `${Math.round(offsetMs)}\n`);
  renameSync(`${clockFile(group)}.tmp`, clockFile(group)); // never read half-written
}
// With --power-cuts: where a host's disk went (MiB): used, the simulator's state (shadow copies), and the spool's
// largest subtrees; with the simulator's live inodes and pending changes. Printed with progress and on a stall.
async function diskReport(h) {
  const pc = powercuts.get(h);
  if (!pc) return '';
  const disk = join(work, 'hosts', h, 'disk');
  const fs = statfsSync(disk);
  const usedMiB = Math.round(((fs.blocks - fs.bfree) * fs.bsize) / 1048576);
  let top = '';
  try {
    const out = execFileSync('du', ['-xm', '--max-depth=3', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    top = out.trim().split('\n').map((l) => l.split('\t')).filter(([m, p]) => Number(m) >= 8 && p !== disk)
      .sort((a, b) => Number(b[0]) - Number(a[0])).slice(0, 6).map(([m, p]) => `${p.slice(disk.length + 1)}=${m}`).join(' ');
  } catch { /* du raced a removal */ }
  let st = '';
  try { const s = await pc.status(); st = ` inodes=${s.inodes} pending=${JSON.stringify(s.pending)}`; } catch { /* cutting */ }
  return `${h}: used=${usedMiB}MiB${st} ${top}`;
}
// The last warnings of a host's daemon log (what a stalled channel is refused with), for the drain-timeout error.
function logTail(h, lines = 4) {
  let text = '';
  try { text = readFileSync(cluster.host(h).log, 'utf8'); } catch { return `${h}: no daemon log`; }
  const warned = text.trim().split('\n').filter((l) => !/"level":(10|20|30)\b/.test(l)).slice(-lines);
  return `${h} daemon log (last ${warned.length} warnings):\n${warned.map((l) => `  ${l.slice(0, 400)}`).join('\n')}`;
}
// The chroot landing binds into host h's spool: each peer's chroot `landing` (mp) shows h's landing directory for it
// (dir). One not in place (a rebooted host whose bind did not come back) refuses that peer's uploads with
// "Permission denied" for ever.
function landingBinds(h) {
  return HOSTS.filter((p) => p !== h).map((p) => {
    const login = cluster.deployment.login(h, p);
    return { mp: join(login.chroot, 'landing'), dir: login.landingDir };
  });
}
function bound({ mp, dir }) {
  try { const a = statSync(mp); const b = statSync(dir); return a.dev === b.dev && a.ino === b.ino; } catch { return false; }
}
function unboundReport() {
  const bad = HOSTS.flatMap((h) => landingBinds(h).filter((b) => !bound(b)).map((b) => b.mp));
  return bad.length === 0 ? '' : `; landing binds not in place: ${bad.join(', ')}`;
}
// Each host's boot id (FERRY_BOOT_ID_FILE, src/maildir/name-floor.ts): a power cut is a reboot, so it gets a new one.
const bootFile = (h) => join(work, 'boots', h);
function newBoot(h) {
  mkdirSync(join(work, 'boots'), { recursive: true });
  writeFileSync(`${bootFile(h)}.tmp`, `${randomUUID()}\n`);
  renameSync(`${bootFile(h)}.tmp`, bootFile(h));
}
const hostOf = (group) => group.slice(0, group.lastIndexOf('-'));
const clockEnv = (group) => ({ FERRY_CLOCK_FILE: clockFile(group), FERRY_BOOT_ID_FILE: bootFile(hostOf(group)) });

function spawnChild(key, script, args, group) {
  const child = spawn(process.execPath, [join(here, 'chaos', script), ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...clockEnv(group), CHAOS_LIMIT: String(limitPerHost), CHAOS_PACE_MS: String(paceMs) } });
  child.stderr.on('data', () => undefined);
  children.set(key, child);
  return child;
}

const limitPerHost = Math.ceil(MESSAGES / HOSTS.length);
// Spread production over the expected fault period (about 3 kills a second), so faults hit a busy system.
const paceMs = Math.max(0, Math.floor(((KILLS / 3) * 1000) / (limitPerHost / 2.5)));
const logPath = (kind, host) => join(work, `${kind}-${host}.log`);
function lastSeq(host) {
  // A restarted producer continues after the highest sequence it ever attempted.
  let max = -1;
  try {
    for (const line of readFileSync(logPath('producer', host), 'utf8').split('\n')) {
      if (!line.startsWith('attempt ')) continue;
      for (const id of line.slice(8).split(' ')) max = Math.max(max, Number(id.split('-')[1]));
    }
  } catch { /* none yet */ }
  return max + 1;
}
const startProducer = (h) => spawnChild(`producer:${h}`, 'producer.mjs', [cluster.host(h).root, h, `from-${h}`, logPath('producer', h), String(lastSeq(h)), String(Math.floor(rand() * 2 ** 31))], `${h}-producer`);
// Both consumers of a host append to one log (one write per line, O_APPEND): the checker reads one history per host.
const startConsumer = (h, i) => spawnChild(`consumer${i}:${h}`, 'consumer.mjs', [cluster.host(h).root, h, logPath('consumer', h), String(Math.floor(rand() * 2 ** 31)), ...HOSTS.filter((o) => o !== h).map((o) => `from-${o}`)], `${h}-consumer${i}`);
const startDaemon = (h, wait = false) => cluster.startDaemon(h, clockEnv(`${h}-daemon`), wait);
const alive = (c) => c && c.exitCode === null && c.signalCode === null;
const producersDone = () => HOSTS.every((h) => lastSeq(h) >= limitPerHost && !alive(children.get(`producer:${h}`)));

// Every fault with its wall-clock time, kept with the logs: a failure's examples are matched against it.
const faultLog = (kind, h) => appendFileSync(join(work, 'faults.log'), `${Date.now()} ${kind} ${h}\n`);

async function restartDead() {
  for (const h of HOSTS) {
    if (!alive(cluster.host(h).daemon)) await startDaemon(h);
    for (let i = 0; i < CONSUMERS; i++) if (!alive(children.get(`consumer${i}:${h}`))) startConsumer(h, i);
    if (!alive(children.get(`producer:${h}`)) && lastSeq(h) < limitPerHost) startProducer(h);
  }
}

async function fault(diskFullOk) {
  // The hostile peer acts about as often as every other fault together, and each act is quick.
  if (HOSTILE && rand() < 0.5) {
    await hostile.act();
    counts.hostile += 1;
    return;
  }
  if (POWER_CUTS > 0 && counts.powerCuts < POWER_CUTS && rand() < POWER_CUTS / (POWER_CUTS + KILLS)) {
    const h = pick(HOSTS);
    faultLog('power-cut', h);
    await powerCut(h);
    return;
  }
  // Daemon restarts cost an SSH handshake and a recovery each; producers and consumers restart cheaply.
  const kinds = ['kill-daemon', 'kill-daemon', 'kill-producer', 'kill-producer', 'kill-consumer', 'kill-consumer', 'kill-consumer', 'pause-daemon', 'cut-ssh', 'clock-jump'];
  if (diskFullOk) kinds.push('disk-full');
  const kind = pick(kinds);
  const h = pick(HOSTS);
  faultLog(kind, h);
  if (kind === 'kill-daemon') {
    const d = cluster.host(h).daemon;
    if (alive(d)) { await cluster.stopDaemon(h, 'SIGKILL'); counts.kills += 1; }
    await sleep(rand() * 100);
    await startDaemon(h);
  } else if (kind === 'kill-producer' || kind === 'kill-consumer') {
    const key = kind === 'kill-producer' ? `producer:${h}` : `consumer${Math.floor(rand() * CONSUMERS)}:${h}`;
    const c = children.get(key);
    if (alive(c)) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
      counts.kills += 1;
    }
  } else if (kind === 'pause-daemon') {
    const d = cluster.host(h).daemon;
    if (alive(d)) {
      d.kill('SIGSTOP');
      counts.pauses += 1;
      await sleep(100 + rand() * 700);
      d.kill('SIGCONT');
    }
  } else if (kind === 'cut-ssh') {
    await cluster.killConnections();
    counts.cuts += 1;
  } else if (kind === 'clock-jump') {
    // One group's clock: back to true time a quarter of the time, else anywhere in ±2 h.
    setClock(pick(clockGroups), rand() < 0.25 ? 0 : (rand() * 2 - 1) * MAX_JUMP_MS);
    counts.clockJumps += 1;
  } else if (kind === 'disk-full') {
    // Fill the host's spool file system, hold it full for a while, then free it.
    // On the power-cut simulator the filler goes beside the backing spool, on the same tmpfs (FUSE has no fallocate).
    const filler = powercuts.has(h) ? join(work, 'hosts', h, 'disk', 'filler') : join(cluster.host(h).root, 'filler');
    try {
      const fs = statfsSync(dirname(filler));
      const fd = openSync(filler, 'w');
      try { ftruncateSync(fd, 0); execFileSync('fallocate', ['-l', String(Math.max(0, fs.bavail * fs.bsize - (powercuts.has(h) ? SIMULATOR_ROOM : 0))), filler]); } catch { /* best effort */ } finally { closeSync(fd); }
      counts.diskFull += 1;
      await sleep(300 + rand() * 900);
    } finally {
      rmSync(filler, { force: true });
    }
  }
}

/**
 * Host `h` loses its power: everything of it frozen at once, the simulator's cut (what was not durable is gone; every
 * process using the spool killed, its peers' SFTP sessions into it too), the rest of it killed, then the reboot.
 */
async function powerCut(h) {
  const pc = powercuts.get(h);
  const own = [cluster.host(h).daemon, children.get(`producer:${h}`), ...Array.from({ length: CONSUMERS }, (_, i) => children.get(`consumer${i}:${h}`))].filter(alive);
  for (const c of own) c.kill('SIGSTOP');
  const binds = landingBinds(h);
  let report;
  try {
    report = await pc.cut();
  } catch (err) {
    // The simulator did not answer (it has been seen once under heavy load): take it down keeping the disk as it is
    // (a cut that lost nothing, which a power cut may also do), and boot a fresh one. Counted, never hidden.
    counts.cutFailures += 1;
    say(`  power cut of ${h}: the simulator did not answer (${err instanceof Error ? err.message : String(err)}); forced down, disk kept as is`);
    await forceUnmountPowercut(pc.mount);
    for (const { mp } of binds) { try { execFileSync('umount', ['-l', mp], { stdio: 'ignore' }); } catch { /* not mounted */ } }
    report = undefined;
  }
  for (const c of own) { c.kill('SIGKILL'); c.kill('SIGCONT'); }
  await Promise.all(own.map((c) => (alive(c) ? new Promise((r) => c.once('exit', r)) : undefined)));
  await cluster.stopDaemon(h, 'SIGKILL').catch(() => undefined);
  counts.powerCuts += 1;
  newBoot(h);
  counts.powerDropped += report?.droppedCount ?? 0;
  if (report !== undefined) await pc.remount();
  else powercuts.set(h, await mountPowercut({ backing: pc.backing, mount: pc.mount, mode: 'strict' }));
  // The chroots showed the spool's landing directories through bind mounts; the cut took them: make them again, every
  // one not in place (as a reboot mounts all of fstab), not only those the simulator says it unmounted.
  for (const b of binds) {
    if (bound(b)) continue;
    try { execFileSync('umount', ['-l', b.mp], { stdio: 'ignore' }); } catch { /* not mounted: the usual case */ }
    execFileSync('mount', ['--bind', b.dir, b.mp]);
    if (!bound(b)) throw new Error(`the landing bind ${b.mp} of ${h} did not come back after the power cut`);
  }
}

function classify() {
  const attempted = new Set();
  const committed = [];
  for (const h of HOSTS) {
    for (const line of readFileSync(logPath('producer', h), 'utf8').split('\n')) {
      if (line.startsWith('attempt ')) for (const id of line.slice(8).split(' ')) attempted.add(id);
      if (line.startsWith('ok ')) for (const id of line.slice(3).split(' ')) committed.push(id);
    }
  }
  const committedSet = new Set(committed);
  const result = { ok: 0, lost: 0, duplicated: 0, reordered: 0, forged: 0, unexpected: 0, takenTwice: 0, takenAfterCommit: 0, indeterminate: 0, deliveries: 0 };
  const examples = { lost: [], duplicated: [], unexpected: [], reordered: [] };
  for (const dest of HOSTS) {
    let text = '';
    try { text = readFileSync(logPath('consumer', dest), 'utf8'); } catch { /* no consumer log */ }
    // A take counts from the line its consumer wrote before opening the payload, not from the take line
    // written after reading it (scripts/chaos/history.mjs says why).
    const { commits, takes, afterCommit } = consumerHistory(text);
    const leftover = new Map();
    // Per origin: each message's inbox name (its delivery position), from the first take of it or what is left.
    const namesOf = new Map();
    const nameOf = (src, id, name) => {
      const m = namesOf.get(src) ?? new Map();
      if (!m.has(id)) m.set(id, name);
      namesOf.set(src, m);
    };
    for (const line of text.split('\n')) {
      const [verb, q, id, name] = line.split(' ');
      if (verb === 'take' && name && q?.startsWith('from-')) nameOf(q.slice(5), id, name);
    }
    for (const src of HOSTS.filter((o) => o !== dest)) {
      const dir = join(cluster.host(dest).root, 'inbox', `from-${src}`, 'new');
      for (const name of existsSync(dir) ? readdirSync(dir) : []) {
        const { id } = JSON.parse(readFileSync(join(dir, name), 'utf8'));
        leftover.set(id, (leftover.get(id) ?? 0) + 1);
        nameOf(src, id, name);
      }
    }
    const delivered = (id) => {
      const c = commits.get(id) ?? 0;
      const l = leftover.get(id) ?? 0;
      // Taken, then killed after its commit but before logging it: gone from the inbox, so committed once.
      const orphan = c === 0 && l === 0 && (takes.get(id) ?? 0) > 0 ? 1 : 0;
      return c + l + orphan;
    };
    const seen = new Set([...commits.keys(), ...leftover.keys(), ...takes.keys()]);
    for (const id of seen) {
      if (!attempted.has(id)) {
        result.unexpected += 1;
        result.forged += 1; // delivered, but no producer ever committed it under that origin
        if (examples.unexpected.length < 5) examples.unexpected.push(`${dest}:${id}`);
      }
      if ((commits.get(id) ?? 0) > 1) result.takenTwice += 1;
    }
    // Order (I9): per origin, delivery order (inbox names sort in it) must follow commit order (the producer's sequence).
    for (const src of HOSTS.filter((o) => o !== dest)) {
      const delivered = [...(namesOf.get(src) ?? new Map())].sort((a, b) => compareNames(a[1], b[1]));
      let last = -1;
      for (const [id] of delivered) {
        const seq = Number(id.split('-')[1]);
        if (seq < last) { result.reordered += 1; if (examples.reordered.length < 5) examples.reordered.push(`${dest}:${id} after ${src}-${last}`); }
        last = Math.max(last, seq);
      }
    }
    result.takenAfterCommit += afterCommit.size;
    for (const id of committed) {
      if (id.startsWith(`${dest}-`)) continue; // a host does not route its own queue to itself
      const n = delivered(id);
      result.deliveries += n;
      if (n === 1) result.ok += 1;
      else if (n === 0) { result.lost += 1; if (examples.lost.length < 5) examples.lost.push(`${dest}:${id}`); }
      else { result.duplicated += 1; if (examples.duplicated.length < 5) examples.duplicated.push(`${dest}:${id}×${n}`); }
    }
    // Attempted but never confirmed (the producer died mid-commit): either outcome is correct.
    for (const id of attempted) if (!committedSet.has(id) && !id.startsWith(`${dest}-`) && delivered(id) > 1) { result.duplicated += 1; examples.duplicated.push(`${dest}:${id}`); }
  }
  result.indeterminate = attempted.size - committedSet.size;
  return { result, examples };
}

/** What is still on its way somewhere, or '' when nothing is: outboxes, channels, landing areas, inboxes (consumers still run). */
async function pending() {
  const left = [];
  for (const h of HOSTS) {
    const host = cluster.host(h);
    const spool = await Spool.open(host.root, { host: h });
    const out = (await spool.outbox.entries()).length;
    if (out > 0) left.push(`${h} outbox: ${out}`);
    for (const peer of readdirSync(join(host.root, 'state', 'channels'))) {
      const dir = join(host.root, 'state', 'channels', peer, 'out');
      const n = existsSync(dir) ? readdirSync(dir) : [];
      if (n.length > 0) left.push(`${h} channel to ${peer}: ${n.slice(0, 3).join(' ')}${n.length > 3 ? ` … (${n.length})` : ''}`);
    }
    // Landing directories: bundles still to deliver. Not the receipt or dot-files (not messages), and not uploads
    // in progress (\`.part\`): once every sender's channel is empty (checked above) its bundles are all receipted, so a
    // \`.part\` left then is a hostile upload cut at the end of the faults, which the receiver removes when stale.
    const visible = (dir) => readdirSync(dir).filter((n) => !n.startsWith('.') && n !== 'ferry.receipt' && !n.endsWith('.part'));
    for (const peer of readdirSync(join(host.root, 'landing'))) {
      const n = visible(join(host.root, 'landing', peer));
      if (n.length > 0) left.push(`${h} landing from ${peer}: ${n.slice(0, 3).join(' ')}${n.length > 3 ? ` … (${n.length})` : ''}`);
    }
    for (const q of readdirSync(join(host.root, 'inbox')).filter((x) => !x.startsWith('.'))) { // not a writer's mount probe
      for (const sub of ['new', 'lease']) {
        const n = readdirSync(join(host.root, 'inbox', q, sub)).filter((x) => !x.startsWith('.'));
        if (n.length > 0) left.push(`${h} inbox ${q}/${sub}: ${n.length}`);
      }
    }
  }
  return left.join('; ');
}

let exitCode = 0;
try {
  let diskFullOk = true;
  // Each spool root (only the spool: logs, keys and configs stay off it) is its own small tmpfs.
  if (POWER_CUTS > 0) {
    // The host's disk (a tmpfs) holds the backing spool; the spool the host sees is the simulator's view of it.
    for (const h of HOSTS) {
      const disk = join(work, 'hosts', h, 'disk');
      if (!mountTmpfs(disk, 768)) throw new Error('--power-cuts needs root and tmpfs');
      mkdirSync(join(disk, 'spool'), { mode: 0o700 });
      powercuts.set(h, await mountPowercut({ backing: join(disk, 'spool'), mount: join(work, 'hosts', h, 'spool'), mode: 'strict' }));
    }
  } else {
    for (const h of HOSTS) diskFullOk = mountTmpfs(join(work, 'hosts', h, 'spool'), 512) && diskFullOk;
  }
  cluster = await Cluster.create({
    hosts: HOSTS, dir: join(work, 'hosts'), logLevel: 'warn',
    routes: Object.fromEntries(HOSTS.map((h) => [h, { [`from-${h}`]: HOSTS.filter((o) => o !== h) }])),
    // The hostile peer's endless uploads are cut here, far below the spools' 512 MiB.
    receive: { max_bundle_bytes: 32 * 1024 * 1024 },
  });
  // Installing the hosts ends as an installer would: with everything synced (the chroots' landing directories'
  // owners and modes were set by the deployment's steps, not by ferry, and are not ferry's to make durable).
  for (const [, pc] of powercuts) await pc.sync();
  if (HOSTILE) hostile = new HostilePeer(cluster, HOSTILE_HOST, rand);
  say(`chaos: seed ${SEED}, ${KILLS} kills, ${MESSAGES} messages, 3 hosts in ${work}${HOSTILE ? `, ${HOSTILE_HOST} hostile` : ''}${POWER_CUTS ? `, ${POWER_CUTS} power cuts` : ''}${diskFullOk ? '' : ' (no tmpfs: disk-full faults off)'}`);
  for (const g of clockGroups) setClock(g, 0);
  for (const h of HOSTS) newBoot(h);
  for (const h of HOSTS) await startDaemon(h, true);
  for (const h of HOSTS) { for (let i = 0; i < CONSUMERS; i++) startConsumer(h, i); startProducer(h); }

  let lastReport = Date.now();
  const faultDeadline = t0 + MAX_MINUTES * 60_000;
  while ((counts.kills < KILLS || counts.powerCuts < POWER_CUTS || !producersDone()) && !(Date.now() > faultDeadline && producersDone())) {
    await sleep(30 + rand() * 200);
    await fault(diskFullOk);
    await restartDead();
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      say(`  … ${counts.kills} kills, ${POWER_CUTS ? `${counts.powerCuts} power cuts, ` : ''}${counts.pauses} pauses, ${counts.cuts} cuts, ${counts.diskFull} disk-full, ${counts.clockJumps} clock jumps${HOSTILE ? `, ${counts.hostile} hostile acts` : ''}; produced ${HOSTS.map(lastSeq).reduce((a, b) => a + b, 0)}/${limitPerHost * HOSTS.length}`);
      if (POWER_CUTS && !QUIET) for (const h of HOSTS) say(`      ${await diskReport(h)}`);
    }
  }
  say('  faults over; draining');
  hostile?.end();
  for (const h of HOSTS) cluster.host(h).daemon?.kill('SIGCONT');
  // Time passes: every clock runs past the furthest lease a forward-jumped consumer may have
  // stamped (up to +2 h plus its lease), as real time would catch up with it. Daemons run true.
  for (const g of clockGroups) setClock(g, g.endsWith('-daemon') ? 0 : MAX_JUMP_MS + 60_000);
  await restartDead();
  const drainStart = Date.now();
  for (let left = await pending(); left !== ''; left = await pending()) {
    if (Date.now() - drainStart > 600_000) {
      const disks = POWER_CUTS ? `; disks: ${(await Promise.all(HOSTS.map(diskReport))).join('; ')}` : '';
      throw new Error(`did not drain within 10 minutes; still on the way: ${left}${disks}${unboundReport()}\n${HOSTS.map(logTail).join('\n')}`);
    }
    await restartDead();
    await sleep(500);
  }
  for (const [, c] of children) if (alive(c)) c.kill('SIGKILL');
  await sleep(200);
  for (const h of HOSTS) {
    const spool = await Spool.open(cluster.host(h).root, { host: h, maxAttempts: 1000 });
    await spool.recover(Date.now() + MAX_JUMP_MS + 10 * 60_000); // return leases of consumers killed at the end, whatever their clock
  }
  const { result, examples } = classify();
  const wall = ((Date.now() - t0) / 1000).toFixed(1);
  const isolation = hostile?.isolationBroken.length ?? 0;
  const line = `chaos seed=${SEED} kills=${counts.kills} pauses=${counts.pauses} ssh-cuts=${counts.cuts} disk-full=${counts.diskFull} clock-jumps=${counts.clockJumps}${HOSTILE ? ` hostile-acts=${counts.hostile} isolation-broken=${isolation}` : ''}${POWER_CUTS ? ` power-cuts=${counts.powerCuts} changes-dropped=${counts.powerDropped} simulator-stuck=${counts.cutFailures}` : ''} messages=${HOSTS.map(lastSeq).reduce((a, b) => a + b, 0)} expected-deliveries=${result.ok + result.lost + result.duplicated} ok=${result.ok} lost=${result.lost} duplicated=${result.duplicated} reordered=${result.reordered} forged=${result.forged} unexpected=${result.unexpected} taken-twice=${result.takenTwice} taken-after-commit=${result.takenAfterCommit} indeterminate=${result.indeterminate} wall=${wall}s`;
  process.stdout.write(`${line}\n`);
  if (HOSTILE && !QUIET) process.stderr.write(`hostile actions: ${JSON.stringify(hostile.counts)}\n`);
  if (result.lost + result.duplicated + result.reordered + result.forged + result.unexpected + result.takenTwice + result.takenAfterCommit + isolation > 0) {
    exitCode = 1;
    process.stderr.write(`examples: ${JSON.stringify(examples)}${isolation ? ` isolation: ${JSON.stringify(hostile.isolationBroken)}` : ''}\nlogs kept in ${work}\n`);
  }
} catch (err) {
  exitCode = 2;
  process.stderr.write(`chaos: ${err instanceof Error ? err.stack : String(err)}\nlogs and spools kept in ${work}\n`);
} finally {
  for (const [, c] of children) if (alive(c)) c.kill('SIGKILL');
  for (const h of HOSTS) { cluster?.host(h).daemon?.kill('SIGCONT'); }
  hostile?.end();
  await cluster?.stopAll('SIGKILL').catch(() => undefined);
  await sleep(200);
  // A failed run (or --keep) keeps each host's spool as its processes last saw it (outbox, channel state, landing,
  // journals, tmp/, dead/, quarantine): a loss is read from these, not guessed from the logs. The deployment and the
  // mounts below remove the originals.
  if ((exitCode !== 0 || KEEP) && cluster !== undefined) {
    mkdirSync(join(work, 'spools'), { recursive: true });
    for (const h of HOSTS) {
      try { execFileSync('cp', ['-a', cluster.host(h).root, join(work, 'spools', h)], { stdio: 'ignore' }); } catch { /* partial copy: keep going */ }
    }
  }
  // The simulators last: a final cut kills what still uses a spool (sshd's sessions) and unmounts the chroots' binds.
  for (const [, pc] of powercuts) await pc.cut().catch(() => forceUnmountPowercut(pc.mount).catch(() => undefined));
  // The spools' tmpfs mounts go first (lazily: the deployment's bind mounts still hold them), then the deployment.
  for (const m of mounts) { try { execFileSync('umount', ['-l', m]); } catch { /* keep going */ } }
  // The daemons' logs live in the hosts' directories, which the deployment removes: keep a copy beside the others.
  for (const h of HOSTS) { try { copyFileSync(cluster.host(h).log, join(work, `daemon-${h}.log`)); } catch { /* none */ } }
  await cluster?.deployment.destroy().catch((e) => process.stderr.write(`chaos: cleanup failed: ${e.message}\n`));
  if (exitCode === 0 && !KEEP) rmSync(work, { recursive: true, force: true });
  process.exitCode = exitCode;
}
