// Delivering one landing file: open it through the pinned directory, decide by its sealed header, deliver exactly once or refuse.
//
// Per bundle: (1) open the entry without following links and check what the descriptor says (a regular file with
// one link, on the landing directory's device, within the size limit); (2) read and verify it while writing the
// messages it may deliver into inbox tmp/ files; (3) once it all verified, fsync them and write a journal naming
// them (the commit point); (4) publish them into new/, record the new delivered mark, keep the journal in the id
// window. The landing file is removed later, after the receipt that covers it is written.
import { closeSync, read as readCb, readSync } from 'node:fs';
import { promisify } from 'node:util';
import { FerryError, errno, isFerryError } from '../errors.js';
import { authenticHeaderOf, readSealedBundle, type BundleHeader, type KeyLookup, type MessageMeta, type PayloadSink } from '../envelope/index.js';
import type { DeliveryItem } from '../inbox/delivery.js';
import { crashPoint } from '../spool/crash-point.js';
import type { Spool } from '../spool/spool.js';
import { decide, lastOf, type Decision } from './channel-decision.js';
import { DiskBudget, readerLimits, type ReceiveLimits } from './limits.js';
import type { OriginStates } from './origin-state.js';
import type { PinnedDir } from './pinned-dir.js';
import { writeJournal, type Journal } from './receive-journal.js';

const readAsync = promisify(readCb);
const READ_CHUNK = 1024 * 1024;
const discard: PayloadSink = { write: async () => undefined, end: async () => undefined };

/** What became of one landing file. */
export type Outcome =
  | { kind: 'delivered'; journal: Journal }
  | { kind: 'partial'; journal: Journal }
  | { kind: 'held'; code: string; reason: string; seq: number; header?: BundleHeader }
  | { kind: 'alarm' }
  /** `header`: the refused bytes authenticated, and this is what they sealed (the receipt names the bundle by it, never by the landing name). */
  | { kind: 'refused'; err: FerryError; header?: BundleHeader }
  | { kind: 'retransmission' }
  | { kind: 'hostile'; why: string }
  | { kind: 'gone' };

/** Everything one delivery needs, handed in by the receiver (a narrow port, so this can be tested alone). */
export interface DeliveryContext {
  spool: Spool;
  states: OriginStates;
  keys: KeyLookup;
  limits: ReceiveLimits;
  /** Deliver at most this many messages this round (1 after a full disk: drain a large bundle as room frees). */
  roundLimit: number;
}

/** Thrown from the reader's header callback to stop reading a bundle that is not to be delivered now. */
class Stop {
  constructor(readonly decision: Exclude<Decision, { kind: 'deliver' } | { kind: 'duplicate' }>) {}
}

/** Reads `size` bytes of `fd` from offset 0: direct calls for a small file, the thread pool for a large one. */
async function* readFd(fd: number, size: number): AsyncGenerator<Uint8Array> {
  let pos = 0;
  while (pos < size) {
    const len = Math.min(READ_CHUNK, size - pos);
    const buf = Buffer.allocUnsafe(len);
    const n = size <= READ_CHUNK ? readSync(fd, buf, 0, len, pos) : (await readAsync(fd, buf, 0, len, pos)).bytesRead;
    if (n === 0) return; // the peer truncated it meanwhile: the parser reports the truncation
    pos += n;
    yield n === len ? buf : buf.subarray(0, n);
  }
}

/**
 * Opens `name` in `dir` and judges the descriptor: anything but a regular file with one link on the directory's
 * device is never read (a symlink, FIFO, device, directory or hard link a peer planted). Returns the open fd.
 */
