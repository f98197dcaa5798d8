// Send transactions: many messages, to one or several queues, committed by one rename — and, in
// consume-transform-produce, the messages taken from inboxes removed in the same commit.
import { promises as fsp, renameSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, errno } from '../errors.js';
import { assertRealDirs, assertRealDirsSync, createExclusive, fsyncDir, fsyncDirFast, unlinkIfExists, writeAll, writeNewFileFast } from '../maildir/fsx.js';
import { uniqueName } from '../maildir/unique.js';
import { crashPoint } from '../spool/crash-point.js';
import { validateHeaders, validateHostName, validateQueueName } from '../spool/names.js';
import { unsealableReason } from '../envelope/sealable.js';
import type { SpoolContext } from '../spool/options.js';
import type { Inbox, TakeOptions } from '../inbox/inbox.js';
import { abortedCommitName } from '../inbox/lease-name.js';
import { committedName, finishCommitted } from './commit-point.js';
import { metaPath } from '../inbox/meta.js';
import { syncWayIn } from '../inbox/move.js';
import type { TakenMessage } from '../inbox/taken-message.js';
import { encodeIndex, type CommitFileMessage } from './commit-file.js';
import { now } from '../clock.js';

/** A payload: bytes, text, or a stream of chunks (a file stream, stdin…), copied at send time. */
export type PayloadInput = string | Uint8Array | AsyncIterable<Uint8Array | string>;

/** Options of one message. */
export interface SendOptions {
  /** Headers kept with the message, never mixed into the payload. Default: none. */
  headers?: Record<string, string>;
  /** Ship to these hosts instead of the queue's route. Default: the route. */
  to?: string[];
}

/** How long a committing lease is protected from being reclaimed, in ms (the commit takes milliseconds). */
const COMMIT_GRACE_MS = 60_000;
const WRITE_BUFFER = 256 * 1024;

/**
 * A transaction: `send` any number of messages (one or several queues), `take` messages from
 * inboxes, then `commit` — all of it happens, or (`abort`, or a crash at any instant) none of it.
 *
 * The sends are written into one commit file in state/commits/tmp/; its rename into
 * state/commits/new/ is the commit point. Taken messages are marked with the transaction id
 * before that point, so recovery can tell whether their transaction committed. A reclaimer that
 * finds a marked lease expired aborts the transaction by renaming the same file to
 * `<txid>.aborted`: only one of the two renames succeeds, so the transaction either commits or is
 * aborted (its commit then throws `ELEASE_LOST`), never both.
 * No lock is held across user code: the file is private to this transaction until it commits.
 */
export class Transaction {
  /** This transaction's id (also the name of its file in state/commits/tmp/). */
  readonly txid: string;
  private fh: FileHandle | undefined;
  private readonly messages: CommitFileMessage[] = [];
  private readonly taken: TakenMessage[] = [];
  private state: 'open' | 'committed' | 'aborted' = 'open';
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  /** Set once commit() starts marking taken messages: from then on a reclaimer may abort this transaction. */
  private marking = false;

  /** @internal use `spool.transaction()` */
  constructor(private readonly ctx: SpoolContext, private readonly inbox: Inbox) {
    this.txid = uniqueName(ctx.host);
  }

  private get tmpPath(): string { return join(this.ctx.layout.commitsTmp, this.txid); }
  private get abortRecordPath(): string { return join(this.ctx.layout.commitsTmp, abortedCommitName(this.txid)); }

  /** Number of messages sent so far in this transaction. */
  get size(): number { return this.messages.length; }

