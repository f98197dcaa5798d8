// A message held by a take transaction: read it, then commit (gone for good) or abort (back to the queue).
import { createReadStream, constants, openSync, promises as fsp } from 'node:fs';
import type { ReadStream } from 'node:fs';
import { join } from 'node:path';
import { FerryError, errno } from '../errors.js';
import { fsyncDir, openRegularForRead, renameIfExists, unlinkIfExists } from '../maildir/fsx.js';
import type { SpoolContext } from '../spool/options.js';
import { formatLease, stampExpiry, type LeaseName } from './lease-name.js';
import { moveMessage, syncWayIn } from './move.js';
import { metaPath, writeMeta, type InboxMeta } from './meta.js';
import { now } from '../clock.js';

/** Keeps the last few failure reasons in a message's meta. */
const MAX_ERRORS_KEPT = 10;

/**
 * A message taken from an inbox queue. It is invisible to every other consumer until
 * {@link TakenMessage.commit} (removed for good) or {@link TakenMessage.abort} (returned, one
 * attempt counted). If the taker dies, the lease expires and the message returns by itself.
 */
export class TakenMessage {
  /** @internal */
  lease: LeaseName;
  /** When the lease expires, ms since the epoch. */
  leaseExpires: number;
  /** @internal set when a consume-transform-produce transaction owns this take */
  ownedByTransaction = false;
  private settled = false;

  /** @internal */
  constructor(
    private readonly ctx: SpoolContext,
    /** The inbox queue it was taken from. */
    readonly queue: string,
    lease: LeaseName,
    /** Origin, id, headers, commit time, attempts. */
    readonly meta: InboxMeta,
    /** Payload size in bytes. */
    readonly size: number,
    leaseExpires: number,
    /** Called when the message goes back to its queue, so the taker's listing puts it in front again. */
    private readonly onReturned: () => void = () => undefined,
  ) {
    this.lease = lease;
    this.leaseExpires = leaseExpires;
  }

  /** The message's file name in the inbox (its maildir unique name). */
  get name(): string { return this.lease.name; }
  /** The message id given at send time. */
  get id(): string { return this.meta.id; }
  /** The host that committed the message. */
  get origin(): string { return this.meta.origin; }
  /** Headers given at send time. */
  get headers(): Record<string, string> { return this.meta.headers; }

  /** @internal */
  get queueDir(): string { return this.ctx.layout.inboxQueue(this.queue); }
  /** Where the payload sits while taken (read it there; do not move it). */
  get path(): string { return join(this.queueDir, 'lease', formatLease(this.lease)); }

  /**
   * Reads the whole payload. Use {@link TakenMessage.stream} for large ones. Throws `ELEASE_LOST`
   * when the lease expired (by another process's clock) and the message went back to its queue.
   */
  async read(): Promise<Buffer> {
    const fh = await openRegularForRead(this.path).catch((err: unknown) => {
      throw errno(err) === 'ENOENT' ? this.lost() : err;
    });
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  /** A stream of the payload, opened without following symlinks. */
  stream(): ReadStream {
    const fd = openSync(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    return createReadStream(this.path, { fd });
  }

  /**
   * Keeps the message for `ms` more from now. Throws `ELEASE_LOST` when the lease had already
   * expired and another process returned the message to the queue.
   */
  async extend(ms: number): Promise<void> {
    this.assertOpen();
    const expires = now() + ms;
    try {
      await stampExpiry(this.path, expires);
    } catch (err) {
      if (errno(err) === 'ENOENT') throw this.lost();
      throw err;
    }
    this.leaseExpires = expires;
  }

  /** Removes the message for good. Throws `ELEASE_LOST` when the lease expired and the message was returned. */
  async commit(): Promise<void> {
    this.assertOpen();
    if (this.ownedByTransaction) throw new FerryError('EUSAGE', 'this message belongs to a transaction; commit the transaction instead');
    // The take's leaving new/ durable before the lease's removal can be: else a power cut could bring the
    // message back into new/ with no lease, to be taken again (found by the power-cut chaos).
    await syncWayIn(this.queueDir);
    const gone = await unlinkIfExists(this.path);
    if (!gone) throw this.lost();
    this.settled = true;
    // Committed means durable: a lease back after a power cut would be returned and taken again. And before the
    // meta goes: a lease back without its meta would be returned with made-up headers.
    await fsyncDir(join(this.queueDir, 'lease'));
    await unlinkIfExists(metaPath(this.queueDir, this.name));
  }

  /**
   * Returns the message to its queue, counting one failed attempt with `reason`; after
   * `maxAttempts` it moves to the queue's dead-letter directory instead.
   * Returns where it went ('gone' when the lease had already been lost: the message is back anyway).
   */
  async abort(reason = 'aborted by the consumer'): Promise<'returned' | 'dead' | 'gone'> {
    this.assertOpen();
    this.settled = true;
    const outcome = await returnMessage(this.ctx, this.queue, this.lease, this.meta, reason);
    this.onReturned();
    return outcome;
  }

  /** @internal marks the take as finished by its transaction */
  markSettled(): void { this.settled = true; }

  /** @internal renames the lease file to a new lease name and stamps a new expiry */
  async renameLease(next: LeaseName, expires: number): Promise<void> {
    const from = this.path;
    const to = join(this.queueDir, 'lease', formatLease(next));
    if (!(await renameIfExists(from, to))) throw this.lost();
    this.lease = next;
    try {
      await stampExpiry(to, expires);
    } catch (err) {
      // Until stamped, the renamed lease still carries the old expiry: a reclaimer may have returned it already.
      if (errno(err) === 'ENOENT') throw this.lost();
      throw err;
    }
    this.leaseExpires = expires;
  }

  private lost(): FerryError {
    return new FerryError('ELEASE_LOST', `the lease on message ${this.name} in queue ${this.queue} expired and the message was returned to the queue`, { queue: this.queue });
  }

  private assertOpen(): void {
    if (this.settled) throw new FerryError('ETXN_CLOSED', `message ${this.name} was already committed or aborted`, { queue: this.queue });
  }
}

/**
 * Moves a leased message back to new/ with one more failed attempt, or into dead/ when it has
 * failed `maxAttempts` times. The meta is written first: a crash in between at worst counts the
 * attempt twice, never loses the message.
 */
export async function returnMessage(ctx: SpoolContext, queue: string, lease: LeaseName, meta: InboxMeta, reason: string): Promise<'returned' | 'dead' | 'gone'> {
  const queueDir = ctx.layout.inboxQueue(queue);
  const attempts = meta.attempts + 1;
  const errors = [...(meta.errors ?? []), reason].slice(-MAX_ERRORS_KEPT);
  const dead = attempts >= ctx.options.maxAttempts;
  const next: InboxMeta = { ...meta, attempts, errors };
  if (dead) next.dead = { reason: `failed ${attempts} times; last: ${reason}`, at: now() };
  const from = join(queueDir, 'lease', formatLease(lease));
  try {
    await fsp.lstat(from);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 'gone';
    throw err;
  }
  await writeMeta(queueDir, lease.name, next);
  // Durable in lease/ or where it goes at every instant, whoever fsyncs lease/ meanwhile (every take does): move.ts.
  if (!(await moveMessage(queueDir, 'lease', formatLease(lease), dead ? 'dead' : 'new', lease.name))) return 'gone';
  return dead ? 'dead' : 'returned';
}
