// Delivering the landing area into inboxes: verify, dedupe, deliver atomically exactly once, or quarantine.
//
// Per bundle: open and verify it while writing the new messages into inbox tmp/ files; only once
// the whole bundle verified are they fsynced and a journal naming them is written (the commit
// point); then they are renamed into new/, the dedupe state advances, the landing file goes, the
// journal goes. After a crash, a journal is replayed (renames are idempotent: a tmp file that is
// gone was published); without a journal the landing file is simply processed again.
import { createReadStream, constants, openSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError, errno, isFerryError } from '../errors.js';
import { readSealedBundle, type KeyLookup, type PayloadSink } from '../envelope/index.js';
import { completePublish, type DeliveryItem } from '../inbox/delivery.js';
import { ensureDir, fsyncDir, listDir, renameIfExists, replaceFileDurable, unlinkIfExists } from '../maildir/fsx.js';
import { parseBundleName } from '../channel/bundle-name.js';
import type { Log } from '../channel/acceptor.js';
import { crashPoint } from '../spool/crash-point.js';
import type { Spool } from '../spool/spool.js';
import { DedupeStore } from './dedupe.js';
import { now } from '../clock.js';

/** Receiver settings. */
export interface ReceiverOptions {
  /** How long a bundle that arrived ahead of a missing earlier one waits for it before being delivered anyway, ms. Default 5 000. */
  holdMs?: number;
}

/** What happened to one landing file. */
export type ReceiveOutcome = 'delivered' | 'partial' | 'quarantined' | 'held' | 'gone';

const journalSchema = z.strictObject({
  landing: z.string(),
  partial: z.boolean().optional(),
  origin: z.string(),
  epoch: z.string(),
  seqs: z.array(z.number().int()),
  items: z.array(z.strictObject({
    queue: z.string(),
    name: z.string(),
    meta: z.record(z.string(), z.unknown()),
  })),
});

const discard: PayloadSink = { write: async () => undefined, end: async () => undefined };

/** Counters the receiver keeps (for status and metrics). */
export interface ReceiverCounters {
  bundles: number;
  delivered: number;
  duplicates: number;
  quarantined: number;
  lastError?: { at: number; message: string };
  lastDelivery?: number;
}

/** Turns landing/new/ into inbox messages. One per daemon. */
export class Receiver {
  readonly dedupe: DedupeStore;
  readonly counters: ReceiverCounters = { bundles: 0, delivered: 0, duplicates: 0, quarantined: 0 };
  private readonly holdMs: number;
  /**
   * Landing files whose delivery hit a full disk: they are delivered one message at a time (each
   * journaled and recorded), so a bundle larger than the free space still drains as consumers free
   * room, instead of wedging the host with its inbox empty and its landing area full.
   */
  private readonly tight = new Set<string>();
  /** When each held landing file was first seen (monotonic ms): a wall clock stepping back must not hold it for hours. */
  private readonly heldSince = new Map<string, number>();

  constructor(private readonly spool: Spool, private readonly keys: KeyLookup, private readonly log: Log, opts: ReceiverOptions = {}) {
    this.dedupe = new DedupeStore(spool.layout.receive);
    this.holdMs = opts.holdMs ?? 5_000;
  }

  private get journalDir(): string { return join(this.spool.layout.receive, 'journal'); }

  /** Loads the dedupe state and finishes deliveries a crash interrupted. */
  async recover(): Promise<void> {
    await ensureDir(this.journalDir);
    await this.dedupe.load();
    for (const name of await listDir(this.journalDir)) {
      if (!name.endsWith('.json')) continue;
      const journal = await this.readJournal(name);
      if (!journal) continue;
      this.log.info({ landing: journal.landing, messages: journal.items.length }, 'finishing a delivery interrupted by a crash');
      await this.finish(journal, name);
    }
  }

