// Moving committed messages from the outbox into per-peer channels as sealed bundles, exactly once.
//
// One accept pass: pick the oldest outbox entries (a batch), seal them into bundles for every
// destination with fresh sequence numbers, write the bundles into each channel's tmp/ (fsynced),
// then commit by writing the accept journal. Applying the journal renames the bundles into out/,
// advances each channel's sequence, and removes the sources. A crash before the journal leaves the
// sources in the outbox (the tmp bundles are discarded, their sequence numbers never used); a crash
// after it is finished by replaying the journal. So every message enters each channel exactly once.
import { closeSync, constants, fstatSync, lstatSync, openSync, promises as fsp, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError, errno, isFerryError, messageOf } from '../errors.js';
import { formatBundleName, writeSealedBundle, type OutgoingMessage, type SealKey } from '../envelope/index.js';
import { unsealableReason } from '../envelope/sealable.js';
import { createExclusive, ensureDir, fsyncDir, listDir, openRegularForRead, parentOf, renameIfExists, replaceFileDurable, unlinkIfExists, unlinkIfExistsSync, writeAll, pathExists } from '../maildir/fsx.js';
import { uniqueName } from '../maildir/unique.js';
import { openCommitFile } from '../outbox/commit-file.js';
import { dropTmpLinks, finishParkedCommits } from '../outbox/commit-point.js';
import type { OutboxEntry } from '../outbox/outbox.js';
import { crashPoint } from '../spool/crash-point.js';
import type { Spool } from '../spool/spool.js';
import { ChannelDir, type ChannelState } from './channel-state.js';
import { recoverSwitch } from './epoch-switch.js';
import { now } from '../clock.js';

/** Decides where messages go and how they travel. */
export interface AcceptPolicy {
  /** Destinations (peers, or this host) of a message to `queue`; `to` is the sender's override. Empty: no route. */
  destinations(queue: string, to: readonly string[] | undefined): string[];
  /** Compression for a queue's payloads. */
  compression(queue: string): 'none' | 'gzip' | 'br';
  /** The key to seal bundles for `peer` with (throws EKEY_NONE when there is none). */
  sealingKey(peer: string): SealKey;
  /** How long a message may wait in the outbox without a route, ms. */
  lifetimeMs: number;
  /** The highest sequence of `state`'s epoch a receipt from `peer` proved delivered (sealed into each header). Default 0. */
  acked?(peer: string, state: ChannelState): number;
  /** Runs `fn` while no epoch switch rewrites a channel's state. Default: runs it at once. */
  lock?<T>(fn: () => Promise<T>): Promise<T>;
}

/** Batch and bundle sizes. Every field has a default. */
export interface AcceptLimits {
  /**
   * Most messages taken from the outbox in one pass. Default 2 000, one full bundle: a backlog then
   * goes out as a stream of passes, and the first bundle ships while the next pass is being sealed.
   */
  batchMessages?: number;
  /**
   * Most payload bytes taken in one pass (one larger entry is still taken alone). Default 32 MiB: small
   * commit files are held in memory for the pass, so this bounds what a pass holds.
   */
  batchBytes?: number;
  /** Most messages in one bundle. Default 2 000. */
  bundleMessages?: number;
  /** How many of the oldest outbox entries one scan keeps for the passes that follow. Default 20 000 (~2 MB). */
  scanEntries?: number;
  /** Most payload bytes in one bundle (one larger message travels alone). Default 4 MiB. */
  bundleBytes?: number;
}

/** What one pass did. */
export interface AcceptResult {
  /** Messages moved into channels (counted once per message, not per destination). */
  messages: number;
  /** Bundles written, per peer. */
  bundles: Map<string, number>;
  /** Entries left in the outbox because no route or key covers them yet. */
  held: number;
}

/** A logger with pino's shape. */
export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

const journalSchema = z.strictObject({
  sources: z.array(z.string()),
  bundles: z.array(z.strictObject({ peer: z.string(), name: z.string() })),
  next: z.record(z.string(), z.number().int().min(1)),
});
type Journal = z.infer<typeof journalSchema>;

