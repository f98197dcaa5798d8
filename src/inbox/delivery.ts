// Writing messages into inbox queues atomically: payload and meta in tmp/, fsync, then rename into new/.
import { closeSync, constants, linkSync, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createExclusive, createExclusiveSync, fsyncDir, lstatIfExists, lstatIfExistsSync, renameIfExists, renameIfExistsSync, syncFileSystem, unlinkIfExists, unlinkIfExistsSync, writeAll, writeAllSync } from '../maildir/fsx.js';
import { uniqueName } from '../maildir/unique.js';
import { errno } from '../errors.js';
import { crashPoint } from '../spool/crash-point.js';
import type { SpoolContext } from '../spool/options.js';
import type { Inbox } from './inbox.js';
import { metaPath, type InboxMeta } from './meta.js';
import { now } from '../clock.js';

/** One message of a delivery: where it goes and what it is. */
export interface DeliveryItem {
  queue: string;
  /** Its unique name in the inbox (chosen when added, so a journal can name it before it is published). */
  name: string;
  meta: InboxMeta;
}

/** Receives the payload bytes of one message being delivered. */
export interface PayloadWriter {
  write(chunk: Uint8Array): Promise<void>;
  end(): Promise<void>;
}

const WRITE_BUFFER = 256 * 1024;
/** Batches larger than this are made durable by one syncfs instead of an fsync per file. */
const GROUP_SYNC_THRESHOLD = 8;
/**
 * Creates `path` exclusively and writes `data` with direct calls, no fsync (the batch is made
 * durable together in prepare()). The blocking is per message, between awaits of the bundle parser.
 */
