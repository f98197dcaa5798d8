// Moving a message between two directories of one queue (new/ → lease/ on a take, lease/ → new/ or dead/ on a
// return) so that no power cut can leave it in neither.
//
// A plain rename across directories changes two directories, and each becomes durable only when it is fsynced. If
// another process fsyncs the source first (every delivery fsyncs new/, every take fsyncs lease/), the message's
// leaving is durable before its arrival, and a cut in between loses it. So a move is:
//
//   1. rename `<src>/<from>` to `<src>/.mv-<dst>-<to>` — in one directory, so durable as one step; it also decides
//      (of two consumers renaming the same new/<name>, one wins);
//   2. link it as `<dst>/<to>`, fsync `<dst>`;
//   3. unlink `<src>/.mv-…` (not synced: if a cut brings it back, it is a second link, and recovery unlinks it).
//
// At every instant the message is durably in `<src>` (under its name or the dot-name) or in `<dst>`. A process killed
// after step 1 leaves the dot-name, which {@link finishMoves} completes (link, fsync, unlink) — any process may, even
// while the mover still runs: every step tolerates having been done by the other. Dot-names are invisible to
// consumers and maildir readers.
import { promises as fsp, type Stats } from 'node:fs';
import { join } from 'node:path';
import { errno } from '../errors.js';
import { fsyncDir, listDir, lstatIfExists, renameIfExists, unlinkIfExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';

/** The subdirectories of a queue a message moves between. */
export type MoveDir = 'new' | 'lease' | 'dead';

const MOVE_PREFIX = '.mv-';
const MOVE_RE = /^\.mv-(new|lease|dead)-(.+)$/;

/**
 * Moves `<queueDir>/<src>/<from>` to `<queueDir>/<dst>/<to>` (see the file comment). Returns false when there was
 * nothing to move (another process took, returned or finished it first).
 */
export async function moveMessage(queueDir: string, src: MoveDir, from: string, dst: MoveDir, to: string): Promise<boolean> {
  const parked = join(queueDir, src, `${MOVE_PREFIX}${dst}-${to}`);
  if (!(await renameIfExists(join(queueDir, src, from), parked))) return false;
  crashPoint('move.after-decide');
  const st = await lstatIfExists(parked);
  await dropFinishedCounterparts(queueDir, parked, st, src);
  return (await finish(queueDir, parked, st, dst, to)) === 'moved';
}

/**
 * Completes every move a killed process (or a power cut) left half done in `<queueDir>/<src>/`; returns how many.
 * Safe beside a live mover. `names`: a listing of that directory the caller has already made.
 */
export async function finishMoves(queueDir: string, src: MoveDir, names?: readonly string[]): Promise<number> {
  let n = 0;
  for (const name of names ?? (await listDir(join(queueDir, src)))) {
    const m = MOVE_RE.exec(name);
    if (!m) continue;
    const parked = join(queueDir, src, name);
    const dst = m[1] as MoveDir;
    const to = m[2] as string;
    const st = await lstatIfExists(parked);
    if (await superseded(queueDir, parked, st, src, dst, to)) continue;
    await dropFinishedCounterparts(queueDir, parked, st, src);
    if ((await finish(queueDir, parked, st, dst, to)) === 'moved') n += 1;
  }
  return n;
}

/**
 * A message that arrived in `<src>` by a move whose parked name is not unlinked yet (its mover is between steps 2 and
 * 3, or was killed there) is one file with two names. Before it moves on, that parked name goes, durably — after this
 * move's own step 1 is durable (else a cut could find it in neither directory): otherwise a cut could bring the
 * parked name back after this message was taken and committed, and recovery would move it in again.
 */
async function dropFinishedCounterparts(queueDir: string, parked: string, st: Stats | undefined, src: MoveDir): Promise<void> {
  if (st === undefined || st.nlink < 2) return;
  let srcSynced = false;
  for (const other of ['new', 'lease', 'dead'] as const) {
    if (other === src) continue;
    for (const name of await listDir(join(queueDir, other))) {
      if (!name.startsWith(`${MOVE_PREFIX}${src}-`)) continue;
      const counterpart = join(queueDir, other, name);
      const cst = await lstatIfExists(counterpart);
      if (cst === undefined || cst.ino !== st.ino || cst.dev !== st.dev) continue;
      if (!srcSynced) await fsyncDir(join(queueDir, src));
      srcSynced = true;
      await unlinkIfExists(counterpart);
      await fsyncDir(join(queueDir, other));
    }
  }
}

/**
 * A parked name whose file lives on under another name while its target is missing: the move was done and the
 * message moved on (a lease renamed when its transaction marked it, a message taken again after its return). The
 * parked name is only what a power cut brought back: it goes (every directory of the queue synced first, so that
 * the other name is durable wherever it is), never linked in again.
 */
async function superseded(queueDir: string, parked: string, st: Stats | undefined, src: MoveDir, dst: MoveDir, to: string): Promise<boolean> {
  if (st === undefined || !st.isFile() || st.nlink < 2) return false;
  if ((await lstatIfExists(join(queueDir, dst, to))) !== undefined) return false;
  // Only when the other name is a message's own name: another parked name (a move of it under way in another
  // process) is left to that move and to dropFinishedCounterparts.
  let ownName = false;
  for (const d of ['new', 'lease', 'dead'] as const) {
    for (const name of await listDir(join(queueDir, d))) {
      if (name.startsWith(MOVE_PREFIX)) continue;
      const o = await lstatIfExists(join(queueDir, d, name));
      if (o !== undefined && o.ino === st.ino && o.dev === st.dev) ownName = true;
    }
  }
  if (!ownName) return false;
  for (const d of ['new', 'lease', 'dead'] as const) await fsyncDir(join(queueDir, d)).catch(() => undefined);
  await unlinkIfExists(parked);
  await fsyncDir(join(queueDir, src));
  return true;
}

async function finish(queueDir: string, parked: string, st: Stats | undefined, dst: MoveDir, to: string): Promise<'moved' | 'gone' | 'kept'> {
  const target = join(queueDir, dst, to);
  if (st !== undefined && !st.isFile()) {
    // Not a message (a directory, FIFO or link planted in the queue, which cannot or must not be hard-linked): moved
    // by a plain rename, on its way to dead/ with a reason.
    return (await renameIfExists(parked, target)) ? 'moved' : 'gone';
  }
  try {
    await fsp.link(parked, target);
  } catch (err) {
    // The parked name gone: another process finished this move (it unlinks only after its fsync of `dst`).
    if (errno(err) === 'ENOENT') return (await lstatIfExists(target)) !== undefined ? 'moved' : 'gone';
    if (errno(err) !== 'EEXIST') throw err;
    // Linked already (by the mover, or by an earlier recovery): only then may the parked name go.
    if ((await sameFile(parked, target)) === 'different') return 'kept';
  }
  crashPoint('move.after-link');
  await fsyncDir(join(queueDir, dst));
  crashPoint('move.after-sync');
  await unlinkIfExists(parked);
  return 'moved';
}

/**
 * Before a taken message is removed for good (a commit): the parked name of its take in new/ must be durably gone
 * (step 3 above is not synced), or a power cut could bring it back with the message deleted, to be taken again.
 */
export async function syncWayIn(queueDir: string): Promise<void> {
  await fsyncDir(join(queueDir, 'new'));
}

/** Whether `a` and `b` are one file (a gone `a` counts as the same: another process finished the move). */
async function sameFile(a: string, b: string): Promise<'same' | 'different'> {
  const sa = await lstatIfExists(a);
  if (!sa) return 'same';
  const sb = await lstatIfExists(b);
  return sb !== undefined && sb.ino === sa.ino && sb.dev === sa.dev ? 'same' : 'different';
}