  /** Processes every landing file once, oldest channel position first. Returns how many were delivered. */
  async processOnce(): Promise<number> {
    const names = (await listDir(this.spool.layout.landingNew)).filter((n) => !n.startsWith('.'));
    const keyed = names.map((name) => ({ name, parts: parseBundleName(name) }));
    keyed.sort((a, b) => {
      if (!a.parts || !b.parts) return a.parts ? -1 : b.parts ? 1 : a.name < b.name ? -1 : 1;
      if (a.parts.origin !== b.parts.origin) return a.parts.origin < b.parts.origin ? -1 : 1;
      if (a.parts.epoch !== b.parts.epoch) return a.parts.epoch < b.parts.epoch ? -1 : 1;
      return a.parts.firstSeq - b.parts.firstSeq;
    });
    let delivered = 0;
    let firstError: unknown;
    const stalled = new Set<string>();
    for (const { name, parts } of keyed) {
      // One bundle that cannot be delivered now (a full disk…) must not stall other channels; the
      // rest of its own channel waits behind it, so order per origin holds.
      const channel = parts ? `${parts.origin}/${parts.epoch}` : undefined;
      if (channel !== undefined && stalled.has(channel)) continue;
      try {
        let outcome = await this.processBundle(name);
        while (outcome === 'partial') outcome = await this.processBundle(name);
        if (outcome === 'delivered') delivered += 1;
      } catch (err) {
        firstError ??= err;
        if (channel !== undefined) stalled.add(channel);
      }
    }
    if (firstError !== undefined) throw firstError;
    return delivered;
  }

