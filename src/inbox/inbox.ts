// Taking messages from inbox queues: oldest first, leased by rename, returned when a lease expires.
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { errno } from '../errors.js';
import { compareNames } from '../maildir/unique.js';
import { assertRealDirs, ensureDir, fsyncDir, isRealDirIfPresent, listDir, lstatIfExists, renameIfExists, unlinkIfExists, pathExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';
import { finishMoves, moveMessage, syncWayIn } from './move.js';
import { settlePublishing } from './delivery.js';
import { findCommitted, finishCommitted } from '../outbox/commit-point.js';
import { INBOX_SUBDIRS } from '../spool/layout.js';
import { isQueueName, validateQueueName } from '../spool/names.js';
import type { SpoolContext } from '../spool/options.js';
import { abortedCommitName, formatLease, leaseExpiry, newLease, parseLease, stampExpiry, type LeaseName } from './lease-name.js';
import { metaPath, readMeta, writeMeta, type InboxMeta } from './meta.js';
import { TakenMessage, returnMessage } from './taken-message.js';
import { now as clockNow } from '../clock.js';

/** Options of one take. */
export interface TakeOptions {
  /** Wait up to this long for a message when the queue is empty, in ms. Default: 0 (return at once). */
  waitMs?: number;
  /** Lease length for this take, in ms. Default: the spool's `leaseMs`. */
  leaseMs?: number;
  /** Stops waiting early. */
  signal?: AbortSignal;
  /**
   * Take only a message whose meta matches (oldest first among those); the others stay untouched.
   * Reads each waiting message's meta, so it suits small queues such as a reply queue. Default: any.
   */
  match?: (meta: InboxMeta) => boolean;
}

/** Depths of one inbox queue. */
export interface InboxCounts {
  /** Waiting to be taken. */
  new: number;
  /** Taken by an open transaction (in flight). */
  leased: number;
  /** Claimed by a plain maildir reader (cur/). */
  cur: number;
  /** In the dead-letter directory. */
  dead: number;
}

/** The inbox side of a spool. */
export class Inbox {
  /** Sorted names from the last listing of each queue's new/, consumed front to back. */
  private readonly pending = new Map<string, string[]>();

  constructor(private readonly ctx: SpoolContext) {}

  /** Creates the directories of an inbox queue (idempotent). */
  async ensureQueue(queue: string): Promise<string> {
    const dir = this.ctx.layout.inboxQueue(queue);
    await assertRealDirs([this.ctx.layout.root, this.ctx.layout.inbox]);
    await ensureDir(dir);
    for (const sub of INBOX_SUBDIRS) await ensureDir(join(dir, sub));
    return dir;
  }

  /** The inbox queues that exist (names that are not valid queue names, like `lost+found`, are ignored). */
  async queues(): Promise<string[]> {
    return (await listDir(this.ctx.layout.inbox)).filter(isQueueName).sort();
  }

  /**
   * Takes the oldest message of `queue`, or null when none arrives within `waitMs`.
   * The message stays invisible to other consumers until it is committed or aborted, or its lease expires.
   */
  async take(queue: string, opts: TakeOptions = {}): Promise<TakenMessage | null> {
    validateQueueName(queue);
    const dir = await this.ensureQueue(queue);
    // The wait is a duration: measured on the monotonic clock, so a clock jump neither ends it nor stretches it.
    const deadline = performance.now() + (opts.waitMs ?? 0);
    const leaseMs = opts.leaseMs ?? this.ctx.options.leaseMs;
    for (;;) {
      const taken = opts.match ? await this.tryTakeMatching(queue, dir, leaseMs, opts.match) : await this.tryTake(queue, dir, leaseMs);
      if (taken) return taken;
      if ((await this.reclaimExpired(queue)) > 0) continue;
      const left = deadline - performance.now();
      if (left <= 0 || opts.signal?.aborted) return null;
      await waitForEntry(join(dir, 'new'), Math.min(left, this.ctx.options.pollMs), opts.signal);
    }
  }

  /** Forgets the cached listing of `queue` so that a returned (older) message is taken first. */
  invalidate(queue: string): void {
    this.pending.delete(queue);
  }

  private async tryTake(queue: string, dir: string, leaseMs: number): Promise<TakenMessage | null> {
    for (let refreshed = false; ; refreshed = true) {
      let names = this.pending.get(queue);
      if (!names || names.length === 0) {
        if (refreshed) return null;
        names = (await listDir(join(dir, 'new'))).filter((n) => !n.startsWith('.')).sort(compareNames);
        this.pending.set(queue, names);
        if (names.length === 0) return null;
      }
      while (names.length > 0) {
        const name = names.shift() as string;
        const taken = await this.claim(queue, dir, name, leaseMs);
        if (taken) return taken;
      }
    }
  }

  private async tryTakeMatching(queue: string, dir: string, leaseMs: number, match: (meta: InboxMeta) => boolean): Promise<TakenMessage | null> {
    const names = (await listDir(join(dir, 'new'))).filter((n) => !n.startsWith('.')).sort(compareNames);
    for (const name of names) {
      const meta = await readMeta(dir, queue, name, this.ctx.host, join(dir, 'new', name));
      if (!match(meta)) continue;
      const taken = await this.claim(queue, dir, name, leaseMs);
      if (taken) return taken;
    }
    return null;
  }

  /** Leases new/<name> by renaming it into lease/; null when another consumer was faster. */
  private async claim(queue: string, dir: string, name: string, leaseMs: number): Promise<TakenMessage | null> {
    const lease = newLease(name);
    const leasePath = join(dir, 'lease', formatLease(lease));
    // Durable in new/ or in lease/ at every instant, whoever fsyncs new/ meanwhile (every delivery does): see move.ts.
    if (!(await moveMessage(dir, 'new', name, 'lease', formatLease(lease)))) return null;
    // Until it is stamped, the claim counts from its ctime plus a grace period; a reclaimer whose
    // clock runs ahead may return it before that: then this take lost the race, like a late rename.
    const st = await lstatIfExists(leasePath);
    if (!st) return null;
    // Read the meta before stamping the expiry: a plain maildir file's meta is derived from its mtime.
    const meta = await readMeta(dir, queue, name, this.ctx.host, leasePath);
    const expires = clockNow() + leaseMs;
    if (st.isFile()) {
      try {
        await stampExpiry(leasePath, expires);
      } catch (err) {
        if (errno(err) === 'ENOENT') return null;
        throw err;
      }
    }
    if (!st.isFile()) {
      // A symlink, FIFO or device planted in new/: never read through it; park it where an operator looks.
      await writeMeta(dir, name, { ...meta, dead: { reason: `not a regular file (mode ${st.mode.toString(8)})`, at: clockNow() } });
      await renameIfExists(leasePath, join(dir, 'dead', name));
      return null;
    }
    return new TakenMessage(this.ctx, queue, lease, meta, st.size, expires, () => this.invalidate(queue));
  }

  /**
   * Returns every expired lease of `queue` to the queue (one failed attempt each, dead letter after
   * `maxAttempts`) and finishes leases whose transaction committed. Returns how many went back to new/ (with the
   * publishes recovery finished, see settlePublishing).
   */
  async reclaimExpired(queue: string, now = clockNow()): Promise<number> {
    const dir = this.ctx.layout.inboxQueue(queue);
    let returned = 0;
    // Reclaiming renames files out of lease/: never out of a directory a planted symlink points to.
    if (!(await isRealDirIfPresent(dir)) || !(await isRealDirIfPresent(join(dir, 'lease')))) return 0;
    // Moves a killed process or a power cut left half done first: a take's (new/ → lease/) before its lease is judged,
    // and publishes (a hidden name a cut brought back beside a lease of its file goes before that lease is returned).
    const newNames = await listDir(join(dir, 'new'));
    returned += await settlePublishing(dir, newNames);
    await finishMoves(dir, 'new', newNames);
    await finishMoves(dir, 'lease');
    for (const leaseName of await listDir(join(dir, 'lease'))) {
      const lease = parseLease(leaseName);
      if (!lease) continue;
      let expires: number;
      try {
        const st = await fsp.lstat(join(dir, 'lease', leaseName));
        expires = leaseExpiry(st);
        if (st.nlink > 1 && (await this.deadAlready(dir, leaseName, lease.name, st.ino))) continue;
        if (st.nlink > 1) await this.dropResurrected(dir, lease.name, st.ino);
      } catch (err) {
        if (errno(err) === 'ENOENT') continue; // committed or returned meanwhile
        throw err;
      }
      if (lease.txid !== undefined) {
        const outcome = await this.resolveCommitting(queue, dir, lease, expires, now);
        if (outcome === 'returned') returned += 1;
        continue;
      }
      if (expires > now) continue;
      const meta = await readMeta(dir, queue, lease.name, this.ctx.host, join(dir, 'lease', leaseName));
      const outcome = await returnMessage(this.ctx, queue, lease, meta, `lease expired after the consumer (pid ${lease.pid}) neither committed nor aborted`);
      if (outcome === 'returned') returned += 1;
    }
    if (returned > 0) this.invalidate(queue);
    return returned;
  }

  /**
   * A power cut can undo half of a take's rename: the message's old name in new/ comes back as a second link to its
   * leased file (its leaving new/ was not yet durable, its arrival in lease/ was). Nothing else makes new/<name> the
   * same file as a lease of it, so that name is removed (durably) before the lease is judged; else the message would
   * be taken again beside its lease (and a rename of the lease onto it does nothing: the two are one file).
   */
  private async dropResurrected(dir: string, name: string, ino: number): Promise<void> {
    const stale = join(dir, 'new', name);
    const st = await lstatIfExists(stale);
    // Only a second link of the very file: a message returned to new/ meanwhile (a rename, one link) is never touched.
    if (st === undefined || st.ino !== ino || st.nlink < 2) return;
    await unlinkIfExists(stale);
    await fsyncDir(join(dir, 'new'));
  }

  /**
   * The other half-undone move: lease/ → dead/ (a message past its attempts). The lease is then a second link of the
   * dead letter, and every return of it would be a rename onto itself: the lease goes, the dead letter stays.
   */
  private async deadAlready(dir: string, leaseName: string, name: string, ino: number): Promise<boolean> {
    const st = await lstatIfExists(join(dir, 'dead', name));
    if (st === undefined || st.ino !== ino || st.nlink < 2) return false;
    await unlinkIfExists(join(dir, 'lease', leaseName));
    await fsyncDir(join(dir, 'lease'));
    return true;
  }

  /**
   * A lease marked `~T<txid>` belongs to a transaction caught committing. Exactly one of "the
   * transaction commits" and "a reclaimer aborts it" wins, because each is one rename of the same
   * file, state/commits/tmp/<txid>: the transaction renames it into commits/new/ (or unlinks it),
   * a reclaimer renames it to `<txid>.aborted`. So, looked at in this order:
   *  - `<txid>` still in tmp/: undecided. While the lease's grace runs the message waits; once it
   *    expired, this reclaimer aborts the transaction (the rename) and the message returns,
   *    counting one failed attempt like any consumer death. The transaction's own commit then
   *    finds no file and throws `ELEASE_LOST`.
   *  - `<txid>.aborted`: aborted; the message returns.
   *  - neither: committed; the message is removed. (Once `<txid>` left tmp/ the outcome is final, and
   *    `<txid>.aborted` outlives every lease marked with it — the aborted transaction removes it once
   *    its taken messages are back, else the tmp/ sweep once old — so an abort is never read as a commit.)
   */
  private async resolveCommitting(queue: string, dir: string, lease: LeaseName, expires: number, now: number): Promise<'returned' | 'removed' | 'waiting'> {
    const { layout } = this.ctx;
    const txid = lease.txid as string;
    const leasePath = join(dir, 'lease', formatLease(lease));
    const pending = join(layout.commitsTmp, txid);
    const abortRecord = join(layout.commitsTmp, abortedCommitName(txid));
    let aborted = false;
    const pendingSt = await lstatIfExists(pending);
    // A second link of the commit file (in commits/new/ too) is what a power cut leaves of a commit that happened.
    if (pendingSt !== undefined && !(pendingSt.isFile() && pendingSt.nlink > 1)) {
      if (expires > now) return 'waiting';
      aborted = await renameIfExists(pending, abortRecord);
      // The decision is durable before anything acts on it (the returns below, the committer's refusal).
      if (aborted) await fsyncDir(layout.commitsTmp);
      crashPoint('reclaim.after-abort');
      // Lost the rename: the transaction committed meanwhile, or another reclaimer aborted it.
    }
    if (!aborted) aborted = await pathExists(abortRecord);
    if (!aborted) {
      // Committed; a commit file still parked on its way to commits/new/ gets there before the takes go.
      const parked = await findCommitted(layout, txid);
      if (parked !== undefined) await finishCommitted(layout, parked, true);
    }
    if (aborted) {
      const meta = await readMeta(dir, queue, lease.name, this.ctx.host, leasePath);
      const outcome = await returnMessage(this.ctx, queue, lease, meta, `transaction ${txid} did not commit within its grace period and was aborted`);
      return outcome === 'returned' ? 'returned' : 'removed';
    }
    // Committed. Its commit point must be durable before the message goes, or a power loss could bring the
    // transaction's file back into tmp/ (undone) with the taken message already deleted. Rare path: the
    // committing process normally removes its taken messages itself.
    // commits/new before commits/tmp: a cut between them then keeps the sends twice (deduped), never neither.
    await fsyncDir(layout.commitsNew);
    await fsyncDir(layout.commitsTmp);
    // The take's leaving new/ durable before its lease goes (the committer may have died before syncing it).
    await syncWayIn(dir);
    // The meta only with the lease: a lease already gone may have been returned (its meta is the message's again).
    if (await unlinkIfExists(leasePath)) await unlinkIfExists(metaPath(dir, lease.name));
    return 'removed';
  }

  /** Depths of one queue. */
  async counts(queue: string): Promise<InboxCounts> {
    const dir = this.ctx.layout.inboxQueue(queue);
    const count = async (sub: string) => (await listDir(join(dir, sub))).filter((n) => !n.startsWith('.')).length;
    return { new: await count('new'), leased: await count('lease'), cur: await count('cur'), dead: await count('dead') };
  }

  /** Every transaction id referenced by a committing lease (their commit files and `.aborted` records must not be cleaned up). */
  async committingTxids(): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const queue of await this.queues()) {
      for (const n of await listDir(join(this.ctx.layout.inbox, queue, 'lease'))) {
        const lease = parseLease(n);
        if (lease?.txid !== undefined) ids.add(lease.txid);
      }
    }
    return ids;
  }
}


/** Resolves when something appears in `dir`, after `ms`, or on abort — whichever comes first. */
function waitForEntry(dir: string, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    const done = () => {
      clearTimeout(timer);
      watcher?.close();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
    try {
      watcher = watch(dir, { persistent: false }, done);
      watcher.on('error', () => undefined);
    } catch {
      // the poll timer still wakes us
    }
  });
}

