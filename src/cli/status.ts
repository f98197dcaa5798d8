// `ferry status`: queue depths on this host (outbox, inbox, in flight, dead letters), as a table or JSON.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { DaemonStatus } from '../daemon/daemon.js';
import { askDaemon } from '../daemon/lock.js';
import { quarantineCount } from '../receive/receiver.js';
import { listDir } from '../maildir/fsx.js';
import { FerryError } from '../errors.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';
import { now as clockNow } from '../clock.js';

/** Flags of `ferry status`. */
export interface StatusFlags extends GlobalFlags {
  json?: boolean;
  /** Refresh every N seconds (true: every 2 s) until interrupted. */
  watch?: boolean | string;
}

/** One queue's line of the status. */
export interface QueueStatus {
  queue: string;
  /** Committed, not yet shipped. */
  outbox: number;
  /** Age of the oldest unshipped message, seconds (null when none). */
  outboxOldestAge: number | null;
  /** Delivered, waiting to be taken. */
  inbox: number;
  /** Taken by an open transaction or a maildir reader. */
  inFlight: number;
  /** Dead letters. */
  dead: number;
}

/** One peer's line of the status (this host sending to it). */
export interface PeerLine {
  peer: string;
  /** Messages sealed for the peer and not yet proven delivered by its receipt. */
  backlog: number;
  /** Bundles of those published into the peer's landing directory, waiting for its receipt. */
  published: number;
  /** The delivered mark the peer's last receipt proved: epoch and sequence. */
  delivered: { epoch: number; hwm: number } | null;
  /** Why the peer does not deliver this host's channel (as its receipt says, or an upload that keeps failing). */
  blocked: { seq: number; since: string; code: string; reason: string } | null;
  /** Our records and the receiver's disagree (its state rolled back…). */
  alarm: string | null;
  /** Age of the oldest of them, seconds (null when none). */
  oldestAge: number | null;
  lastSuccess: string | null;
  lastError: string | null;
  /** The FerryError code of the last error (e.g. EHOSTKEY), when it had one. */
  lastErrorCode: string | null;
  failures: number;
  /** Messages shipped to the peer since the daemon started. */
  shipped: number;
}

/** One peer's landing directory on this host (this host receiving from it). */
export interface LandingLine {
  peer: string;
  /** Bundles waiting in the directory, and uploads in progress. */
  waiting: number;
  uploading: number;
  /** The epoch being delivered and its delivered mark. */
  epoch: number | null;
  hwm: number | null;
  /** Why nothing moves: at which sequence, since when, why (EGAP, EKEY_UNKNOWN, EDISK_FULL, EDEDUPE_ROLLBACK…). */
  blocked: { seq: number; since: string; code: string; reason: string } | null;
  delivered: number;
  gaps: number;
  refused: number;
  hostile: number;
  /** The landing directory itself is refused (a symlink, a wrong owner or mode…). */
  error: string | null;
}

/** The whole status document (`--json` prints exactly this). */
export interface StatusReport {
  host: string;
  root: string;
  time: string;
  /** Whether a daemon is running on this spool (it answers on its control socket). */
  daemon: { running: boolean; pid: number | null; since: string | null };
  queues: QueueStatus[];
  peers: PeerLine[];
  /** Each peer's landing directory here. */
  landing: LandingLine[];
  /** Bundles that failed verification, kept with their reasons in state/quarantine/. */
  quarantine: number;
  /** Messages that could not be shipped (state/dead/). */
  deadOutbound: number;
  /** The daemon's accept pass (outbox → channels) failing right now: when and why; null when it works. */
  acceptError: string | null;
}

/** Gathers the status of a spool. */
export async function gatherStatus(flags: GlobalFlags): Promise<StatusReport> {
  const config = await configFrom(flags);
  const spool = await openSpool(config, { inspect: true });
  const now = clockNow();
  const depths = await spool.outbox.depths();
  const names = new Set<string>([...depths.keys(), ...(await spool.inbox.queues()), ...(await spool.outbox.queues())]);
  const queues: QueueStatus[] = [];
  for (const queue of [...names].sort()) {
    const d = depths.get(queue);
    const c = await spool.inbox.counts(queue);
    queues.push({
      queue,
      outbox: d?.messages ?? 0,
      outboxOldestAge: d ? Math.max(0, Math.round((now - d.oldest) / 1000)) : null,
      inbox: c.new,
      inFlight: c.leased + c.cur,
      dead: c.dead,
    });
  }
  const live = (await askDaemon(config.root, 'status')) as DaemonStatus | undefined;
  let daemonStatus = live;
  if (!daemonStatus) {
    try {
      daemonStatus = JSON.parse(await fsp.readFile(join(spool.layout.state, 'status.json'), 'utf8')) as DaemonStatus;
    } catch {
      daemonStatus = undefined;
    }
  }
  const iso = (t: number | null | undefined) => (t ? new Date(t).toISOString() : null);
  const peers: PeerLine[] = (daemonStatus?.peers ?? []).map((p) => ({
    peer: p.peer,
    backlog: p.backlogMessages,
    published: p.publishedBundles ?? 0,
    delivered: p.delivered ?? null,
    blocked: blockedLine(p.blocked ?? (p.failures > 0 && p.lastError ? { seq: 0, since: p.lastError.at, code: p.lastError.code ?? 'ETRANSPORT', reason: p.lastError.message } : null)),
    alarm: p.alarm ?? null,
    oldestAge: p.oldestMs === null ? null : Math.round(p.oldestMs / 1000),
    lastSuccess: iso(p.lastSuccess),
    lastError: p.lastError ? `${iso(p.lastError.at)} ${p.lastError.message}` : null,
    lastErrorCode: p.lastError?.code ?? null,
    failures: p.failures,
    shipped: p.shippedMessages,
  }));
  let deadOutbound = 0;
  for (const d of await listDir(spool.layout.deadOut)) {
    deadOutbound += (await listDir(join(spool.layout.deadOut, d))).filter((n) => n.endsWith('.reason.json')).length;
  }
  const quarantine = await quarantineCount(spool);
  const landing: LandingLine[] = (daemonStatus?.landing ?? []).map((l) => ({
    peer: l.peer, waiting: l.waiting, uploading: l.uploading, epoch: l.current?.epoch ?? null, hwm: l.current?.hwm ?? null,
    blocked: blockedLine(l.blocked), delivered: l.delivered, gaps: l.gaps, refused: l.refused, hostile: l.hostile, error: l.error,
  }));
  return {
    host: config.host, root: config.root, time: new Date(now).toISOString(),
    daemon: { running: live !== undefined, pid: live?.pid ?? null, since: iso(live?.started) },
    queues, peers, landing, quarantine, deadOutbound,
    acceptError: daemonStatus?.lastAcceptError ? `${iso(daemonStatus.lastAcceptError.at)} ${daemonStatus.lastAcceptError.message}` : null,
  };
}