  /** Processes one landing file. Throws only for local trouble (disk full…): the file stays for a retry. */
  async processBundle(name: string): Promise<ReceiveOutcome> {
    const path = join(this.spool.layout.landingNew, name);
    let st;
    try {
      st = await fsp.lstat(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') return 'gone';
      throw err;
    }
    if (!st.isFile()) {
      await this.quarantine(name, new FerryError('EENVELOPE_FORMAT', `landing entry ${name} is not a regular file`));
      return 'quarantined';
    }
    // A delivery of this very file that journaled and then failed part-way (a full disk, EIO) is
    // finished from its journal, never decoded again: a second decode would deliver twice.
    const pending = await this.readJournal(`${name}.json`);
    if (pending) {
      await this.finish(pending, `${name}.json`);
      return pending.partial ? 'partial' : 'delivered';
    }
    const parts = parseBundleName(name);
    // A bundle ahead of the next expected sequence (a new channel epoch expects 1) waits a little for
    // the earlier ones, which a pipelined sender may still be uploading: order per origin (I9).
    if (parts && parts.firstSeq > this.dedupe.expected(parts.origin, parts.epoch)) {
      const seen = this.heldSince.get(name) ?? performance.now();
      this.heldSince.set(name, seen);
      if (performance.now() - seen < this.holdMs) return 'held';
    }
    this.heldSince.delete(name);
    const delivery = this.spool.delivery();
    const limit = this.tight.has(name) ? 1 : Number.POSITIVE_INFINITY;
    let partial = false;
    const seqs: number[] = [];
    let origin = '';
    let epoch = '';
    let duplicates = 0;
    let localError: unknown;
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (errno(err) === 'ENOENT') return 'gone';
      throw err;
    }
    try {
      const header = await readSealedBundle(createReadStream(path, { fd, highWaterMark: 1024 * 1024 }), this.keys, this.spool.host, {
        onHeader: (h) => {
          origin = h.origin;
          epoch = h.channel;
          const expected = this.dedupe.expected(h.origin, h.channel);
          if (h.firstSeq > expected && this.dedupe.mark(h.origin, h.channel)) {
            this.log.warn({ origin: h.origin, epoch: h.channel, expected, got: h.firstSeq }, 'sequence gap: delivering a bundle ahead of missing earlier ones');
          }
        },
        onMessage: async (meta) => {
          if (this.dedupe.has(origin, epoch, meta.seq)) {
            duplicates += 1;
            return discard;
          }
          if (seqs.length >= limit) {
            partial = true; // left for the next round: dedupe will skip what this round delivers
            return discard;
          }
          seqs.push(meta.seq);
          try {
            const w = await delivery.add({ id: meta.id, origin, queue: meta.queue, headers: meta.headers, committed: meta.committed });
            return {
              write: (chunk) => w.write(chunk).catch((err: unknown) => { localError = err; throw err; }),
              end: () => w.end().catch((err: unknown) => { localError = err; throw err; }),
            };
          } catch (err) {
            localError = err;
            throw err;
          }
        },
      });
      if (seqs.length === 0) {
        await delivery.discard();
        this.counters.duplicates += duplicates;
        await this.quarantine(name, new FerryError('EENVELOPE_REPLAY', `bundle ${header.firstSeq}..${header.firstSeq + header.count - 1} from ${header.origin} was delivered already (a replay, or a retransmission after a sender crash)`));
        return 'quarantined';
      }
      await delivery.prepare();
    } catch (err) {
      await delivery.discard();
      if (localError === undefined && isFerryError(err) && !err.recoverable) {
        await this.quarantine(name, err);
        return 'quarantined';
      }
      this.counters.lastError = { at: now(), message: String((localError ?? err) instanceof Error ? ((localError ?? err) as Error).message : (localError ?? err)) };
      if (errno(localError ?? err) === 'ENOSPC' || errno(localError ?? err) === 'EDQUOT') this.tight.add(name);
      throw localError ?? err;
    }
    const journal: Journal = { landing: name, origin, epoch, seqs, items: delivery.items, ...(partial ? { partial } : {}) };
    const journalName = `${name}.json`;
    try {
      await replaceFileDurable(join(this.journalDir, journalName), JSON.stringify(journal));
    } catch (err) {
      // No commit (a full disk, an I/O error): throw the prepared messages away, or their tmp files hold the space a
      // full disk needs until the 36 h tmp sweep. The journal goes first — it may exist if only the directory fsync
      // failed, and a journal naming tmp files that are gone would replay as "published already" (a loss).
      this.counters.lastError = { at: now(), message: err instanceof Error ? err.message : String(err) };
      try {
        await fsp.unlink(join(this.journalDir, journalName));
      } catch (unlinkErr) {
        // Not there (ENOENT, or ENOTDIR: the directory itself is gone), or the tmp files must stay: keep them then.
        if (errno(unlinkErr) !== 'ENOENT' && errno(unlinkErr) !== 'ENOTDIR') throw err;
      }
      await delivery.discard();
      throw err;
    }
    crashPoint('receive.after-journal');
    await this.finish(journal, journalName);
    this.counters.bundles += 1;
    this.counters.delivered += seqs.length;
    this.counters.duplicates += duplicates;
    this.counters.lastDelivery = now();
    if (partial) return 'partial';
    this.tight.delete(name);
    return 'delivered';
  }