interface PendingMessage {
  queue: string;
  id: string;
  headers: Record<string, string>;
  committed: number;
  size: number;
  read: () => AsyncIterable<Uint8Array>;
}

const READ_CHUNK = 256 * 1024;
/** How many of the oldest outbox entries one scan keeps for the passes that follow (~100 bytes each). */
const SCAN_ENTRIES = 20_000;


async function* readRange(fh: FileHandle, start: number, size: number): AsyncIterable<Uint8Array> {
  let pos = start;
  const end = start + size;
  while (pos < end) {
    const len = Math.min(READ_CHUNK, end - pos);
    const buf = Buffer.allocUnsafe(len);
    const { bytesRead } = await fh.read(buf, 0, len, pos);
    if (bytesRead === 0) throw new FerryError('ESPOOL', 'an outbox file shrank while it was being shipped');
    pos += bytesRead;
    yield bytesRead === len ? buf : buf.subarray(0, bytesRead);
  }
}

async function* once(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  yield chunk;
}

const SMALL_RAW_BYTES = 256 * 1024;

/**
 * Reads a small regular file whole: no symlink follow, no blocking on a FIFO swapped in since the
 * lstat (O_NONBLOCK), and a file that grew past the limit meanwhile is left to the streaming path.
 */
function readSmallRegular(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === 'ELOOP') throw new FerryError('ESPOOL_SYMLINK', `refusing to follow the symlink ${path} inside the spool`, { path });
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FerryError('ESPOOL_NOT_FILE', `${path} is not a regular file`, { path });
    if (st.size > SMALL_RAW_BYTES) return undefined;
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, buf, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === st.size ? buf : buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** Moves outbox entries into channels. One per daemon (the daemon's lock makes it the only writer). */
export class Acceptor {
  private readonly states = new Map<string, ChannelState>();
  private readonly limits: Required<AcceptLimits>;
  private readonly warned = new Set<string>();
  /** The last bounded scan of the outbox, oldest first, consumed by this and the next passes from `pendingAt`. */
  private pending: OutboxEntry[] = [];
  private pendingAt = 0;
  /** Where the next scan starts: after the last entry taken from the previous one (undefined: from the oldest). */
  private scanAfter: string | undefined;
  /** Set when this pass's scan reached the end of the outbox. */
  private reachedEnd = false;
  /** Queues with an entry held (no route, no key) in the current scan cycle: their later entries wait behind it (I9). */
  private readonly heldQueues = new Set<string>();
  /** Set by {@link Acceptor.restartScan}: the next pass starts a new cycle from the oldest entry. */
  private restartRequested = false;
  /** The last entry this pass took (entries are taken in order, so everything up to it was seen). */
  private takenThisPass: string | undefined;

  constructor(private readonly spool: Spool, private readonly policy: AcceptPolicy, private readonly log: Log, limits: AcceptLimits = {}) {
    this.limits = {
      batchMessages: limits.batchMessages ?? 2_000,
      batchBytes: limits.batchBytes ?? 32 * 1024 * 1024,
      bundleMessages: limits.bundleMessages ?? 2_000,
      bundleBytes: limits.bundleBytes ?? 4 * 1024 * 1024,
      scanEntries: Math.max(limits.scanEntries ?? SCAN_ENTRIES, limits.batchMessages ?? 2_000),
    };
  }

  private get journalPath(): string { return join(this.spool.layout.state, 'accept.journal'); }

  /** The channel directory of `peer`. */
  channel(peer: string): ChannelDir {
    return new ChannelDir(this.spool.layout.channel(peer), peer);
  }

  /** Finishes a committed pass left by a crash, and discards bundles of a pass that never committed. */
  async recover(): Promise<void> {
    this.resetScan(); // a failed pass may have taken entries off the scan it did not accept
    this.states.clear(); // re-read sequences from disk: a failed pass may have left the cache ahead or behind
    let journal: Journal | undefined;
    try {
      journal = journalSchema.parse(JSON.parse(await fsp.readFile(this.journalPath, 'utf8')));
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
    if (journal) {
      this.log.info({ bundles: journal.bundles.length, sources: journal.sources.length }, 'finishing an accept pass interrupted by a crash');
      await this.apply(journal);
    }
    for (const peer of await listDir(this.spool.layout.channels)) {
      const ch = this.channel(peer);
      // An epoch switch a crash interrupted is finished before its tmp/ bundles could be mistaken for debris.
      if (await recoverSwitch(ch)) this.log.info({ peer }, 'finished moving a channel to a new epoch, interrupted by a crash');
      for (const name of await listDir(ch.tmp)) await unlinkIfExists(join(ch.tmp, name));
    }
  }

  private async state(peer: string): Promise<ChannelState> {
    let s = this.states.get(peer);
    if (!s) {
      s = await this.channel(peer).ensure();
      this.states.set(peer, s);
    }
    return s;
  }

  /** One pass: moves a batch of the oldest outbox entries into channels. */
  async acceptOnce(): Promise<AcceptResult> {
    const lock = this.policy.lock?.bind(this.policy) ?? (<T>(fn: () => Promise<T>) => fn());
    return lock(() => this.pass());
  }

  private async pass(): Promise<AcceptResult> {
    // An epoch switch (under the same lock) may have rewritten a channel's state since the last pass.
    this.states.clear();
    const result: AcceptResult = { messages: 0, bundles: new Map(), held: 0 };
    // A journal still here means an earlier pass committed but did not finish (its apply failed, e.g.
    // on a full disk): its sources are still in the outbox. Finish it first, or they would be sealed
    // again under new sequence numbers and delivered twice. If finishing fails, this pass fails too.
    if (await pathExists(this.journalPath)) await this.recover();
    // Commits a killed committer left decided but parked in commits/tmp/ join commits/new/ now, not at the next
    // recovery, and the scan starts over so that they go before what was committed after them (commit-point.ts).
    if (await finishParkedCommits(this.spool.layout) > 0) this.resetScan();
    const handles: FileHandle[] = [];
    this.reachedEnd = false;
    this.takenThisPass = undefined;
    if (this.restartRequested) {
      this.restartRequested = false;
      this.resetScan();
    }
    try {
      const sources: string[] = [];
      const perDest = new Map<string, PendingMessage[]>();
      let count = 0;
      let bytes = 0;
      for (;;) {
        if (sources.length > 0 && (count >= this.limits.batchMessages || bytes >= this.limits.batchBytes)) break;
        const entry = await this.nextEntry();
        if (entry === undefined) break;
        const loaded = await this.load(entry, handles);
        if (loaded === 'held') { result.held += 1; continue; }
        if (loaded === 'gone') continue;
        sources.push(entry.path);
        for (const { msg, dests } of loaded) {
          count += 1;
          bytes += msg.size;
          for (const d of dests) {
            const list = perDest.get(d) ?? [];
            list.push(msg);
            perDest.set(d, list);
          }
        }
      }
      if (sources.length === 0) return result;

      const journal: Journal = { sources, bundles: [], next: {} };
      for (const [peer, msgs] of perDest) {
        const key = this.policy.sealingKey(peer);
        const state = await this.state(peer);
        let seq = state.nextSeq;
        const acked = Math.min(this.policy.acked?.(peer, state) ?? 0, seq - 1);
        for (const group of this.split(msgs)) {
          const name = formatBundleName({ epoch: state.epoch, channel: state.channel, firstSeq: seq, count: group.length, gap: false });
          await this.writeBundle(peer, name, key, state, seq, group, acked);
          journal.bundles.push({ peer, name });
          result.bundles.set(peer, (result.bundles.get(peer) ?? 0) + 1);
          seq += group.length;
        }
        journal.next[peer] = seq;
      }
      // The bundles' directory entries must be durable before the journal names them: replaying a
      // journal treats a missing tmp bundle as already moved, and would then remove the sources.
      await Promise.all([...perDest.keys()].map((peer) => fsyncDir(this.channel(peer).tmp)));
      crashPoint('accept.before-journal');
      await replaceFileDurable(this.journalPath, JSON.stringify(journal));
      crashPoint('accept.after-journal');
      await this.apply(journal);
      result.messages = count;
      return result;
    } catch (err) {
      this.resetScan();
      throw err;
    } finally {
      await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
    }
  }

  /**
   * The next outbox entry in commit order, from a bounded scan kept across passes (I8: a backlog of
   * 10^6 is never listed whole, nor once per pass). Each scan pages on from the last entry taken, so
   * held entries (no route yet) cannot starve the ones behind them; once a scan reaches the end of
   * the outbox, the next one starts again from the oldest, so held entries are looked at again and
   * a file a maildir producer renamed in under an older name is not missed for long.
   */
  private async nextEntry(): Promise<OutboxEntry | undefined> {
    if (this.pendingAt >= this.pending.length) {
      if (this.reachedEnd) return undefined; // once per pass: a second lap would meet the held entries again
      const limit = this.limits.scanEntries;
      // Entries taken earlier in this pass are still on disk until it commits: page on after them.
      const after = this.takenThisPass ?? this.scanAfter;
      if (after === undefined) this.heldQueues.clear(); // a new cycle from the oldest: held entries are looked at again first
      this.pending = await this.spool.outbox.oldest(limit, after);
      this.pendingAt = 0;
      if (this.pending.length < limit) {
        this.scanAfter = undefined; // reached the end: the next scan starts over
        this.reachedEnd = true;
      }
      if (this.pending.length === 0) return undefined;
    }
    const entry = this.pending[this.pendingAt++] as OutboxEntry;
    this.takenThisPass = entry.name;
    if (this.pending.length >= this.limits.scanEntries) this.scanAfter = entry.name;
    return entry;
  }

  /**
   * Routes or keys changed (a reload): held entries may go now, and must go before anything queued
   * behind them, so the next pass starts over from the oldest entry. Never mid-pass.
   */
  restartScan(): void {
    this.restartRequested = true;
  }

  private resetScan(): void {
    this.pending = [];
    this.pendingAt = 0;
    this.scanAfter = undefined;
  }

  /** Reads an entry's messages and their destinations; 'held' when one has no route (or no key) yet. */
  private async load(entry: OutboxEntry, handles: FileHandle[]): Promise<Array<{ msg: PendingMessage; dests: string[] }> | 'held' | 'gone'> {
    try {
      if (entry.kind === 'commit') {
        const file = await openCommitFile(entry.path);
        // A held file must not keep a descriptor for the rest of the pass (a pass may page through
        // many held entries), and a small file read whole never needs one.
        let keepHandle = file.data === undefined;
        try {
          const out: Array<{ msg: PendingMessage; dests: string[] }> = [];
          for (const m of file.index.messages) {
            // Behind an entry of the same queue held earlier in this scan cycle: held too, or a route or
            // key arriving mid-cycle would ship it before the older one (I9).
            if (this.heldQueues.has(m.queue)) { keepHandle = false; return 'held'; }
          }
          for (const m of file.index.messages) {
            const poison = unsealableReason(m.queue, m.id, m.headers, file.index.committed, m.size);
            // Dead-lettered at once (I12): retrying could never help, and it must not hold up the messages behind it.
            if (poison !== undefined) { keepHandle = false; return await this.deadLetter(entry, poison); }
          }
          for (const [i, m] of file.index.messages.entries()) {
            const dests = this.policy.destinations(m.queue, m.to);
            if (dests.length === 0 || !this.hasKeys(dests)) {
              keepHandle = false;
              for (const other of file.index.messages) this.heldQueues.add(other.queue);
              return await this.hold(entry, m.queue, file.index.committed, dests.length === 0 ? 'no route' : 'no key');
            }
            const offset = file.offsets[i] as number;
            const data = file.data;
            const read = data ? () => once(data.subarray(offset, offset + m.size)) : () => readRange(file.handle, offset, m.size);
            out.push({ msg: { queue: m.queue, id: m.id, headers: m.headers, committed: file.index.committed, size: m.size, read }, dests });
          }
          return out;
        } finally {
          if (keepHandle) handles.push(file.handle);
          else await file.handle.close();
        }
      }
      if (this.heldQueues.has(entry.queue)) return 'held'; // behind a held entry of its queue (I9)
      const st = lstatSync(entry.path);
      if (!st.isFile()) return this.deadLetter(entry, `not a regular file (mode ${st.mode.toString(8)})`);
      if (st.nlink > 1) {
        // A maildir producer links tmp/X to new/X and then unlinks tmp/X; a file that keeps a second
        // link may be a hard link to a file the producer could not read: never ship it.
        if (now() - st.ctimeMs > 60_000) return this.deadLetter(entry, `has ${st.nlink} hard links; refusing to ship a file linked from elsewhere`);
        this.heldQueues.add(entry.queue);
        return 'held';
      }
      const dests = this.policy.destinations(entry.queue, undefined);
      if (dests.length === 0 || !this.hasKeys(dests)) {
        this.heldQueues.add(entry.queue);
        return this.hold(entry, entry.queue, st.ctimeMs, dests.length === 0 ? 'no route' : 'no key');
      }
      const base = { queue: entry.queue, id: uniqueName(this.spool.host), headers: {}, committed: Math.floor(st.ctimeMs) };
      // A small file (the usual legacy message) is read whole with direct calls: thread-pool round
      // trips for open/stat/read/close cost more than the bytes. A large one streams.
      const data = st.size <= SMALL_RAW_BYTES ? readSmallRegular(entry.path) : undefined;
      if (data) return [{ msg: { ...base, size: data.byteLength, read: () => once(data) }, dests }];
      const fh = await openRegularForRead(entry.path);
      handles.push(fh);
      const size = (await fh.stat()).size;
      return [{ msg: { ...base, size, read: () => readRange(fh, 0, size) }, dests }];
    } catch (err) {
      if (errno(err) === 'ENOENT') return 'gone';
      // An entry this daemon may not read (written by another user): held, never a reason to stop
      // every other message; dead-lettered once it outlives the message lifetime.
      if (errno(err) === 'EACCES' || errno(err) === 'EPERM') return this.unreadable(entry, err);
      if (isFerryError(err, 'ESPOOL') || isFerryError(err, 'ESPOOL_SYMLINK') || isFerryError(err, 'ESPOOL_NOT_FILE')) {
        return this.deadLetter(entry, err.message);
      }
      throw err;
    }
  }

  private async unreadable(entry: OutboxEntry, err: unknown): Promise<'held' | 'gone'> {
    let mtimeMs = now();
    try {
      mtimeMs = (await fsp.lstat(entry.path)).mtimeMs;
    } catch {
      return 'gone';
    }
    const message = messageOf(err);
    if (now() - mtimeMs > this.policy.lifetimeMs) return this.deadLetter(entry, `could not be read within the message lifetime: ${message}`);
    if (!this.warned.has(`unreadable:${entry.path}`)) {
      this.warned.add(`unreadable:${entry.path}`);
      this.log.error({ path: entry.path, err: message }, 'outbox entry not readable by the daemon; held (fix its owner or mode), other messages go on');
    }
    return 'held';
  }

  private hasKeys(dests: string[]): boolean {
    for (const d of dests) {
      try {
        this.policy.sealingKey(d);
      } catch (err) {
        if (isFerryError(err)) return false;
        throw err;
      }
    }
    return true;
  }

  private async hold(entry: OutboxEntry, queue: string, committed: number, why: 'no route' | 'no key'): Promise<'held' | 'gone'> {
    const age = now() - committed;
    if (age > this.policy.lifetimeMs) {
      return this.deadLetter(entry, why === 'no route' ? `no route for queue ${queue} within the message lifetime` : `no key for a destination of queue ${queue} within the message lifetime`);
    }
    const warnKey = `${why}:${queue}`;
    if (!this.warned.has(warnKey)) {
      this.warned.add(warnKey);
      this.log.warn({ queue, reason: why }, why === 'no route' ? `queue ${queue} has no route; its messages wait in the outbox` : `no key to seal messages of queue ${queue}; they wait in the outbox`);
    }
    return 'held';
  }

  /** Moves an outbox entry to state/dead/outbox/ with a reason file; never silently dropped. */
  private async deadLetter(entry: OutboxEntry, reason: string): Promise<'gone'> {
    const dir = join(this.spool.layout.deadOut, 'outbox');
    await ensureDir(dir);
    const name = entry.kind === 'raw' ? `${entry.queue}.${entry.name}` : entry.name;
    // Its links in commits/tmp/ go first, or recovery would link it into commits/new/ again (commit-point.ts).
    if (entry.kind === 'commit' && !(await dropTmpLinks(this.spool.layout, entry.path))) return 'gone';
    await replaceFileDurable(join(dir, `${name}.reason.json`), JSON.stringify({ reason, at: now(), source: entry.path }));
    await renameIfExists(entry.path, join(dir, name));
    await fsyncDir(dir);
    this.log.error({ path: entry.path, reason }, 'outbox entry moved to dead letters');
    return 'gone';
  }

  private *split(msgs: PendingMessage[]): Iterable<PendingMessage[]> {
    let group: PendingMessage[] = [];
    let bytes = 0;
    for (const m of msgs) {
      if (group.length > 0 && (group.length >= this.limits.bundleMessages || bytes + m.size > this.limits.bundleBytes)) {
        yield group;
        group = [];
        bytes = 0;
      }
      group.push(m);
      bytes += m.size;
    }
    if (group.length > 0) yield group;
  }

  private async writeBundle(peer: string, name: string, key: SealKey, state: ChannelState, firstSeq: number, group: PendingMessage[], acked: number): Promise<void> {
    const path = join(this.channel(peer).tmp, name);
    await unlinkIfExists(path); // debris of a pass that failed before its journal: same name, never published
    const fh = await createExclusive(path);
    try {
      const messages: OutgoingMessage[] = group.map((m, i) => ({
        meta: { seq: firstSeq + i, queue: m.queue, id: m.id, headers: m.headers, committed: m.committed, size: m.size },
        compression: this.policy.compression(m.queue),
        payload: m.read,
      }));
      await writeSealedBundle({ write: (chunk) => writeAll(fh, chunk) }, key, {
        origin: this.spool.host, destination: peer, channel: state.channel, epoch: state.epoch, firstSeq, count: group.length, created: now(), acked,
      }, messages);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Applies a committed journal (idempotent): publish bundles, advance sequences, remove sources. */
  private async apply(journal: Journal): Promise<void> {
    const peers = new Set(journal.bundles.map((b) => b.peer));
    for (const b of journal.bundles) {
      const ch = this.channel(b.peer);
      await renameIfExists(join(ch.tmp, b.name), join(ch.out, b.name));
    }
    for (const peer of peers) await fsyncDir(this.channel(peer).out);
    for (const [peer, next] of Object.entries(journal.next)) {
      const current = await this.state(peer);
      if (current.nextSeq < next) {
        const updated = { ...current, nextSeq: next };
        await this.channel(peer).write(updated);
        this.states.set(peer, updated);
      }
    }
    crashPoint('accept.before-unlink');
    // A commit file with a second link in commits/tmp/ (a parked name, or its tmp/ name a power cut brought back): that
    // link goes first, durably, or it would be read later as a commit still to make, or as undecided. And commits/tmp/
    // is synced before any commit file goes, even with one link: a committer killed after unlinking its parked name
    // but before syncing tmp/ leaves that unlink (or its step-1 rename) not durable (commit-point.ts).
    const commitsNew = this.spool.layout.commitsNew;
    let commitSources = false;
    for (const src of journal.sources) {
      if (parentOf(src) !== commitsNew) continue;
      commitSources = true;
      await dropTmpLinks(this.spool.layout, src);
    }
    if (commitSources) await fsyncDir(this.spool.layout.commitsTmp);
    const dirs = new Set<string>();
    for (const src of journal.sources) {
      unlinkIfExistsSync(src); // direct: one thread-pool round trip per source cost more than the unlink
      dirs.add(parentOf(src));
    }
    for (const dir of dirs) await fsyncDir(dir).catch(() => undefined);
    await unlinkIfExists(this.journalPath);
    await fsyncDir(this.spool.layout.state);
  }
}