function writeNewFileFastNoSync(path: string, data: Uint8Array): void {
  const fd = createExclusiveSync(path);
  try {
    writeAllSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

/**
 * A batch of messages being delivered into inbox queues. Nothing is visible to consumers until
 * {@link InboxDelivery.publish}; after {@link InboxDelivery.prepare} every payload and meta is
 * durable in tmp/, so a journal naming the items can complete the publish after a crash with
 * {@link completePublish}.
 *
 * A payload smaller than the write buffer is written in one go when it ends (no file handle kept
 * open); a larger one streams through a file handle.
 */
export class InboxDelivery {
  readonly items: DeliveryItem[] = [];
  private readonly open: FileHandle[] = [];
  /** Every file this delivery wrote into a tmp/ directory (payloads and metas). */
  private readonly written: string[] = [];
  private readonly queueDirs = new Set<string>();
  /** Queues whose directories this delivery already checked (once per queue, not per message). */
  private readonly ensured = new Map<string, string>();

  constructor(private readonly ctx: SpoolContext, private readonly inbox: Inbox) {}

  /** Adds a message; write its payload through the returned writer, then end it. */
  async add(meta: Omit<InboxMeta, 'delivered' | 'attempts'>): Promise<PayloadWriter> {
    let queueDir = this.ensured.get(meta.queue);
    if (queueDir === undefined) {
      queueDir = await this.inbox.ensureQueue(meta.queue);
      this.ensured.set(meta.queue, queueDir);
      this.queueDirs.add(queueDir);
    }
    const name = uniqueName(this.ctx.host);
    const item: DeliveryItem = { queue: meta.queue, name, meta: { ...meta, delivered: now(), attempts: 0 } };
    this.items.push(item);
    const path = join(queueDir, 'tmp', name);
    let fh: FileHandle | undefined;
    let buffered: Uint8Array[] = [];
    let bufferedBytes = 0;
    const take = (): Uint8Array => {
      const data = buffered.length === 1 ? (buffered[0] as Uint8Array) : Buffer.concat(buffered);
      buffered = [];
      bufferedBytes = 0;
      return data;
    };
    const spill = async () => {
      if (fh === undefined) {
        this.written.push(path);
        fh = await createExclusive(path);
        this.open.push(fh);
      }
      if (bufferedBytes > 0) await writeAll(fh, take());
    };
    return {
      write: async (chunk) => {
        if (chunk.byteLength >= WRITE_BUFFER) {
          await spill();
          await writeAll(fh as FileHandle, chunk);
          return;
        }
        buffered.push(Buffer.from(chunk));
        bufferedBytes += chunk.byteLength;
        if (bufferedBytes >= WRITE_BUFFER) await spill();
      },
      end: async () => {
        if (fh !== undefined) {
          await spill();
          return;
        }
        this.written.push(path);
        writeNewFileFastNoSync(path, take());
      },
    };
  }

  /**
   * Makes every payload and meta durable in tmp/. A few messages get an fsync each; a larger batch
   * is written without fsyncs and made durable by one syncfs, which costs one call however many
   * files the batch holds. Either way the tmp directories' entries are durable too.
   */
  async prepare(): Promise<void> {
    const group = this.items.length > GROUP_SYNC_THRESHOLD;
    await Promise.all(this.open.map((fh) => fh.close()));
    this.open.length = 0;
    for (const item of this.items) {
      const path = join(this.ctx.layout.inboxQueue(item.queue), 'tmp', `${item.name}.meta`);
      this.written.push(path);
      writeNewFileFastNoSync(path, Buffer.from(JSON.stringify(item.meta)));
    }
    if (!group || !(await syncFileSystem(this.ctx.layout.inbox))) await this.fsyncAll();
    await Promise.all([...this.queueDirs].map((dir) => fsyncDir(join(dir, 'tmp'))));
  }

  /** fsyncs every file of the batch (a small batch, or when syncfs is unavailable), in parallel. */
  private async fsyncAll(): Promise<void> {
    await Promise.all(this.written.map(async (path) => {
      const fh = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }));
  }

  /** Publishes every prepared message: meta first, then the payload rename that makes it visible. */
  async publish(): Promise<void> {
    await completePublish(this.ctx, this.items);
    for (const item of this.items) this.inbox.invalidate(item.queue);
  }

  /** Throws away everything not yet published. */
  async discard(): Promise<void> {
    await Promise.all(this.open.map((fh) => fh.close().catch(() => undefined)));
    this.open.length = 0;
    for (const path of this.written) await unlinkIfExists(path);
    this.written.length = 0;
  }
}

/** The hidden name in new/ a message is published under until its tmp/ name is durably gone (consumers skip dot-names). */
const PUBLISHING_PREFIX = '.in-';
const publishingName = (name: string) => `${PUBLISHING_PREFIX}${name}`;

/**
 * Publishes prepared items so that no power cut can lose one or deliver one twice; idempotent, so a journal can
 * replay it after a crash at any instant:
 *
 *   1. link tmp/<name>.meta as meta/<name>.json and tmp/<name> as new/.in-<name> (hidden); fsync meta/ and new/;
 *   2. unlink both tmp/ names; fsync tmp/;
 *   3. rename new/.in-<name> to new/<name> (one directory: visible at once); fsync new/. A hidden name that is a second
 *      link of its file (a cut brought it back after the message was taken) is removed instead: see revealSync.
 *
 * A cross-directory rename would become durable in two halves, each when its directory is fsynced — by this process
 * or by any other one — so it could be lost, or its tmp/ name come back after the message was consumed, for a replay
 * to publish it again. Here the message is durably in tmp/ or in new/ at every instant, and it is visible only once
 * its tmp/ name is durably gone: a tmp/<name> found after a cut was never visible, never consumed.
 */
export async function completePublish(ctx: SpoolContext, items: readonly DeliveryItem[]): Promise<void> {
  const dirs = new Set(items.map((item) => ctx.layout.inboxQueue(item.queue)));
  for (const item of items) {
    const dir = ctx.layout.inboxQueue(item.queue);
    const tmp = join(dir, 'tmp', item.name);
    linkIfPresentSync(`${tmp}.meta`, metaPath(dir, item.name));
    linkIfPresentSync(tmp, join(dir, 'new', publishingName(item.name)));
  }
  crashPoint('publish.after-link');
  await Promise.all([...dirs].flatMap((dir) => [fsyncDir(join(dir, 'meta')), fsyncDir(join(dir, 'new'))]));
  for (const item of items) {
    const tmp = join(ctx.layout.inboxQueue(item.queue), 'tmp', item.name);
    unlinkIfExistsSync(`${tmp}.meta`);
    unlinkIfExistsSync(tmp);
  }
  await Promise.all([...dirs].map((dir) => fsyncDir(join(dir, 'tmp'))));
  crashPoint('publish.before-reveal');
  const leftovers: string[] = [];
  for (const item of items) {
    const dir = ctx.layout.inboxQueue(item.queue);
    if (!revealSync(dir, item.name)) leftovers.push(dir);
  }
  if (leftovers.length > 0) await dropLeftovers(ctx, items, new Set(leftovers));
  crashPoint('publish.after-visible');
  await Promise.all([...dirs].map((dir) => fsyncDir(join(dir, 'new'))));
}

/**
 * Step 3 for one message whose tmp/ names are durably gone: renames new/.in-<name> to new/<name>. Returns false,
 * renaming nothing, when the hidden name is a second link of its file: then the message was published before and a
 * power cut brought the hidden name back after a consumer had durably taken it (or after recovery returned it to
 * new/<name>), and revealing it would deliver the message twice.
 */
function revealSync(queueDir: string, name: string): boolean {
  const hidden = join(queueDir, 'new', publishingName(name));
  const st = lstatIfExistsSync(hidden);
  if (st === undefined) return true; // revealed already, by an earlier run or by recovery
  if (st.nlink > 1) return false;
  renameIfExistsSync(hidden, join(queueDir, 'new', name));
  return true;
}

/**
 * Removes the hidden names {@link revealSync} refused (only after a power cut: rare). The file's other name is durable
 * once the queue's lease/ and dead/ are synced (new/ is synced after this), so the message lives on there.
 */
async function dropLeftovers(ctx: SpoolContext, items: readonly DeliveryItem[], dirs: ReadonlySet<string>): Promise<void> {
  for (const dir of dirs) await Promise.all([fsyncDir(join(dir, 'lease')), fsyncDir(join(dir, 'dead'))]);
  for (const item of items) {
    const dir = ctx.layout.inboxQueue(item.queue);
    if (!dirs.has(dir)) continue;
    const hidden = join(dir, 'new', publishingName(item.name));
    const st = lstatIfExistsSync(hidden);
    if (st !== undefined && st.nlink > 1) unlinkIfExistsSync(hidden);
  }
}

/**
 * Recovery's side of {@link completePublish}, for the hidden names among `newNames` (a listing of the queue's new/):
 * one whose tmp/ payload is still there is a publish in progress or one its journal will redo, and is left alone;
 * any other is finished here — revealed, or dropped when it is a power cut's second link of a message published
 * before. This covers a publish killed after step 2 with no journal to redo it (a library caller's delivery), and a
 * cut leftover seen before any journal replay. Safe beside a live publisher: every step tolerates the other's.
 * Returns how many were revealed.
 */
export async function settlePublishing(queueDir: string, newNames: readonly string[]): Promise<number> {
  let revealed = 0;
  for (const hiddenName of newNames) {
    if (!hiddenName.startsWith(PUBLISHING_PREFIX)) continue;
    const name = hiddenName.slice(PUBLISHING_PREFIX.length);
    // tmp/ first: once its payload name is gone it never comes back (a live publisher unlinks it only after the link).
    if ((await lstatIfExists(join(queueDir, 'tmp', name))) !== undefined) continue;
    const hidden = join(queueDir, 'new', hiddenName);
    const st = await lstatIfExists(hidden);
    if (st === undefined) continue;
    if (st.nlink > 1) {
      await Promise.all([fsyncDir(join(queueDir, 'lease')), fsyncDir(join(queueDir, 'dead'))]);
      await unlinkIfExists(hidden);
    } else {
      // The publisher's unlink of the tmp/ names may not be durable yet: made so before the message becomes visible.
      await fsyncDir(join(queueDir, 'tmp'));
      if (await renameIfExists(hidden, join(queueDir, 'new', name))) revealed += 1;
    }
    await fsyncDir(join(queueDir, 'new'));
  }
  return revealed;
}

/** Links `from` as `to`; nothing when `from` is gone (done before) or `to` exists (linked before: the same file). */
function linkIfPresentSync(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (err) {
    if (errno(err) !== 'ENOENT' && errno(err) !== 'EEXIST') throw err;
  }
}