  /** The journal named `journalName`, or undefined when there is none. */
  private async readJournal(journalName: string): Promise<Journal | undefined> {
    try {
      return journalSchema.parse(JSON.parse(await fsp.readFile(join(this.journalDir, journalName), 'utf8'))) as unknown as Journal;
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Completes a journaled delivery (idempotent). */
  private async finish(journal: Journal, journalName: string): Promise<void> {
    await completePublish(this.spool, journal.items);
    for (const item of journal.items) this.spool.inbox.invalidate(item.queue);
    crashPoint('receive.after-publish');
    const skipped = await this.dedupe.record(journal.origin, journal.epoch, journal.seqs);
    if (skipped.length > 0) this.log.error({ origin: journal.origin, epoch: journal.epoch, skipped: skipped.slice(0, 20) }, 'gave up waiting for missing sequence numbers');
    if (!journal.partial) {
      // A partial round leaves the bundle for the next one; only the last round removes it.
      await unlinkIfExists(join(this.spool.layout.landingNew, journal.landing));
      await fsyncDir(this.spool.layout.landingNew);
    }
    await unlinkIfExists(join(this.journalDir, journalName));
  }

  /**
   * Moves a landing file to quarantine with a reason file; it is never delivered as it is. The
   * bundle moves first and the reason follows it, so a move that fails (EXDEV across a wrong-way bind
   * mount, EIO) leaves no reason file behind to be counted, and a crash in between leaves a
   * quarantined bundle without a reason (counted all the same) rather than a reason without a bundle.
   */
  private async quarantine(name: string, err: FerryError): Promise<void> {
    const dir = this.spool.layout.quarantine;
    const qname = `${now()}.${name}`;
    const keyId = err.code === 'EKEY_UNKNOWN' ? await clearKeyId(join(this.spool.layout.landingNew, name)) : undefined;
    if (!(await renameIfExists(join(this.spool.layout.landingNew, name), join(dir, qname)))) return;
    await replaceFileDurable(join(dir, `${qname}.reason.json`), JSON.stringify({ code: err.code, reason: err.message, at: now(), landing: name, ...(keyId ? { keyId } : {}) }));
    this.counters.quarantined += 1;
    this.log.warn({ landing: name, code: err.code, reason: err.message }, 'bundle quarantined');
  }

  /**
   * Gives bundles quarantined only because their key was unknown another chance once that key is
   * known (a key deployed late, or refused for its mode and then fixed): they go back to the
   * landing area and are verified from scratch; dedupe keeps anything already delivered from
   * being delivered twice. Returns how many went back.
   */
  async requeueKeyless(known: (keyId: string) => boolean): Promise<number> {
    const dir = this.spool.layout.quarantine;
    let requeued = 0;
    for (const reasonName of await listDir(dir)) {
      if (!reasonName.endsWith('.reason.json')) continue;
      let reason: { code?: string; keyId?: string; landing?: string };
      try {
        reason = JSON.parse(await fsp.readFile(join(dir, reasonName), 'utf8')) as typeof reason;
      } catch {
        continue;
      }
      if (reason.code !== 'EKEY_UNKNOWN' || !reason.keyId || !reason.landing || !known(reason.keyId)) continue;
      const qname = reasonName.slice(0, -'.reason.json'.length);
      const target = join(this.spool.layout.landingNew, reason.landing);
      try {
        await fsp.link(join(dir, qname), target); // never over a bundle of the same name already waiting
      } catch (err) {
        if (errno(err) !== 'EEXIST' && errno(err) !== 'ENOENT') throw err;
        continue;
      }
      await unlinkIfExists(join(dir, qname));
      await unlinkIfExists(join(dir, reasonName));
      requeued += 1;
      this.counters.quarantined = Math.max(0, this.counters.quarantined - 1);
      this.log.info({ landing: reason.landing, keyId: reason.keyId }, 'key now known: quarantined bundle returned to the landing area');
    }
    if (requeued > 0) await fsyncDir(this.spool.layout.landingNew);
    return requeued;
  }
}

/** The key id in a bundle's clear prefix (magic, version, mode, id length, id), or undefined. */
async function clearKeyId(path: string): Promise<string | undefined> {
  try {
    const fh = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const buf = Buffer.alloc(7 + 64);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead < 8 || buf.toString('latin1', 0, 4) !== 'FRY1') return undefined;
      const len = buf[6] as number;
      if (len < 1 || len > 64 || 7 + len > bytesRead) return undefined;
      const id = buf.toString('latin1', 7, 7 + len);
      return /^[A-Za-z0-9._-]{1,64}$/.test(id) ? id : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

interface Journal {
  landing: string;
  partial?: boolean;
  origin: string;
  epoch: string;
  seqs: number[];
  items: DeliveryItem[];
}

/** Number of quarantined bundles on disk (the bundles themselves, not their reason files). */
export async function quarantineCount(spool: Spool): Promise<number> {
  return (await listDir(spool.layout.quarantine)).filter((n) => !n.endsWith('.reason.json') && !n.includes('.reason.json.tmp-')).length;
}
