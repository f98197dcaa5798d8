// Reading the outbox: committed transactions and messages legacy producers committed by maildir rename.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { errno } from '../errors.js';
import { assertRealDirs, ensureDir, isRealDirIfPresent, listDir } from '../maildir/fsx.js';
import { compareNames } from '../maildir/unique.js';
import { isQueueName } from '../spool/names.js';
import type { SpoolContext } from '../spool/options.js';
import { readCommitIndex } from './commit-file.js';

/** Something committed in the outbox, waiting to be shipped. */
export type OutboxEntry =
  /** A ferry send transaction: one file holding one or more messages (state/commits/new/<name>). */
  | { kind: 'commit'; name: string; path: string }
  /** One message committed by a maildir producer (outbox/<queue>/new/<name>): the file is the payload. */
  | { kind: 'raw'; name: string; path: string; queue: string };

/** The outbox side of a spool. */
export class Outbox {
  constructor(private readonly ctx: SpoolContext) {}

  /** Creates the directories of an outbox queue (idempotent). */
  async ensureQueue(queue: string): Promise<void> {
    await ensureDir(this.ctx.layout.outboxQueue(queue));
    await ensureDir(this.ctx.layout.outboxTmp(queue));
    await ensureDir(this.ctx.layout.outboxNew(queue));
  }

  /** Outbox queue directories that exist (names that are not valid queue names are ignored). */
  async queues(): Promise<string[]> {
    return (await listDir(this.ctx.layout.outbox)).filter(isQueueName).sort();
  }

  /** Every committed entry, oldest first (commit order for ferry's own sends, name time for maildir producers). */
  async entries(): Promise<OutboxEntry[]> {
    return this.oldest(Number.POSITIVE_INFINITY);
  }

  /**
   * The `limit` oldest committed entries, oldest first. The directories are streamed (opendir) and
   * only the `limit` oldest names are kept, in a bounded heap: a backlog of a million entries costs
   * one pass over the directory entries, not a million names in memory (I8). With `after`, only
   * entries that sort after that name (the next page of a scan).
   */
  async oldest(limit: number, after?: string): Promise<OutboxEntry[]> {
    const { layout } = this.ctx;
    await assertRealDirs([layout.root, layout.state, layout.commits, layout.commitsNew, layout.outbox]);
    const heap = new OldestHeap(limit, after);
    await eachName(layout.commitsNew, (name) => heap.offer({ kind: 'commit', name, path: join(layout.commitsNew, name) }));
    for (const queue of await this.queues()) {
      const dir = layout.outboxNew(queue);
      if (!(await isRealDirIfPresent(layout.outboxQueue(queue))) || !(await isRealDirIfPresent(dir))) continue;
      await eachName(dir, (name) => heap.offer({ kind: 'raw', name, path: join(dir, name), queue }));
    }
    return heap.sorted();
  }

  /** Committed messages per queue, and the commit time of the oldest (ms), for status. */
  async depths(): Promise<Map<string, { messages: number; bytes: number; oldest: number }>> {
    const depths = new Map<string, { messages: number; bytes: number; oldest: number }>();
    const add = (queue: string, bytes: number, at: number) => {
      const d = depths.get(queue) ?? { messages: 0, bytes: 0, oldest: Number.POSITIVE_INFINITY };
      d.messages += 1;
      d.bytes += bytes;
      d.oldest = Math.min(d.oldest, at);
      depths.set(queue, d);
    };
    for (const entry of await this.entries()) {
      try {
        if (entry.kind === 'commit') {
          const index = await readCommitIndex(entry.path);
          for (const m of index.messages) add(m.queue, m.size, index.committed);
        } else {
          const st = await fsp.lstat(entry.path);
          add(entry.queue, st.size, st.ctimeMs);
        }
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err; // shipped while we looked
      }
    }
    return depths;
  }
}

/** Calls `fn` for each visible name in a directory, streaming (no full listing); a missing directory has none. */
async function eachName(dir: string, fn: (name: string) => void): Promise<void> {
  let handle;
  try {
    handle = await fsp.opendir(dir, { bufferSize: 256 });
  } catch (err) {
    if (errno(err) === 'ENOENT') return;
    throw err;
  }
  for await (const dirent of handle) if (!dirent.name.startsWith('.')) fn(dirent.name);
}

/** Keeps the `limit` oldest entries offered (by {@link compareNames}) in a max-heap: O(limit) memory. */
class OldestHeap {
  private readonly items: OutboxEntry[] = [];

  constructor(private readonly limit: number, private readonly after?: string) {}

  offer(e: OutboxEntry): void {
    if (this.after !== undefined && compareNames(e.name, this.after) <= 0) return;
    const h = this.items;
    if (h.length < this.limit) {
      h.push(e);
      this.up(h.length - 1);
    } else if (h.length > 0 && compareNames(e.name, (h[0] as OutboxEntry).name) < 0) {
      h[0] = e; // newer than the newest kept: replace it
      this.down(0);
    }
  }

  sorted(): OutboxEntry[] {
    return [...this.items].sort((a, b) => compareNames(a.name, b.name));
  }

  private newer(i: number, j: number): boolean {
    return compareNames((this.items[i] as OutboxEntry).name, (this.items[j] as OutboxEntry).name) > 0;
  }

  private swap(i: number, j: number): void {
    const t = this.items[i] as OutboxEntry;
    this.items[i] = this.items[j] as OutboxEntry;
    this.items[j] = t;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.newer(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < n && this.newer(l, top)) top = l;
      if (r < n && this.newer(r, top)) top = r;
      if (top === i) return;
      this.swap(i, top);
      i = top;
    }
  }
}
