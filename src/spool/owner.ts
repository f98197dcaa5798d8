// Who owns the spool, and refusing writers that are someone else: their files would wedge the daemon.
import { readFileSync } from 'node:fs';
import { FerryError } from '../errors.js';

/** The name of `uid` from /etc/passwd, or undefined (no such entry, no such file). */
export function userName(uid: number): string | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && Number(f[2]) === uid && f[2] !== '') return f[0];
    }
  } catch {
    // no passwd file: fall back to the number
  }
  return undefined;
}

/** `uid 995 (ferry)`, or `uid 995` when the uid has no name. */
export function describeUser(uid: number): string {
  const name = userName(uid);
  return name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
}

/** The user to name in `sudo -u <user>`: its name, else `#uid` (sudo's syntax for a bare uid). */
export function sudoUser(uid: number): string {
  return userName(uid) ?? `#${uid}`;
}

/** This process's effective uid, or undefined on a platform without uids. */
export function effectiveUid(): number | undefined {
  return process.geteuid?.();
}

/**
 * Throws `ESPOOL_OWNER` when this process's effective uid is not `ownerUid`. Everything a writer
 * creates belongs to its euid with mode 0600: a file written by root (or anyone else) into a spool
 * the daemon runs as `ferry` is unreadable to the daemon and stops every accept pass.
 */
export function assertSpoolOwner(root: string, ownerUid: number): void {
  const euid = effectiveUid();
  if (euid === undefined || euid === ownerUid) return;
  throw new FerryError('ESPOOL_OWNER', `spool ${root} belongs to ${describeUser(ownerUid)} but this command runs as ${describeUser(euid)}, and the daemon could not read what it writes; run it as the owner: \`sudo -u ${sudoUser(ownerUid)} ferry …\``, { path: root });
}
