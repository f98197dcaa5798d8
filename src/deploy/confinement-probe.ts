// Proves over an open SFTP channel that the sender's login on a receiver is confined to its landing directory (`ferry doctor` on the sender).
import { randomBytes } from 'node:crypto';
import type { FileEntry, SFTPWrapper } from 'ssh2';

/** What {@link probeConfinement} found: `confined` is true only when every property held. */
export interface ConfinementReport {
  confined: boolean;
  /** One sentence per violated (or unproven) property, naming what the login could do. */
  findings: string[];
}

/** Paths a confined login must not reach. */
const OUTSIDE = ['/etc', '/proc', '/var', '/usr', '/home', '/root', '/tmp', '/etc/passwd'];
const SEE = 'see `ferry peer add <this host> --print` on the receiver';

type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * One SFTP call with a timer. A call answered after its timeout is not forgotten: `late` runs on its value, so a probe
 * file created too late is still removed.
 */
function call<T>(timeoutMs: number, start: (cb: (err: Error | null | undefined, value?: T) => void) => void, late?: (value: T) => void): Promise<Outcome<T>> {
  return new Promise((resolve) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      resolve({ ok: false, error: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    const cb = (err: Error | null | undefined, value?: T) => {
      if (done) {
        if (!err && late !== undefined) late(value as T);
        return;
      }
      done = true;
      clearTimeout(timer);
      resolve(err ? { ok: false, error: err.message } : { ok: true, value: value as T });
    };
    try {
      start(cb);
    } catch (err) {
      cb(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** True when the outcome is a timeout or a dropped channel: the property is unproven, not disproven. */
const noAnswer = (o: Outcome<unknown>) => !o.ok && /no answer|no response/i.test(o.error);

/** Thrown at the first unanswered call: a frozen or dropped channel would only time out again, call after call. */
class Stalled extends Error {}

/**
 * Proves, over `sftp` (a live ssh2 SFTP channel of the login a sender uses), that the login is confined: `/` holds
 * nothing but the top-level entry of `remoteRoot` (`landing` for `/landing`); /etc, /proc, /var, /usr, /home, /root,
 * /tmp and /etc/passwd cannot be stat'ed, not even by climbing out of `remoteRoot` with `..`; `remoteRoot` is its own
 * real path; nothing can be created in `/`. Each call times out after `timeoutMs`, and the first unanswered one ends the
 * probe (unproven is not confined); no probe file is left behind, even one created after its call timed out.
 */
export async function probeConfinement(sftp: SFTPWrapper, remoteRoot: string, timeoutMs = 10_000): Promise<ConfinementReport> {
  const findings: string[] = [];
  const unanswered = (what: string, o: Outcome<unknown>): false => {
    if (!noAnswer(o)) return false;
    findings.push(`${what} got no answer (${o.ok ? '' : o.error}): the login's confinement is not proven`);
    throw new Stalled();
  };
  try {
    await probe(sftp, remoteRoot, timeoutMs, findings, unanswered);
  } catch (err) {
    if (!(err instanceof Stalled)) throw err;
  }
  return { confined: findings.length === 0, findings };
}

/** The probes, in order; `unanswered` records a timeout and stops the run. */
async function probe(sftp: SFTPWrapper, remoteRoot: string, timeoutMs: number, findings: string[], unanswered: (what: string, o: Outcome<unknown>) => false): Promise<void> {
  const parts = remoteRoot.split('/').filter((p) => p.length > 0);
  const top = parts[0];

  const list = async (dir: string): Promise<Outcome<string[]>> => {
    const o = await call<FileEntry[]>(timeoutMs, (cb) => sftp.readdir(dir, cb));
    return o.ok ? { ok: true, value: o.value.map((e) => e.filename).filter((n) => n !== '.' && n !== '..').sort() } : o;
  };
  const extras = (names: string[]) => names.filter((n) => n !== top);

  // 1. `/` shows only the landing directory's top-level entry.
  const root = await list('/');
  if (!unanswered('listing /', root) && root.ok && top !== undefined && extras(root.value).length > 0) {
    const shown = extras(root.value).slice(0, 8).join(', ');
    findings.push(`the login sees ${shown} in / besides ${top}: it is not chrooted to a directory holding only ${top}; ${SEE}`);
  }

  // 2. Nothing outside is reachable, directly or by climbing out of remote_root with `..` beyond `/`.
  const beyond = `${remoteRoot.replace(/\/+$/, '')}${'/..'.repeat(parts.length + 1)}`;
  for (const p of [...OUTSIDE, `${beyond}/etc`]) {
    const o = await call(timeoutMs, (cb) => sftp.stat(p, cb));
    if (!unanswered(`stat ${p}`, o) && o.ok) findings.push(`the login can stat ${p}: it is not chrooted; ${SEE}`);
  }
  const above = await list(beyond);
  if (!unanswered(`listing ${beyond}`, above) && above.ok && top !== undefined && extras(above.value).length > 0) {
    findings.push(`the login lists ${extras(above.value).slice(0, 8).join(', ')} at ${beyond}: \`..\` leads out of its chroot; ${SEE}`);
  }

  // 3. remote_root is what it says: no symlink, no other directory behind it.
  const real = await call<string>(timeoutMs, (cb) => sftp.realpath(remoteRoot, cb));
  if (!unanswered(`realpath ${remoteRoot}`, real)) {
    if (!real.ok) findings.push(`remote_root ${remoteRoot} cannot be resolved by the login (${real.error}): the landing directory is not where the config says; ${SEE}`);
    else if (real.value !== remoteRoot) findings.push(`remote_root ${remoteRoot} resolves to ${real.value}: a symlink or another directory stands in for the landing directory; ${SEE}`);
  }

  // 4. The chroot itself is not writable (sshd requires it root-owned and not group/other-writable).
  const probe = `/.ferry-confinement-probe-${randomBytes(6).toString('hex')}`;
  const removeFile = (handle: Buffer) => sftp.close(handle, () => sftp.unlink(probe, () => undefined));
  const created = await call<Buffer>(timeoutMs, (cb) => sftp.open(probe, 'wx', { mode: 0o600 }, cb), removeFile);
  if (!unanswered(`creating ${probe}`, created) && created.ok) {
    findings.push(`the login can create files in /: its chroot is writable by it; ${SEE}`);
    await call(timeoutMs, (cb) => sftp.close(created.value, cb));
    await call(timeoutMs, (cb) => sftp.unlink(probe, cb));
  }
  const dir = `${probe}.d`;
  const made = await call<undefined>(timeoutMs, (cb) => sftp.mkdir(dir, { mode: 0o700 }, cb), () => sftp.rmdir(dir, () => undefined));
  if (!unanswered(`mkdir ${dir}`, made) && made.ok) {
    findings.push(`the login can make directories in /: its chroot is writable by it; ${SEE}`);
    await call(timeoutMs, (cb) => sftp.rmdir(dir, cb));
  }
}
