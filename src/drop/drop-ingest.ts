// Ingesting drop/<queue>/: files legacy scripts cp, scp or write slowly, committed only once complete.
//
// A file is complete when (a) a marker `X.done` sits beside it, or (b) its size and mtime have not
// changed for the queue's settle time — unless the queue commits by marker only (`commit = "marker"`):
// then only (a), since a writer that stalls longer than any settle time would be shipped half. Names a writer is still working on are never looked at:
// dot-files (`.X`, rsync and many scripts write those, then rename) and `*.tmp` files.
// A complete file is fsynced (its writer may not have) and then committed by one rename into
// outbox/<queue>/new/ — the maildir commit — so it is never shipped half-written and never twice.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { errno } from '../errors.js';
import { ensureDir, fsyncDir, listDir, openRegularForRead, renameIfExists, replaceFileDurable, unlinkIfExists } from '../maildir/fsx.js';
import { isQueueName } from '../spool/names.js';
import type { Spool } from '../spool/spool.js';
import type { Log } from '../channel/acceptor.js';
import { now as clockNow } from '../clock.js';

/** How long a file must stay unchanged, per queue, in ms. */
export type SettleFor = (queue: string) => number;
/** Per queue: true when only an `X.done` marker commits a file (settle time never does). */
export type MarkerOnly = (queue: string) => boolean;

interface Seen {
  size: number;
  mtimeMs: number;
  since: number;
}

/** Watches drop/ and commits complete files into the outbox. One per daemon. */
export class DropIngester {
  private readonly seen = new Map<string, Seen>();

  constructor(private readonly spool: Spool, private readonly settleFor: SettleFor, private readonly log: Log, private readonly markerOnly: MarkerOnly = () => false) {}

  /**
   * One pass over every drop queue; returns how many files were committed. `now` times the settle
   * interval and is monotonic by default: a wall clock stepping forward must not make a file being
   * written look settled.
   */
  async ingestOnce(now = performance.now()): Promise<number> {
    let committed = 0;
    const alive = new Set<string>();
    for (const queue of (await listDir(this.spool.layout.drop)).filter(isQueueName)) {
      const dir = this.spool.layout.dropQueue(queue);
      let st;
      try {
        st = await fsp.lstat(dir);
      } catch {
        continue;
      }
      if (!st.isDirectory()) continue; // a symlink or file where a queue directory belongs: never followed
      const names = await listDir(dir);
      const present = new Set(names);
      for (const name of names) {
        if (name.startsWith('.') || name.endsWith('.tmp')) continue;
        if (name.endsWith('.done')) {
          // A marker whose file is gone (ingested before a crash removed the marker): tidy up once settled.
          const base = name.slice(0, -'.done'.length);
          if (!present.has(base)) await this.removeStaleMarker(join(dir, name), this.settleFor(queue));
          continue;
        }
        const key = `${queue}/${name}`;
        alive.add(key);
        if (await this.tryIngest(queue, dir, name, present.has(`${name}.done`), now)) committed += 1;
      }
    }
    for (const key of this.seen.keys()) if (!alive.has(key)) this.seen.delete(key);
    return committed;
  }

  private async tryIngest(queue: string, dir: string, name: string, marked: boolean, now: number): Promise<boolean> {
    const path = join(dir, name);
    const key = `${queue}/${name}`;
    let st;
    try {
      st = await fsp.lstat(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
    if (!st.isFile()) {
      await this.reject(queue, name, path, `not a regular file (mode ${st.mode.toString(8)}); symlinks, FIFOs and devices are never read`);
      return false;
    }
    if (st.nlink > 1) {
      await this.reject(queue, name, path, `has ${st.nlink} hard links; refusing to ship a file linked from elsewhere`);
      return false;
    }
    if (!marked) {
      if (this.markerOnly(queue)) return false; // however long it has been still, only X.done says it is complete
      const prev = this.seen.get(key);
      if (!prev || prev.size !== st.size || prev.mtimeMs !== st.mtimeMs) {
        this.seen.set(key, { size: st.size, mtimeMs: st.mtimeMs, since: now });
        return false;
      }
      if (now - prev.since < this.settleFor(queue)) return false;
    }
    // Complete. Make the bytes durable (the writer may never have fsynced), then commit by rename.
    await this.spool.outbox.ensureQueue(queue);
    // Open without following a symlink or blocking on a FIFO swapped in since the lstat, and make
    // sure it is still the file that was checked before touching its mode.
    const fh = await openRegularForRead(path).catch((err: unknown) => {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    });
    if (!fh) return false;
    try {
      const now2 = await fh.stat();
      if (now2.ino !== st.ino || now2.dev !== st.dev) return false; // replaced meanwhile: look again next pass
      // Tighten the mode when we own the file; a file another user dropped keeps its owner's mode.
      await fh.chmod(0o600).catch(() => undefined);
      await fh.sync();
    } finally {
      await fh.close();
    }
    const target = join(this.spool.layout.outboxNew(queue), this.spool.names.next(this.spool.host));
    if (!(await renameIfExists(path, target))) return false;
    await fsyncDir(this.spool.layout.outboxNew(queue));
    await fsyncDir(dir);
    this.seen.delete(key);
    if (marked) await unlinkIfExists(`${path}.done`);
    this.log.info({ queue, file: name, bytes: st.size, by: marked ? 'done marker' : 'settle time' }, 'drop file committed');
    return true;
  }

  private async removeStaleMarker(path: string, settleMs: number): Promise<void> {
    try {
      const st = await fsp.lstat(path);
      if (clockNow() - st.mtimeMs > settleMs) await unlinkIfExists(path); // against the file's (wall-clock) mtime
    } catch {
      // gone already
    }
  }

  /** Moves a drop entry that must never be shipped to state/dead/drop/ with a reason. */
  private async reject(queue: string, name: string, path: string, reason: string): Promise<void> {
    const dir = join(this.spool.layout.deadOut, 'drop');
    await ensureDir(dir);
    const dead = `${queue}.${name}`;
    await replaceFileDurable(join(dir, `${dead}.reason.json`), JSON.stringify({ reason, at: clockNow(), source: path }));
    await renameIfExists(path, join(dir, dead));
    this.log.error({ queue, file: name, reason }, 'drop entry moved to dead letters');
  }
}