export function openLanding(dir: PinnedDir, name: string, maxBytes: number): { fd: number; size: number } | Outcome {
  const opened = dir.openRead(name);
  if (opened === undefined) return { kind: 'gone' };
  const { fd, stat } = opened;
  let why: string | undefined;
  if (fd < 0) return { kind: 'hostile', why: stat.isSymbolicLink() ? 'a symlink' : 'not readable by this daemon (its owner took the read permission away)' };
  if (!stat.isFile()) why = 'not a regular file';
  else if (stat.nlink !== 1) why = `a regular file with ${stat.nlink} hard links`;
  else if (stat.dev !== dir.dev) why = 'on another file system than its directory';
  if (why !== undefined) {
    closeSync(fd);
    return { kind: 'hostile', why };
  }
  if (stat.size > maxBytes) {
    return { fd, size: -stat.size }; // the caller refuses it (copying at most the quarantine's limit)
  }
  return { fd, size: stat.size };
}

/**
 * Reads the bundle open at `fd` from `peer`'s landing directory and delivers what the channel's rules allow.
 * Throws only for local trouble (a full disk, an I/O error): nothing was committed, the file stays for a retry.
 */
export async function deliverBundle(ctx: DeliveryContext, peer: string, landing: string, fd: number, size: number): Promise<Outcome> {
  const rec = ctx.states.get(peer);
  const delivery = ctx.spool.delivery();
  const items: DeliveryItem[] = [];
  const seqs: number[] = [];
  const dupIds: Array<{ seq: number; id: string }> = [];
  let decision: Decision | undefined;
  let header: BundleHeader | undefined;
  let localError: unknown;
  let partial = false;
  let skippedResealed = 0;
  let window: Awaited<ReturnType<OriginStates['window']>> | undefined;
  const budget = new DiskBudget(ctx.spool.layout.inbox, ctx.limits.reserveBytes);
  const local = <T>(p: Promise<T>): Promise<T> => p.catch((err: unknown) => { localError = err; throw err; });

  try {
    await readSealedBundle(readFd(fd, size), ctx.keys, ctx.spool.host, {
      onHeader: async (h) => {
        header = h;
        decision = decide(rec, h, peer);
        if (decision.kind !== 'deliver' && decision.kind !== 'duplicate') throw new Stop(decision);
        if (decision.kind === 'duplicate' || (h.resealed ?? 0) > 0 || decision.skipUpTo > 0) window = await ctx.states.window(peer);
      },
      onMessage: async (meta: MessageMeta) => {
        const d = decision as Decision;
        const h = header as BundleHeader;
        if (d.kind === 'duplicate' || (d.kind === 'deliver' && meta.seq <= d.skipUpTo)) {
          dupIds.push({ seq: meta.seq, id: meta.id });
          return discard;
        }
        // Resealed by a sender restored from a backup: a message whose id was delivered recently is not delivered again.
        if (meta.seq < h.firstSeq + (h.resealed ?? 0) && window?.ids.has(meta.id)) {
          skippedResealed += 1;
          seqs.push(meta.seq);
          items.push(skipItem(meta));
          return discard;
        }
        if (seqs.length - skippedResealed >= ctx.roundLimit) {
          partial = true; // left for the next round: its delivered mark will skip what this round delivers
          return discard;
        }
        budget.take(meta.size);
        seqs.push(meta.seq);
        const w = await local(delivery.add({ id: meta.id, origin: peer, queue: meta.queue, headers: meta.headers, committed: meta.committed }));
        items.push(delivery.items[delivery.items.length - 1] as DeliveryItem);
        return { write: (c) => local(w.write(c)), end: () => local(w.end()) };
      },
    }, readerLimits(ctx.limits));
  } catch (err) {
    await delivery.discard();
    if (err instanceof Stop) return stopped(ctx, peer, err.decision, rec, header);
    if (localError === undefined && isFerryError(err) && !err.recoverable) {
      if (err.code === 'EKEY_UNKNOWN') return { kind: 'held', code: 'EKEY_UNKNOWN', reason: err.message, seq: (rec.current?.hwm ?? 0) + 1 };
      const authentic = authenticHeaderOf(err);
      return { kind: 'refused', err, ...(authentic ? { header: authentic } : {}) };
    }
    throw localError ?? err;
  }
  const h = header as BundleHeader;
  const d = decision as Decision;
  if (d.kind === 'duplicate' || (d.kind === 'deliver' && dupIds.length > 0)) {
    const verdict = compareIds(h, dupIds, window?.bySeq ?? new Map(), peer, d.kind === 'deliver');
    if (verdict !== undefined) {
      await delivery.discard();
      return verdict;
    }
    if (d.kind === 'duplicate') return { kind: 'retransmission' };
  }
  if (d.kind !== 'deliver') throw new Error('unreachable');
  const delivered = items.filter((i) => i.name !== '');
  const journal: Journal = {
    peer, landing, epoch: h.epoch ?? 1, channel: h.channel, newEpoch: d.newEpoch,
    hwm: partial ? (seqs[seqs.length - 1] ?? d.skipUpTo) : lastOf(h),
    seqs, items: delivered, ids: items.map((i) => i.meta.id),
    ...(partial ? { partial } : {}),
    ...(h.kind === 'gap' ? { gap: { first: h.firstSeq, count: h.count, reason: h.gap ?? '' } } : {}),
  };
  await delivery.prepare().catch(async (err: unknown) => { await delivery.discard(); throw err; });
  await writeJournal(ctx.spool.layout.receive, journal, () => delivery.discard());
  crashPoint('receive.after-journal');
  return { kind: partial ? 'partial' : 'delivered', journal };
}

