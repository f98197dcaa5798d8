// What the receiver has delivered from each origin: one small record per origin, apart from the inbox, never forgotten.
//
// Strict order makes the record small: per origin, the epoch being delivered (number and id) and its delivered
// mark — every sequence up to `hwm` is in the inbox or was skipped by the sender's gap record. Epoch numbers only
// grow, so every epoch numbered below the current one is closed without remembering it (I3: a replay of any old
// bundle is refused, however many times the sender was re-provisioned). The record also remembers the previous
// epoch's final mark (for the sender switching epochs), a receipt generation, and an alarm that blocks the channel.
//
// The last RETAIN delivery journals per origin are kept under done/<origin>/ (a rename instead of the unlink that
// finished a delivery before): they name the message id of every recently delivered sequence. That is how a bundle
// arriving again is told apart: the same ids (a retransmission: dropped quietly) or new ids under old sequence
// numbers (a sender restored from a backup: an alarm), and how messages a restored sender re-seals into a new epoch
// are delivered at most once.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError, errno } from '../errors.js';
import { ensureDir, fsyncDir, listDir, renameIfExists, replaceFileDurable, unlinkIfExists, writeNewFile } from '../maildir/fsx.js';
import { monotonicMicros, raiseMicrosFloor } from '../maildir/unique.js';

/** Journals kept per origin for the id window (each names the ids of one delivered bundle or round). */
export const RETAIN = 64;

const mark = z.strictObject({ epoch: z.number().int().min(1), channel: z.string().min(1).max(64), hwm: z.number().int().min(0) });
const recordSchema = z.strictObject({
  current: mark.extend({ gaps: z.number().int().min(0), since: z.number() }).nullable(),
  previous: mark.nullable(),
  gen: z.number().int().min(0),
  /** The highest name time (µs) this host had used when the record was saved: inbox names continue above it after a restart. */
  names: z.number().int().min(0).optional(),
  /** Set while the channel is stopped by an alarm; only an operator's `ferry receive resync` (or the cause going away) clears it. */
  alarm: z.strictObject({
    code: z.enum(['EDEDUPE_ROLLBACK', 'ESEQ_REUSE', 'EEPOCH_CONFLICT']),
    reason: z.string(),
    since: z.number(),
    epoch: z.number().int().min(1),
    channel: z.string(),
    /** What the sender says it saw delivered (for a rollback: the mark a resync adopts). */
    acked: z.number().int().min(0),
  }).nullable(),
});

/** One origin's delivered state. */
export type OriginRecord = z.infer<typeof recordSchema>;
/** The alarm that stops a channel. */
export type OriginAlarm = NonNullable<OriginRecord['alarm']>;

/** A record for an origin nothing was delivered from yet. */
export function emptyRecord(): OriginRecord {
  return { current: null, previous: null, gen: 0, alarm: null };
}

const retainedSchema = z.object({
  epoch: z.number(),
  channel: z.string(),
  seqs: z.array(z.number()),
  /** Aligned with `seqs`: the id of each message handled (delivered, or skipped as resealed). */
  ids: z.array(z.string()).optional(),
  gap: z.object({ first: z.number(), count: z.number() }).optional(),
});

/** The delivered state of every origin, in state/receive/origins/<origin>.json, plus this receiver's instance id. */
export class OriginStates {
  private readonly records = new Map<string, OriginRecord>();
  private readonly retained = new Map<string, string[]>();
  /** This receiver's dedupe-state instance (state/receive/instance): receipts carry it, so a sender notices a state made anew. */
  instance = '';

  constructor(private readonly dir: string) {}

  private get originsDir(): string { return join(this.dir, 'origins'); }
  private doneDir(origin: string): string { return join(this.dir, 'done', origin); }

  /**
   * Loads every record and the instance id. A missing instance file with records present means the state was
   * partly lost or copied by hand: refused (`EDEDUPE_ROLLBACK`), since delivering on would risk a second delivery.
   */
  async load(): Promise<void> {
    await ensureDir(this.dir);
    await ensureDir(this.originsDir);
    await ensureDir(join(this.dir, 'done'));
    const names = (await listDir(this.originsDir)).filter((n) => n.endsWith('.json'));
    const instanceFile = join(this.dir, 'instance');
    try {
      this.instance = (await fsp.readFile(instanceFile, 'utf8')).trim();
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      if (names.length > 0) {
        throw new FerryError('EDEDUPE_ROLLBACK', `${instanceFile} is missing while ${this.originsDir} holds records: the receiver's dedupe state was partly lost or restored by hand; restore it whole, or move ${this.dir} away to start afresh (senders then raise EDEDUPE_ROLLBACK until \`ferry receive resync\`)`, { path: instanceFile });
      }
      this.instance = randomBytes(8).toString('hex');
      await writeNewFile(instanceFile, `${this.instance}\n`).catch(async (e: unknown) => {
        if (errno(e) !== 'EEXIST') throw e;
        this.instance = (await fsp.readFile(instanceFile, 'utf8')).trim();
      });
      await fsyncDir(this.dir);
    }
    if (!/^[0-9a-f]{16}$/.test(this.instance)) throw new FerryError('ESPOOL', `${instanceFile} is malformed`, { path: instanceFile });
    this.records.clear();
    for (const name of names) {
      const origin = name.slice(0, -'.json'.length);
      const path = join(this.originsDir, name);
      const parsed = recordSchema.safeParse(JSON.parse(await fsp.readFile(path, 'utf8')));
      if (!parsed.success) throw new FerryError('ESPOOL', `receive state ${path} is malformed; restore it from a backup of the whole state/receive/ directory`, { path });
      this.records.set(origin, parsed.data);
      // Names of deliveries after a restart sort after the ones before it, whatever the clock did meanwhile.
      raiseMicrosFloor(parsed.data.names ?? 0);
    }
  }

