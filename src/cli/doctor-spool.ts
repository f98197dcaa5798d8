// `ferry doctor`'s look at the spool: layout, modes, one mount, owner, and files the daemon could not read.
// Only looks: the spool is opened inspect-only (no chmod, no recovery) and the link probe leaves nothing behind.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { errno, isFerryError, messageOf } from '../errors.js';
import { listDir } from '../maildir/fsx.js';
import { SpoolLayout } from '../spool/layout.js';
import { DROP_QUEUE_BITS, allowedBits, looseBits, modeText } from '../spool/modes.js';
import { probeOneMount } from '../spool/mount-probe.js';
import { isQueueName } from '../spool/names.js';
import { describeUser, effectiveUid, sudoUser } from '../spool/owner.js';
import { Spool } from '../spool/spool.js';
import type { Check } from './doctor.js';

/** Entries looked at, at most, when searching the spool for files of another owner (a doctor run stays quick). */
const OWNER_SCAN_LIMIT = 200_000;

/** What the spool checks found, for the checks that follow (keys are checked as the spool's owner). */
export interface SpoolFindings {
  checks: Check[];
  /** The spool root's owner, when it could be seen. */
  ownerUid: number | undefined;
  /** The spool, opened inspect-only, when it opened. */
  spool: Spool | undefined;
}

/** The fix for a spool whose areas span mounts. */
const XDEV_FIX = "unmount whatever is mounted onto the spool's outbox, inbox, drop or state directories (they must share one mount); a peer's landing directory is bind-mounted out of the spool into its chroot (`ferry peer add PEER --print`), never another directory onto the spool";

/** The spool checks: `spool` (layout, modes, mount) and `spool owner` (who owns it, and every file in it). */
export async function spoolChecks(root: string, host: string): Promise<SpoolFindings> {
  const checks: Check[] = [];
  const layout = new SpoolLayout(root);
  const me = effectiveUid();
  const rootSt = await fsp.lstat(root).catch(() => undefined);
  const ownerUid = rootSt?.uid;

  let spool: Spool | undefined;
  try {
    spool = await Spool.open(root, { host, inspect: true });
  } catch (err) {
    const code = errno(err);
    const fix = isFerryError(err, 'ENOT_INIT')
      ? `create it as the daemon's user: \`sudo -u ferry ferry init --config …\` (see the README, Setting up a host)`
      : isFerryError(err, 'ESPOOL_XDEV')
        ? XDEV_FIX
        : code === 'EACCES' || code === 'EPERM'
          ? `the spool must belong to the user the daemon runs as: \`chown -R ${me === undefined ? 'ferry' : sudoUser(me)}: ${root}\` if that is you, and run every ferry command as that user`
          : 'the spool must be real directories (no symlinks) on one file system and one mount';
    checks.push({ name: 'spool', ok: false, detail: messageOf(err), fix });
    return { checks, ownerUid, spool: undefined };
  }

  // Modes: private to the owner, except what legacy drops need (see src/spool/modes.ts).
  const loose: string[] = [];
  for (const dir of layout.fixedDirs) {
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (st && looseBits(st.mode, allowedBits(layout, dir)) !== 0) loose.push(`${dir} (${modeText(st.mode)})`);
  }
  for (const q of (await listDir(layout.drop)).filter(isQueueName)) {
    const st = await fsp.lstat(layout.dropQueue(q)).catch(() => undefined);
    if (st?.isDirectory() && looseBits(st.mode, DROP_QUEUE_BITS) !== 0) loose.push(`${layout.dropQueue(q)} (${modeText(st.mode)})`);
  }
  const probe = await probeOneMount(layout).catch((err: unknown) => err);
  if (probe instanceof Error) {
    checks.push({ name: 'spool', ok: false, detail: probe.message, fix: XDEV_FIX });
  } else if (loose.length > 0) {
    checks.push({ name: 'spool', ok: false, detail: `group/other access on ${loose.join(', ')}`, fix: 'chmod 700 the directories named; only the root and drop/ may be 0710 and drop/<queue>/ 2770 (group access for legacy scripts, see the README)' });
  } else {
    const mount = (probe as { state: string; reason?: string }).state === 'ok' ? 'one file system and one mount (link probe)' : `one file system (mount not probed: ${(probe as { reason?: string }).reason ?? '?'})`;
    checks.push({ name: 'spool', ok: true, detail: `${root}: layout present, modes private, ${mount}` });
  }

  if (ownerUid !== undefined) checks.push(await ownerCheck(layout, ownerUid));
  return { checks, ownerUid, spool };
}

/** Whether the daemon (running as the owner) can work with every file: a root-made file wedges it. */
async function ownerCheck(layout: SpoolLayout, ownerUid: number): Promise<Check> {
  const owner = describeUser(ownerUid);
  const { foreign, scanned, complete } = await foreignEntries(layout, ownerUid);
  if (foreign.length > 0) {
    return {
      name: 'spool owner', ok: false,
      detail: `${foreign.length}${complete ? '' : '+'} entr${foreign.length === 1 ? 'y' : 'ies'} not owned by ${owner}, the spool's owner, which the daemon may be unable to read or move: ${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''}`,
      fix: `\`chown -R ${sudoUser(ownerUid)}: ${layout.root}\`, and run every ferry command as ${sudoUser(ownerUid)} (\`sudo -u ${sudoUser(ownerUid)} ferry …\`): ferry refuses writers of another user now`,
    };
  }
  if (ownerUid === 0) {
    return {
      name: 'spool owner', ok: true, warning: true,
      detail: `${layout.root} belongs to root: only a daemon running as root can use it (the README's unit runs it as ferry)`,
      fix: `\`chown -R ferry:ferry ${layout.root}\` unless the daemon really runs as root`,
    };
  }
  return { name: 'spool owner', ok: true, detail: `${owner} owns ${layout.root} and ${complete ? `all ${scanned}` : `the first ${scanned}`} entries in it` };
}

/** Spool entries (drop/ aside: other users' files belong there) whose owner is not the spool's. */
async function foreignEntries(layout: SpoolLayout, ownerUid: number): Promise<{ foreign: string[]; scanned: number; complete: boolean }> {
  const foreign: string[] = [];
  let scanned = 0;
  const stack = [layout.state, layout.outbox, layout.inbox, layout.landing];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      continue; // vanished meanwhile, or unreadable (the spool check reports that)
    }
    for (const e of entries) {
      if (scanned >= OWNER_SCAN_LIMIT) return { foreign, scanned, complete: false };
      scanned += 1;
      const path = join(dir, e.name);
      const st = await fsp.lstat(path).catch(() => undefined);
      if (!st) continue;
      if (st.uid !== ownerUid) {
        // A dropped file in transit (drop/<q> → outbox/<q>/new) keeps its writer's owner; readable by group, it is fine.
        const inTransit = st.isFile() && path.startsWith(`${layout.outbox}/`) && (st.mode & 0o044) !== 0;
        if (!inTransit) foreign.push(`${path} (${describeUser(st.uid)})`);
      }
      if (e.isDirectory()) stack.push(path);
    }
  }
  return { foreign, scanned, complete: true };
}
