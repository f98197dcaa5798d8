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
    const out: OutboxEntry[] = [];
    const { layout } = this.ctx;
    // Never list through a planted symlink: its target's files would be shipped as messages.
    await assertRealDirs([layout.root, layout.state, layout.commits, layout.commitsNew, layout.outbox]);
    for (const name of await listDir(layout.commitsNew)) {
      if (!name.startsWith('.')) out.push({ kind: 'commit', name, path: join(layout.commitsNew, name) });
    }
    for (const queue of await this.queues()) {
      const dir = layout.outboxNew(queue);
      if (!(await isRealDirIfPresent(layout.outboxQueue(queue))) || !(await isRealDirIfPresent(dir))) continue;
      for (const name of await listDir(dir)) {
        if (!name.startsWith('.')) out.push({ kind: 'raw', name, path: join(dir, name), queue });
      }
    }
    return out.sort((a, b) => compareNames(a.name, b.name));
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