  /** The record of `origin` (a copy; change it and `save`). */
  get(origin: string): OriginRecord {
    const r = this.records.get(origin);
    return r === undefined ? emptyRecord() : structuredClone(r);
  }

  /** True when anything was ever recorded for `origin`. */
  known(origin: string): boolean {
    return this.records.has(origin);
  }

  /** Origins with a record. */
  origins(): string[] {
    return [...this.records.keys()].sort();
  }

  /** Persists `record` durably (write, fsync, rename, fsync the directory) before it counts. */
  async save(origin: string, record: OriginRecord): Promise<void> {
    record.names = monotonicMicros();
    await replaceFileDurable(join(this.originsDir, `${origin}.json`), JSON.stringify(record));
    this.records.set(origin, structuredClone(record));
  }

  /**
   * Keeps a finished journal (or gap note) in done/<origin>/ instead of deleting it, and prunes the oldest beyond
   * RETAIN. `name` sorts in delivery order (epoch number, then first sequence).
   */
  async retain(origin: string, journalPath: string, name: string): Promise<void> {
    const dir = this.doneDir(origin);
    let list = this.retained.get(origin);
    if (list === undefined) {
      await ensureDir(dir);
      list = (await listDir(dir)).filter((n) => n.endsWith('.json')).sort();
      this.retained.set(origin, list);
    }
    if (await renameIfExists(journalPath, join(dir, name))) {
      // Durable in done/ before the next journal's write fsyncs journal/ (making its leaving there durable): else a
      // power cut could lose it from both, and with it the ids of what it delivered (found by the power-cut chaos).
      await fsyncDir(dir);
      if (!list.includes(name)) {
        list.push(name);
        list.sort();
      }
      // After a power cut both names can be links of one file (the move was half durable): rename then does nothing.
      await unlinkIfExists(journalPath);
    }
    while (list.length > RETAIN) {
      const old = list.shift() as string;
      await unlinkIfExists(join(dir, old));
    }
  }

  /**
   * The message ids delivered recently from `origin`: per (epoch number, sequence) and as a set. Read from done/ on
   * demand — only a bundle that arrives again, or a resealed one, needs it.
   */
  async window(origin: string): Promise<{ bySeq: Map<string, string | null>; ids: Set<string> }> {
    const bySeq = new Map<string, string | null>();
    const ids = new Set<string>();
    const dir = this.doneDir(origin);
    for (const name of (await listDir(dir)).filter((n) => n.endsWith('.json'))) {
      let parsed;
      try {
        parsed = retainedSchema.safeParse(JSON.parse(await fsp.readFile(join(dir, name), 'utf8')));
      } catch {
        continue;
      }
      if (!parsed.success) continue;
      const r = parsed.data;
      const list = r.ids ?? [];
      r.seqs.forEach((seq, i) => {
        const id = list[i] ?? null;
        bySeq.set(`${r.epoch}:${seq}`, id);
        if (id !== null) ids.add(id);
      });
      if (r.gap) for (let s = r.gap.first; s < r.gap.first + r.gap.count; s++) bySeq.set(`${r.epoch}:${s}`, null);
    }
    return { bySeq, ids };
  }
}

/**
 * The record once an operator cleared its alarm (`ferry receive resync`): for a rollback, the sender's word is taken
 * — its acked mark becomes the delivered mark of its epoch. Returns undefined when there was no alarm.
 */
export function resynced(rec: OriginRecord, at: number): OriginRecord | undefined {
  const alarm = rec.alarm;
  if (alarm === null) return undefined;
  const next = structuredClone(rec);
  if (alarm.code === 'EDEDUPE_ROLLBACK') {
    if (next.current && next.current.epoch !== alarm.epoch) next.previous = { epoch: next.current.epoch, channel: next.current.channel, hwm: next.current.hwm };
    next.current = { epoch: alarm.epoch, channel: alarm.channel, hwm: alarm.acked, gaps: next.current?.gaps ?? 0, since: at };
  }
  next.alarm = null;
  next.gen += 1;
  return next;
}
