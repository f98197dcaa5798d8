// The commit point of a transaction that both sends and takes, in one directory.
//
// Such a commit file leaves state/commits/tmp/ for state/commits/new/; a plain rename changes both directories, each
// durable only when fsynced, and another transaction may fsync tmp/ first. A power cut could then find the file in
// neither (the sends lost while the marked takes read as committed and were removed) or in both (and once the
// acceptor had shipped the new/ one, the tmp/ one read as undecided: the takes returned, processed twice). So:
//
//   1. rename tmp/<txid> to tmp/<txid>.committed-<name>: the decision, in tmp/ alone (a reclaimer's abort is a rename
//      of the same tmp/<txid> to <txid>.aborted: one of the two wins);
//   2. link it as new/<name>, fsync new/;
//   3. unlink the parked name (made durable by the commit's fsync of tmp/ that follows).
//
// Whatever a cut keeps, tmp/ says "undecided" only while nothing is in new/ (a tmp/<txid> that is a second link of a
// commit file is committed), and a parked name is finished by recovery. The acceptor, shipping a commit file that
// still has a second link in tmp/, removes that link durably first, so that no parked name outlives its shipped file.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { errno } from '../errors.js';
import { fsyncDir, listDir, lstatIfExists, lstatIfExistsSync, unlinkIfExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';
import type { SpoolLayout } from '../spool/layout.js';

const COMMITTED_RE = /^(.+)\.committed-([^/]+)$/;

/** The parked name of transaction `txid`'s commit file on its way to commits/new/<name>. */
export function committedName(txid: string, name: string): string {
  return `${txid}.committed-${name}`;
}

/** The transaction and commits/new/ name of a parked commit file, or undefined for any other tmp/ name. */
export function parseCommitted(entry: string): { txid: string; name: string } | undefined {
  const m = COMMITTED_RE.exec(entry);
  return m ? { txid: m[1] as string, name: m[2] as string } : undefined;
}

/** The parked commit file of `txid` in commits/tmp/, if there is one. */
export async function findCommitted(layout: SpoolLayout, txid: string): Promise<string | undefined> {
  return (await listDir(layout.commitsTmp)).find((e) => parseCommitted(e)?.txid === txid);
}

/**
 * Steps 2 and 3 for the parked `entry` (any process may: each step tolerates the other having done it). `syncTmp`:
 * also make the parked name's removal durable (recovery; a committer syncs tmp/ itself right after).
 */
export async function finishCommitted(layout: SpoolLayout, entry: string, syncTmp: boolean): Promise<void> {
  const parsed = parseCommitted(entry);
  if (!parsed) throw new Error(`${entry} is not a parked commit file`);
  const parked = join(layout.commitsTmp, entry);
  try {
    await fsp.link(parked, join(layout.commitsNew, parsed.name));
  } catch (err) {
    // ENOENT: finished by another process (recovery, an accept pass), which synced new/ before its unlink; nothing else
    // removes a parked name (the tmp/ sweep skips them).
    if (errno(err) === 'ENOENT') return;
    if (errno(err) !== 'EEXIST') throw err;
  }
  await fsyncDir(layout.commitsNew);
  crashPoint('txn.after-link');
  await unlinkIfExists(parked);
  if (syncTmp) await fsyncDir(layout.commitsTmp);
}

/** Finishes every parked commit in commits/tmp/ (recovery, and each accept pass); returns how many. */
export async function finishParkedCommits(layout: SpoolLayout): Promise<number> {
  let n = 0;
  for (const entry of await listDir(layout.commitsTmp)) {
    if (parseCommitted(entry) === undefined) continue;
    await finishCommitted(layout, entry, true);
    n += 1;
  }
  return n;
}

/**
 * Before the acceptor removes (ships or dead-letters) the commit file at `path`: when it has more than one link, its
 * other names in commits/tmp/ (a parked name, or the tmp/<txid> a cut brought back) go first, durably, so that none
 * is read later as a commit still to make or as an undecided transaction. False when the file is gone.
 */
export async function dropTmpLinks(layout: SpoolLayout, path: string): Promise<boolean> {
  const file = lstatIfExistsSync(path);
  if (file === undefined) return false;
  if (file.nlink < 2) return true;
  let dropped = false;
  for (const e of await listDir(layout.commitsTmp)) {
    const p = join(layout.commitsTmp, e);
    const st = await lstatIfExists(p);
    if (st === undefined || st.ino !== file.ino || st.dev !== file.dev || !st.isFile()) continue;
    if (await unlinkIfExists(p)) dropped = true;
  }
  if (dropped) await fsyncDir(layout.commitsTmp);
  return true;
}