/** A placeholder item for a resealed message skipped as already delivered: in the id window, never published. */
function skipItem(meta: MessageMeta): DeliveryItem {
  return { queue: meta.queue, name: '', meta: { id: meta.id, origin: '', queue: meta.queue, headers: {}, committed: meta.committed, delivered: 0, attempts: 0 } };
}

/** Turns a decision that stopped the read into an outcome; an alarm is recorded at once, so the channel stops. */
async function stopped(ctx: DeliveryContext, peer: string, d: Stop['decision'], rec: ReturnType<OriginStates['get']>, header: BundleHeader | undefined): Promise<Outcome> {
  if (d.kind === 'hold') return { kind: 'held', code: d.code, reason: d.reason, seq: d.seq, ...(header ? { header } : {}) };
  if (d.kind === 'refuse') return { kind: 'refused', err: d.err, ...(header ? { header } : {}) };
  await ctx.states.save(peer, { ...rec, alarm: d.alarm });
  return { kind: 'alarm' };
}

/**
 * Sequences delivered already arrived again: the same message ids mean a retransmission (undefined: drop it quietly);
 * other ids mean the sender reuses sequence numbers (restored from a backup): refused as ESEQ_REUSE, never as noise.
 */
function compareIds(h: BundleHeader, seen: Array<{ seq: number; id: string }>, bySeq: Map<string, string | null>, peer: string, continuing: boolean): Outcome | undefined {
  let unknown = 0;
  for (const { seq, id } of seen) {
    const was = bySeq.get(`${h.epoch ?? 1}:${seq}`);
    if (was === undefined) {
      unknown += 1;
      continue;
    }
    if (was !== id) {
      return { kind: 'refused', header: h, err: new FerryError('ESEQ_REUSE', `${peer} reused sequence ${seq} of epoch ${h.epoch ?? 1} for message ${id}, but ${was === null ? 'a gap record skipped that sequence' : `message ${was} was delivered under it`}: the sender was restored from a backup; it must move to a new epoch (it does so by itself when it reads this host's receipt)`, { peer }) };
    }
  }
  // A bundle delivered a message per round on a full disk may outlive the window of its own early rounds: only a
  // bundle that brings nothing new is judged by ids it cannot compare.
  if (unknown > 0 && !continuing) {
    return { kind: 'refused', header: h, err: new FerryError('EENVELOPE_REPLAY', `sequences ${h.firstSeq}..${lastOf(h)} of epoch ${h.epoch ?? 1} from ${peer} were delivered already, ${unknown} of them too long ago to compare their ids (a replay, or a sender restored from an old backup)`, { peer }) };
  }
  return undefined;
}

/** True for local trouble worth draining one message at a time (a full disk). */
export function isDiskFull(err: unknown): boolean {
  const code = errno(err);
  return code === 'ENOSPC' || code === 'EDQUOT' || isFerryError(err, 'EDISK_FULL');
}
