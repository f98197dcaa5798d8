// `ferry status`: queue depths on this host (outbox, inbox, in flight, dead letters), as a table or JSON.
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

/** Flags of `ferry status`. */
export interface StatusFlags extends GlobalFlags {
  json?: boolean;
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

/** The whole status document (`--json` prints exactly this). */
export interface StatusReport {
  host: string;
  root: string;
  time: string;
  queues: QueueStatus[];
}

/** Gathers the status of a spool. */
export async function gatherStatus(flags: GlobalFlags): Promise<StatusReport> {
  const config = await configFrom(flags);
  const spool = await openSpool(config);
  const now = Date.now();
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
  return { host: config.host, root: config.root, time: new Date(now).toISOString(), queues };
}

/** Prints the status. */
export async function statusCommand(flags: StatusFlags, io: CliIO): Promise<number> {
  const report = await gatherStatus(flags);
  if (flags.json) {
    out(io, JSON.stringify(report));
    return 0;
  }
  out(io, `host ${report.host}  spool ${report.root}`);
  const rows = [['QUEUE', 'OUTBOX', 'OLDEST', 'INBOX', 'IN-FLIGHT', 'DEAD']];
  for (const q of report.queues) {
    rows.push([q.queue, String(q.outbox), q.outboxOldestAge === null ? '-' : `${q.outboxOldestAge}s`, String(q.inbox), String(q.inFlight), String(q.dead)]);
  }
  if (report.queues.length === 0) rows.push(['(no queues yet)', '', '', '', '', '']);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) out(io, r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
  return 0;
}