function blockedLine(b: { seq: number; since: number; code: string; reason: string } | null | undefined): PeerLine['blocked'] {
  return b ? { seq: b.seq, since: new Date(b.since).toISOString(), code: b.code, reason: b.reason } : null;
}

function table(io: CliIO, rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) out(io, r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
}

/** Renders one status report as text; `rates` (messages/s per peer) appear in watch mode. */
function render(io: CliIO, report: StatusReport, rates?: Map<string, number>): void {
  out(io, `host ${report.host}  spool ${report.root}  daemon ${report.daemon.running ? `running (pid ${report.daemon.pid})` : 'not running'}  ${report.time}`);
  const rows = [['QUEUE', 'OUTBOX', 'OLDEST', 'INBOX', 'IN-FLIGHT', 'DEAD']];
  for (const q of report.queues) {
    rows.push([q.queue, String(q.outbox), q.outboxOldestAge === null ? '-' : `${q.outboxOldestAge}s`, String(q.inbox), String(q.inFlight), String(q.dead)]);
  }
  if (report.queues.length === 0) rows.push(['(no queues yet)', '', '', '', '', '']);
  table(io, rows);
  if (report.peers.length > 0) {
    out(io, '');
    const prow = [['PEER', 'BACKLOG', 'PUBLISHED', 'OLDEST', 'RATE', 'DELIVERED', 'LAST RECEIPT', 'BLOCKED / LAST ERROR']];
    for (const p of report.peers) {
      const rate = rates?.get(p.peer);
      const why = p.alarm !== null ? `ALARM ${p.alarm}` : p.blocked !== null ? `at seq ${p.blocked.seq} since ${p.blocked.since}: ${p.blocked.code} ${p.blocked.reason}` : p.lastError ?? '-';
      prow.push([p.peer, String(p.backlog), String(p.published), p.oldestAge === null ? '-' : `${p.oldestAge}s`, rate === undefined ? '-' : `${rate.toFixed(1)}/s`, String(p.shipped), p.lastSuccess ?? '-', why]);
    }
    table(io, prow);
  }
  if (report.landing.length > 0) {
    out(io, '');
    const lrow = [['FROM', 'WAITING', 'UPLOADING', 'DELIVERED', 'MARK', 'GAPS', 'REFUSED', 'REMOVED', 'BLOCKED']];
    for (const l of report.landing) {
      const why = l.error !== null ? `REFUSED DIRECTORY: ${l.error}` : l.blocked !== null ? `at seq ${l.blocked.seq} since ${l.blocked.since}: ${l.blocked.code} ${l.blocked.reason}` : '-';
      lrow.push([l.peer, String(l.waiting), String(l.uploading), String(l.delivered), l.epoch === null ? '-' : `${l.epoch}:${l.hwm}`, String(l.gaps), String(l.refused), String(l.hostile), why]);
    }
    table(io, lrow);
  }
  out(io, '');
  out(io, `quarantined bundles: ${report.quarantine}   undeliverable (dead) outbound: ${report.deadOutbound}`);
  if (report.acceptError) out(io, `accepting outbox messages fails: ${report.acceptError} (nothing new is shipped; see \`ferry doctor\`)`);
}

/** Prints the status once, or keeps refreshing it with --watch (clearing the screen on a TTY). */
export async function statusCommand(flags: StatusFlags, io: CliIO, signal?: AbortSignal): Promise<number> {
  if (flags.watch === undefined || flags.watch === false) {
    const report = await gatherStatus(flags);
    if (flags.json) out(io, JSON.stringify(report));
    else render(io, report);
    return 0;
  }
  const everyS = flags.watch === true ? 2 : Number(flags.watch);
  if (!(everyS > 0)) throw new FerryError('EUSAGE', `--watch expects a positive number of seconds, got ${JSON.stringify(flags.watch)}`);
  let previous: { at: number; shipped: Map<string, number> } | undefined;
  while (!signal?.aborted) {
    const report = await gatherStatus(flags);
    const now = clockNow();
    const shipped = new Map(report.peers.map((p) => [p.peer, p.shipped]));
    const rates = new Map<string, number>();
    if (previous) {
      for (const [peer, n] of shipped) rates.set(peer, Math.max(0, n - (previous.shipped.get(peer) ?? n)) / ((now - previous.at) / 1000));
    }
    previous = { at: now, shipped };
    if (flags.json) out(io, JSON.stringify(report));
    else {
      if (io.stdout.isTTY) io.stdout.write('\x1b[H\x1b[2J');
      render(io, report, rates);
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, everyS * 1000);
      signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  return 0;
}