  /**
   * Adds a message to `queue`. Returns its id. Nothing is visible until {@link Transaction.commit}.
   * Invalid names, headers or destinations are refused before anything is written, and leave the
   * transaction open. A payload that fails while being copied (a stream error, a full disk) aborts
   * the whole transaction: its bytes are already in the commit file, which could not be read back.
   */
  async send(queue: string, payload: PayloadInput, opts: SendOptions = {}): Promise<string> {
    this.assertOpen();
    validateQueueName(queue);
    const headers = validateHeaders({ ...(opts.headers ?? {}) });
    // What could never be sealed is refused now, not found out by the daemon (longest id, size and sequence assumed).
    const unsealable = unsealableReason(queue, 'x'.repeat(128), headers, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    if (unsealable !== undefined) throw new FerryError('EHEADER', `a message to ${queue} cannot be shipped: ${unsealable}; send fewer or shorter headers`, { queue });
    const to = opts.to !== undefined && opts.to.length > 0 ? opts.to.map((h) => validateHostName(h, 'destination')) : undefined;
    try {
      return await this.copyPayload(queue, payload, headers, to);
    } catch (err) {
      await this.abort(`sending to ${queue} failed`).catch(() => undefined);
      throw err;
    }
  }

  private async copyPayload(queue: string, payload: PayloadInput, headers: Record<string, string>, to: string[] | undefined): Promise<string> {
    let size = 0;
    const push = async (chunk: Uint8Array | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      size += buf.byteLength;
      if (buf.byteLength >= WRITE_BUFFER) {
        const fh = await this.file();
        await this.flush(fh);
        await writeAll(fh, buf);
        return;
      }
      // Copy: the caller may reuse its buffer once send() returns.
      this.buffered.push(Buffer.from(buf));
      this.bufferedBytes += buf.byteLength;
      if (this.bufferedBytes >= WRITE_BUFFER) await this.flush(await this.file());
    };
    if (typeof payload === 'string' || payload instanceof Uint8Array) {
      await push(payload);
    } else {
      for await (const chunk of payload) await push(chunk);
    }
    const id = uniqueName(this.ctx.host);
    const message: CommitFileMessage = { queue, id, headers, size };
    if (to !== undefined) message.to = to;
    this.messages.push(message);
    return id;
  }

  /**
   * Takes the oldest message of an inbox queue inside this transaction: it is removed when the
   * transaction commits and returned to its queue when it aborts.
   */
  async take(queue: string, opts: TakeOptions = {}): Promise<TakenMessage | null> {
    this.assertOpen();
    const msg = await this.inbox.take(queue, opts);
    if (msg) {
      msg.ownedByTransaction = true;
      this.taken.push(msg);
    }
    return msg;
  }

  /**
   * Commits: every message sent becomes visible to shipping at once and every message taken is
   * removed, or — on error or crash — nothing happens. Returns the ids of the messages sent.
   * Throws `ELEASE_LOST` (and commits nothing; the taken messages go back to their queues) when a
   * taken message's lease expired meanwhile, or another process found this commit past its grace
   * period and aborted it.
   */
  async commit(): Promise<string[]> {
    this.assertOpen();
    const hasSends = this.messages.length > 0;
    const hasTakes = this.taken.length > 0;
    if (!hasSends && !hasTakes) {
      this.state = 'committed';
      return [];
    }
    // 1. The commit file, complete and durable, but still in tmp/: nothing is visible yet. A small
    //    transaction (everything still buffered: the common single message) writes it in one go,
    //    with only the fsync sent to the thread pool.
    const index = encodeIndex({ v: 1, txid: this.txid, origin: this.ctx.host, committed: now(), messages: this.messages });
    if (this.fh === undefined) {
      const { layout } = this.ctx;
      assertRealDirsSync([layout.root, layout.state, layout.commits, layout.commitsTmp]);
      const chunks = [...this.buffered, index];
      this.buffered = [];
      this.bufferedBytes = 0;
      await writeNewFileFast(this.tmpPath, chunks);
    } else {
      const fh = this.fh;
      await this.flush(fh);
      await writeAll(fh, index);
      await fh.sync();
      await fh.close();
      this.fh = undefined;
    }
    // With takes, our file's entry in tmp/ is what a marked lease is resolved by ("undecided"): it must be
    // durable before the first mark, or a power loss could leave a durable mark and no file, read as "committed"
    // (the taken message removed, the sends never committed). A sends-only commit marks nothing.
    if (hasTakes) await fsyncDir(this.ctx.layout.commitsTmp);
    crashPoint('txn.after-fsync');
    // 2. Mark each taken message with this transaction id (and a fresh grace period), so recovery
    //    can decide its fate by looking for our file in tmp/.
    const marked: TakenMessage[] = [];
    this.marking = hasTakes;
    try {
      for (const msg of this.taken) {
        await msg.renameLease({ ...msg.lease, txid: this.txid }, now() + COMMIT_GRACE_MS);
        marked.push(msg);
        crashPoint('txn.after-mark');
      }
    } catch (err) {
      for (const msg of marked) {
        const { txid: _txid, ...unmarked } = msg.lease;
        await msg.renameLease(unmarked, msg.leaseExpires).catch(() => undefined);
      }
      await this.abort('lease lost while committing').catch(() => undefined);
      throw err;
    }
    // The marks must be durable before the commit point, or a power loss could bring back an
    // unmarked lease for a transaction whose sends survived (the message would be processed twice).
    if (hasTakes) await Promise.all([...new Set(this.taken.map((m) => join(m.queueDir, 'lease')))].map((d) => fsyncDir(d)));
    // 3. The commit point: the file leaves tmp/ (into new/ when it carries messages). From here on
    //    the transaction is committed whatever fails next: abort() must never undo it.
    //    With takes, a reclaimer may have aborted us by renaming the file to <txid>.aborted first: then
    //    our rename or unlink finds nothing (ENOENT), and we commit nothing.
    let parked: string | undefined;
    try {
      if (hasSends && hasTakes) {
        // Decided inside tmp/, then linked into new/ (see commit-point.ts): no cut can keep one half of it.
        assertRealDirsSync([this.ctx.layout.commitsNew]);
        parked = committedName(this.txid, this.ctx.names.next(this.ctx.host));
        renameSync(this.tmpPath, join(this.ctx.layout.commitsTmp, parked));
      } else if (hasSends) {
        assertRealDirsSync([this.ctx.layout.commitsNew]);
        renameSync(this.tmpPath, join(this.ctx.layout.commitsNew, this.ctx.names.next(this.ctx.host)));
      } else {
        await fsp.unlink(this.tmpPath);
      }
    } catch (err) {
      if (hasTakes && errno(err) === 'ENOENT') {
        await this.abort(`transaction ${this.txid} was aborted by another process while committing (its grace period had expired by that process's clock)`).catch(() => undefined);
        throw new FerryError('ELEASE_LOST', `transaction ${this.txid} was aborted while committing: another process found its taken messages' commit grace expired and returned them to their queues; nothing was committed`, { cause: err });
      }
      throw err;
    }
    this.state = 'committed';
    if (parked !== undefined) {
      crashPoint('txn.after-rename');
      await finishCommitted(this.ctx.layout, parked, false);
      crashPoint('txn.after-unpark');
    } else if (hasSends) {
      crashPoint('txn.after-rename');
      await fsyncDirFast(this.ctx.layout.commitsNew);
    }
    // With takes, the file's absence from tmp/ is what tells recovery "committed": that must be
    // durable. A sends-only commit needs no such fsync — a tmp/ entry that came back after a power
    // loss would be a second link to a committed file, and recovery only sweeps tmp/ debris.
    // So must each take's rename out of new/ (inbox/move.ts syncWayIn), before the lease goes (step 4): else a
    // power cut could bring the message back into new/ with its lease gone, to be taken again.
    // Its lease entry is durable since the take (see Inbox.claim), so this fsync cannot lose it.
    if (hasTakes) await Promise.all([fsyncDir(this.ctx.layout.commitsTmp), ...[...new Set(this.taken.map((m) => m.queueDir))].map(syncWayIn)]);
    crashPoint('txn.after-commit');
    // 4. Remove the taken messages. A crash here leaves marked leases that recovery removes.
    for (const msg of this.taken) {
      await unlinkIfExists(msg.path);
      await unlinkIfExists(metaPath(msg.queueDir, msg.name));
      msg.markSettled();
    }
    return this.messages.map((m) => m.id);
  }

  /**
   * Discards the messages sent and returns the messages taken to their queues (one attempt counted).
   * The taken messages go back first: while one of them still carries this transaction's mark, the
   * commit file (or its `<txid>.aborted` record, when a reclaimer aborted us) must stay in tmp/,
   * because the absence of both is what says "committed" to recovery. Only this transaction marks
   * its leases, so once its own messages are back no marked lease can appear any more: the record can go.
   */
  async abort(reason = 'transaction aborted'): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    if (this.fh) {
      await this.fh.close().catch(() => undefined);
      this.fh = undefined;
    }
    let stillMarked = false;
    for (const msg of this.taken) {
      msg.ownedByTransaction = false;
      try {
        await msg.abort(reason);
      } catch {
        // Left leased (and maybe marked): it returns when its lease expires, as uncommitted.
        if (msg.lease.txid !== undefined) stillMarked = true;
      }
      this.inbox.invalidate(msg.queue);
    }
    if (stillMarked) return;
    if (this.marking) {
      // The returns (renames out of lease/) durable before the records that tell them apart from a commit go.
      await Promise.all([...new Set(this.taken.map((m) => join(m.queueDir, 'lease')))].map((d) => fsyncDir(d)));
      await unlinkIfExists(this.tmpPath);
      await unlinkIfExists(this.abortRecordPath);
      return;
    }
    await unlinkIfExists(this.tmpPath);
  }

  private async file(): Promise<FileHandle> {
    if (!this.fh) {
      const { layout } = this.ctx;
      await assertRealDirs([layout.root, layout.state, layout.commits, layout.commitsTmp]);
      this.fh = await createExclusive(this.tmpPath);
    }
    return this.fh;
  }

  private async flush(fh: FileHandle): Promise<void> {
    if (this.bufferedBytes === 0) return;
    const data = this.buffered.length === 1 ? (this.buffered[0] as Buffer) : Buffer.concat(this.buffered);
    this.buffered = [];
    this.bufferedBytes = 0;
    await writeAll(fh, data);
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new FerryError('ETXN_CLOSED', `transaction ${this.txid} is already ${this.state}`);
  }
}
