// Proving that files can move between the spool's areas: one link(2) probe per area, nothing left behind.
//
// Comparing st_dev is not enough: a bind mount shows the same device on both sides, yet rename(2)
// and link(2) across two mounts fail with EXDEV. The honest test is to try it. A probe is a fresh
// empty dot-file in state/commits/tmp/ (swept as debris if a crash leaves it), hard-linked into
// each area whose files are renamed into or out of state/ and the outbox, then removed. Every
// reader of those directories skips dot-files, so a daemon running meanwhile never sees one.
import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { errno, FerryError } from '../errors.js';
import type { SpoolLayout } from './layout.js';

/** The name prefix of probe files, so that watchers can ignore them. */
export const PROBE_PREFIX = '.ferry-mount-probe.';

/** What a probe found: `ok`, or `unknown` when it could not be tried (no write access, read-only). */
export type ProbeResult = { state: 'ok' } | { state: 'unknown'; reason: string };

/**
 * The areas a probe links into: the queues and drop/. Not the landing directories: nothing is ever renamed or
 * linked between them and the spool's state (peers own them), so they may even be mounts of their own.
 */
export function probeTargets(layout: SpoolLayout): string[] {
  return [layout.outbox, layout.inbox, layout.drop];
}

/**
 * Throws `ESPOOL_XDEV` when a file cannot be hard-linked from state/ into one of the spool's
 * areas (a different mount, even of the same file system: renames between them would fail).
 * Resolves `unknown` when the probe cannot be made at all (e.g. no write access).
 */
export async function probeOneMount(layout: SpoolLayout): Promise<ProbeResult> {
  const name = `${PROBE_PREFIX}${process.pid}.${Math.random().toString(36).slice(2, 10)}`;
  const source = join(layout.commitsTmp, name);
  try {
    const fh = await fsp.open(source, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    await fh.close();
  } catch (err) {
    return { state: 'unknown', reason: `cannot create ${source} (${errno(err) ?? String(err)})` };
  }
  const linked: string[] = [];
  try {
    for (const dir of probeTargets(layout)) {
      const target = join(dir, name);
      try {
        await fsp.link(source, target);
        linked.push(target);
      } catch (err) {
        if (errno(err) === 'EXDEV') {
          throw new FerryError('ESPOOL_XDEV', `${dir} is on another mount than ${layout.state} (link fails with EXDEV, so renames between them would too); the spool's outbox, inbox, drop and state directories must share one mount`, { path: dir, syscall: 'link', cause: err });
        }
        return { state: 'unknown', reason: `cannot link into ${dir} (${errno(err) ?? String(err)})` };
      }
    }
    return { state: 'ok' };
  } finally {
    for (const path of [...linked, source]) await fsp.unlink(path).catch(() => undefined);
  }
}
