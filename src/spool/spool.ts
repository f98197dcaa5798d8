// A spool: the directory tree of one host's queues. Opening it recovers whatever a crash left behind.
import { promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { FerryError, errno } from '../errors.js';
import { DIR_MODE, assertRealDirs, ensureDir, fsyncDir, isRealDirIfPresent, listDir, unlinkIfExists } from '../maildir/fsx.js';
import { Inbox, type TakeOptions } from '../inbox/inbox.js';
import { abortedCommitName } from '../inbox/lease-name.js';
import { finishParkedCommits, parseCommitted } from '../outbox/commit-point.js';
import { InboxDelivery } from '../inbox/delivery.js';
import type { TakenMessage } from '../inbox/taken-message.js';
import { Outbox } from '../outbox/outbox.js';
import { Transaction, type PayloadInput, type SendOptions } from '../outbox/transaction.js';
import { journalTmpNames } from '../receive/journal-names.js';
import { SpoolLayout } from './layout.js';
import { allowedBits } from './modes.js';
import { PROBE_PREFIX, probeOneMount, probeTargets } from './mount-probe.js';
import { assertSpoolOwner } from './owner.js';
import { validateHostName } from './names.js';
import { NameFloor, waitingDirs } from '../maildir/name-floor.js';
import { resolveSpoolOptions, type ResolvedSpoolOptions, type SpoolContext, type SpoolOptions } from './options.js';
import { now as clockNow } from '../clock.js';

/** What one recovery pass did. */
export interface RecoveryReport {
  /** Expired leases returned to their queues (or dead-lettered). */
  leasesReturned: number;
  /** Debris removed from tmp/ directories. */
  tmpRemoved: number;
}

/**
 * One host's spool. Producers `send` or open a `transaction`; consumers `take`. Any number of
 * processes may open the same spool at once: every step is a rename or an exclusive create, and
 * no lock is held across user code.
 */
export class Spool implements SpoolContext {
  readonly layout: SpoolLayout;
  readonly options: ResolvedSpoolOptions;
  readonly outbox: Outbox;
  readonly inbox: Inbox;
  readonly names: NameFloor;

  private constructor(readonly root: string, options: ResolvedSpoolOptions) {
    this.layout = new SpoolLayout(root);
    this.options = options;
    const layout = this.layout;
    this.names = new NameFloor(layout.nameFloor, () => waitingDirs(layout.commitsNew, layout.outbox));
    this.outbox = new Outbox(this);
    this.inbox = new Inbox(this);
  }

  /** This host's name. */
  get host(): string { return this.options.host; }

  /**
   * Opens the spool at `root` (creating its layout when `create` is set), checks it is sound —
   * real directories, one file system and one mount (a link probe), owned by this process's user —
   * and recovers what a crash left behind. With `inspect` it only looks: nothing is created, written,
   * chmod-ed or recovered (no link probe either), and any user who can read the spool may open it.
   * Throws `ENOT_INIT` when the spool does not exist and `create` is not set, `ESPOOL_OWNER` when a
   * writer is not the spool's owner, `ESPOOL_XDEV` when its directories span file systems or mounts.
   */
  static async open(root: string, opts: SpoolOptions): Promise<Spool> {
    validateHostName(opts.host);
    const spool = new Spool(root, resolveSpoolOptions(opts));
    const { inspect } = spool.options;
    const create = spool.options.create && !inspect;
    if (!create) {
      try {
        await fsp.lstat(spool.layout.state);
      } catch (err) {
        if (errno(err) === 'ENOENT') {
          throw new FerryError('ENOT_INIT', `no spool at ${root}; run \`ferry init\` or pass --root`, { path: root, cause: err });
        }
        throw err;
      }
    }
    if (create) {
      const made = await fsp.mkdir(root, { mode: DIR_MODE }).then(() => true, (err: unknown) => {
        if (errno(err) !== 'EEXIST') throw err;
        return false;
      });
      if (made) await fsyncDir(dirname(root)); // the root's entry durable before anything inside it counts
    }
    if (!inspect) {
      // Before anything is written or chmod-ed: a file made by another user than the daemon's would wedge it.
      const st = await fsp.lstat(root);
      if (!st.isSymbolicLink()) assertSpoolOwner(root, st.uid);
    }
    const devices = new Set<number>();
    for (const dir of spool.layout.fixedDirs) {
      if (inspect) {
        if (!(await isRealDirIfPresent(dir))) continue;
      } else {
        // Bits an operator granted on purpose (0710 on the root and drop/) are kept; anything looser is tightened.
        await ensureDir(dir, true, allowedBits(spool.layout, dir));
      }
      devices.add((await fsp.lstat(dir)).dev);
    }
    if (devices.size > 1) {
      throw new FerryError('ESPOOL_XDEV', `the directories of spool ${root} span several file systems; renames between them would not be atomic`, { path: root });
    }
    if (!inspect) {
      // The same device can still be two mounts (a bind mount), where renames fail just the same: try one.
      // (Inspect-only opens write nothing; `ferry doctor` runs the probe itself.)
      await probeOneMount(spool.layout);
      await spool.recover();
    }
    return spool;
  }

  /** Starts a transaction (sends and takes committed together). */
  transaction(): Transaction {
    return new Transaction(this, this.inbox);
  }

  /** Commits one message to `queue`'s outbox and returns its id. No network I/O. */
  async send(queue: string, payload: PayloadInput, opts: SendOptions = {}): Promise<string> {
    const tx = this.transaction();
    try {
      const id = await tx.send(queue, payload, opts);
      await tx.commit();
      return id;
    } catch (err) {
      await tx.abort().catch(() => undefined);
      throw err;
    }
  }

  /** Takes the oldest message of an inbox queue (see {@link Inbox.take}). */
  take(queue: string, opts: TakeOptions = {}): Promise<TakenMessage | null> {
    return this.inbox.take(queue, opts);
  }

  /** Starts delivering messages into inbox queues (what the receiving daemon does). */
  delivery(): InboxDelivery {
    return new InboxDelivery(this, this.inbox);
  }

  /**
   * Returns expired leases, finishes leases of committed transactions, and removes tmp/ debris
   * older than `tmpMaxAgeMs`. Safe to run at any time, from any process.
   *
   * The sweep keeps what is not debris however old: the commit file, or `<txid>.aborted` record, of a
   * transaction a marked lease still names (their absence would read as "committed"), and every inbox
   * tmp/ file a pending receiver journal names (its replay reads a missing file as "published already")
   * — all inbox tmp/ files while a journal cannot be read.
   */
  async recover(now = clockNow()): Promise<RecoveryReport> {
    const report: RecoveryReport = { leasesReturned: 0, tmpRemoved: 0 };
    const { layout } = this;
    // Recovery deletes and renames: never through a symlink planted in place of a spool directory.
    await assertRealDirs([layout.root, layout.state, layout.commits, layout.commitsTmp, layout.outbox, layout.inbox]);
    // Commits a killed process left parked on their way to commits/new/ are finished before any lease is judged.
    await finishParkedCommits(layout);
    for (const queue of await this.inbox.queues()) {
      report.leasesReturned += await this.inbox.reclaimExpired(queue, now);
    }
    const committing = new Set<string>();
    for (const txid of await this.inbox.committingTxids()) {
      committing.add(txid);
      committing.add(abortedCommitName(txid));
    }
    // Read before listing the tmp/ files: a journal written later names files too young to sweep.
    const journaled = await journalTmpNames(layout.receive);
    const none = new Set<string>();
    // Peers' partial uploads (in their landing directories) are the receiver's to sweep, through pinned descriptors.
    const tmpDirs: { dir: string; keep: ReadonlySet<string> }[] = [{ dir: layout.commitsTmp, keep: committing }];
    for (const q of await this.outbox.queues()) {
      if (await isRealDirIfPresent(layout.outboxQueue(q))) tmpDirs.push({ dir: layout.outboxTmp(q), keep: none });
    }
    if (!journaled.unknown) {
      for (const q of await this.inbox.queues()) {
        if (await isRealDirIfPresent(layout.inboxQueue(q))) tmpDirs.push({ dir: layout.inboxDir(q, 'tmp'), keep: journaled.byQueue.get(q) ?? none });
      }
    }
    for (const { dir, keep } of tmpDirs) {
      if (!(await isRealDirIfPresent(dir))) continue;
      for (const name of await listDir(dir)) {
        const path = join(dir, name);
        if (dir === layout.commitsTmp && parseCommitted(name) !== undefined) continue; // decided: finished, never swept
        if (keep.has(name)) {
          // A committing transaction's file with a second link is what a power cut leaves of a rename out of tmp/
          // that happened: it was committed. Only that old name goes, so nothing reads it as still to do. (A pending
          // journal's inbox tmp/ file is kept as it is: its publish links it into new/ while running, and a tmp/
          // name a cut brings back was never visible; inbox/delivery.ts completePublish.)
          if (dir === layout.commitsTmp) {
            const st = await fsp.lstat(path).catch(() => undefined);
            if (st !== undefined && st.isFile() && st.nlink > 1 && (await unlinkIfExists(path))) report.tmpRemoved += 1;
          }
          continue;
        }
        try {
          const st = await fsp.lstat(path);
          if (st.isDirectory()) continue; // not ours to remove, and unlink would fail
          if (now - st.mtimeMs > this.options.tmpMaxAgeMs && (await unlinkIfExists(path))) report.tmpRemoved += 1;
        } catch (err) {
          if (errno(err) !== 'ENOENT') throw err;
        }
      }
    }
    report.tmpRemoved += await sweepDeadProbes(this.layout);
    return report;
  }
}

/**
 * Removes mount-probe links left by a process killed mid-probe (a `ferry send` or consumer SIGKILLed
 * while opening the spool): every reader skips dot-files, but nothing else would ever remove them.
 * Only probes whose process is gone are removed; a probe in progress is never touched.
 */
async function sweepDeadProbes(layout: SpoolLayout): Promise<number> {
  let removed = 0;
  for (const dir of [...probeTargets(layout), layout.commitsTmp]) {
    for (const name of await listDir(dir)) {
      if (!name.startsWith(PROBE_PREFIX)) continue;
      const pid = Number(name.slice(PROBE_PREFIX.length).split('.')[0]);
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
      if (await unlinkIfExists(join(dir, name))) removed += 1;
    }
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM'; // alive, someone else's
  }
}
