// `ferry doctor` on a receiver: is one sending peer's confined login in place (landing dir, login, group, chroot, bind mount, sshd's own view)?
import { execFile } from 'node:child_process';
import { existsSync, type Stats } from 'node:fs';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_ROOT } from '../config/config.js';

const execFileP = promisify(execFile);

/** One doctor check: the same shape `ferry doctor` prints. */
export interface Check {
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** How to fix it (on failure): the exact command. */
  fix?: string;
  /** A warning does not fail the run. */
  warning?: boolean;
}

/** What to check. */
export interface InboundCheckOptions {
  /** The sending peer's ferry host name. Required. */
  peer: string;
  /** This host's spool root. Default `/var/spool/ferry`. */
  spoolRoot?: string;
  /** The peer's login on this host. Default `ferry-in-<peer>`. */
  login?: string;
  /** Parent of the per-peer chroots (the chroot is `<chrootBase>/<peer>`). Default `/srv/ferry`. */
  chrootBase?: string;
  /** The daemon's uid. Default: the owner of the spool root. */
  daemonUid?: number;
  /** The sshd config `sshd -T` reads (`-f`). Default: sshd's own. */
  sshdConfig?: string;
  /** The sshd binary. Default `/usr/sbin/sshd`. */
  sshdPath?: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; shell: string }
interface GroupEntry { name: string; gid: number; members: string[] }

/** /etc/passwd, parsed (name:x:uid:gid:gecos:home:shell). */
async function readPasswd(): Promise<PasswdEntry[]> {
  return (await readFile('/etc/passwd', 'utf8')).split('\n').filter((l) => l.includes(':')).map((l) => {
    const f = l.split(':');
    return { name: f[0] ?? '', uid: Number(f[2]), gid: Number(f[3]), shell: f[6] ?? '' };
  });
}

/** /etc/group, parsed (name:x:gid:member,member). */
async function readGroups(): Promise<GroupEntry[]> {
  return (await readFile('/etc/group', 'utf8')).split('\n').filter((l) => l.includes(':')).map((l) => {
    const f = l.split(':');
    return { name: f[0] ?? '', gid: Number(f[2]), members: (f[3] ?? '').split(',').filter((m) => m.length > 0) };
  });
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');
const tryLstat = (p: string): Promise<Stats | undefined> => lstat(p).catch(() => undefined);

/** The settings `sshd -T` reports for the login (lower-case keys), or an error message. */
async function sshdView(sshdPath: string, login: string, config: string | undefined): Promise<Map<string, string> | string> {
  try {
    const args = ['-T', '-C', `user=${login},host=localhost,addr=127.0.0.1`, ...(config === undefined ? [] : ['-f', config])];
    const { stdout } = await execFileP(sshdPath, args);
    const out = new Map<string, string>();
    for (const line of stdout.split('\n')) {
      const i = line.indexOf(' ');
      if (i > 0 && !out.has(line.slice(0, i))) out.set(line.slice(0, i), line.slice(i + 1).trim());
    }
    return out;
  } catch (err) {
    return String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim().split('\n')[0] ?? 'sshd -T failed';
  }
}

/**
 * Checks, on the receiving host, that `opts.peer`'s login is confined as `ferry peer add --print` sets it up: the
 * landing directory (owner, group, mode 2770), the login (shell, own primary group), the daemon user's membership of
 * its group, the chroot and its parents (root-owned, not group/other-writable), the bind mount, and — as root, when
 * sshd is installed — what sshd itself would apply to the login. Every failure names the command that fixes it.
 */
export async function inboundChecks(opts: InboundCheckOptions): Promise<Check[]> {
  const { peer } = opts;
  const spoolRoot = opts.spoolRoot ?? DEFAULT_ROOT;
  const login = opts.login ?? `ferry-in-${peer}`;
  const chroot = `${opts.chrootBase ?? '/srv/ferry'}/${peer}`;
  const landing = `${spoolRoot}/landing/${peer}`;
  const mountPoint = `${chroot}/landing`;
  const recipe = `run \`ferry peer add ${peer} --print\` and follow it`;
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string, fix: string) => checks.push(ok ? { name, ok, detail } : { name, ok, detail, fix });

  const [passwd, groups] = await Promise.all([readPasswd(), readGroups()]);
  const daemonUid = opts.daemonUid ?? (await tryLstat(spoolRoot))?.uid ?? process.getuid?.() ?? -1;
  const daemonUser = passwd.find((p) => p.uid === daemonUid)?.name ?? String(daemonUid);
  const user = passwd.find((p) => p.name === login);
  const group = groups.find((g) => g.name === login);

  // The login: a user of its own group, with no shell.
  add(`login ${login}`, user !== undefined, user ? `uid ${user.uid}` : 'no such user', recipe);
  if (user !== undefined) {
    add(`login ${login} shell`, /\/(nologin|false)$/.test(user.shell), `shell ${user.shell || '(none)'}`, `usermod -s /usr/sbin/nologin ${login}`);
    const own = group !== undefined && user.gid === group.gid;
    const primary = groups.find((g) => g.gid === user.gid)?.name ?? String(user.gid);
    add(`login ${login} group`, own, `primary group ${primary}`, group === undefined ? `groupadd --system ${login} && usermod -g ${login} ${login}` : `usermod -g ${login} ${login}`);
  }
  if (group !== undefined) {
    const member = group.members.includes(daemonUser);
    add(`daemon user in group ${login}`, member, member ? `${daemonUser} is a member` : `${daemonUser} is not a member: it cannot read the peer's uploads`, `usermod -a -G ${login} ${daemonUser}, then restart the daemon`);
  }

  // The landing directory: a real directory, daemon-owned, group <login>, 2770.
  const st = await tryLstat(landing);
  if (st === undefined || !st.isDirectory()) {
    const what = st === undefined ? 'missing' : st.isSymbolicLink() ? 'a symlink' : 'not a directory';
    add(`landing/${peer}`, false, `${landing} is ${what}`, `${st === undefined ? '' : `rm ${landing}; `}install -d -o ${daemonUser} -g ${login} -m 2770 ${landing}`);
  } else {
    add(`landing/${peer} owner`, st.uid === daemonUid, `owner uid ${st.uid} (the daemon's is ${daemonUid})`, `chown ${daemonUser} ${landing}`);
    add(`landing/${peer} group`, group !== undefined && st.gid === group.gid, `group gid ${st.gid} (${login}'s is ${group?.gid ?? 'missing'})`, `chgrp ${login} ${landing}`);
    const mode = st.mode & 0o7777;
    const why = [...(mode & 0o007 ? ["other users can reach the peer's uploads"] : []), ...(mode & 0o2000 ? [] : ['not setgid, so the peer cannot read its receipts'])];
    add(`landing/${peer} mode`, mode === 0o2770, `mode ${octal(mode)}${why.length > 0 ? `: ${why.join('; ')}` : ''}`, `chmod 2770 ${landing}`);
  }

  // The chroot and every parent: root-owned, not group/other-writable (sshd refuses the login otherwise).
  const bad: string[] = [];
  for (let p = chroot; ; p = dirname(p)) {
    const s = await tryLstat(p);
    if (s === undefined) bad.push(`${p} is missing`);
    else if (!s.isDirectory()) bad.push(`${p} is ${s.isSymbolicLink() ? 'a symlink' : 'not a directory'}`);
    else if (s.uid !== 0 || (s.mode & 0o022) !== 0) bad.push(`${p} is uid ${s.uid} mode ${octal(s.mode)}`);
    if (p === '/') break;
  }
  const badPath = bad[0]?.split(' ')[0] ?? chroot;
  add(`chroot ${chroot}`, bad.length === 0, bad.length === 0 ? 'it and every parent are root-owned, not group/other-writable' : bad.join('; '), bad[0]?.endsWith('missing') ? recipe : `chown root:root ${badPath} && chmod go-w ${badPath}`);
  const entries = await readdir(chroot).catch(() => undefined);
  if (entries !== undefined && !(entries.length === 1 && entries[0] === 'landing')) {
    checks.push({ name: `chroot ${chroot} contents`, ok: false, warning: true, detail: `holds ${entries.join(', ') || 'nothing'}; expected only landing`, fix: `leave only landing/ in ${chroot}` });
  }

  // The bind mount: <chroot>/landing is the landing directory itself.
  const [a, b] = await Promise.all([stat(mountPoint).catch(() => undefined), stat(landing).catch(() => undefined)]);
  const same = a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
  add(`bind mount ${mountPoint}`, same, same ? `shows ${landing}` : `${mountPoint} is ${a === undefined ? 'missing' : 'not the landing directory'}`, `mount --bind ${landing} ${mountPoint} (and add \`${landing} ${mountPoint} none bind 0 0\` to /etc/fstab)`);

  // sshd's own view of the login (sshd -T needs root to read the host keys).
  const sshdPath = opts.sshdPath ?? '/usr/sbin/sshd';
  if (process.getuid?.() !== 0 || !existsSync(sshdPath)) {
    checks.push({ name: `sshd config for ${login}`, ok: true, warning: true, detail: `not checked: ${existsSync(sshdPath) ? 'needs root' : `${sshdPath} is missing`}`, fix: `run \`ferry doctor\` as root on this host` });
    return checks;
  }
  const view = await sshdView(sshdPath, login, opts.sshdConfig);
  if (typeof view === 'string') {
    add(`sshd config for ${login}`, false, `sshd -T failed: ${view}`, `sshd -t${opts.sshdConfig === undefined ? '' : ` -f ${opts.sshdConfig}`}, fix what it reports, then ${recipe}`);
    return checks;
  }
  const matchFix = `${recipe}: its Match User ${login} block belongs in sshd's config, then \`sshd -t && systemctl reload ssh\``;
  const expect = (key: string, ok: (v: string) => boolean, want: string) => {
    const v = view.get(key) ?? '(unset)';
    add(`sshd ${key} for ${login}`, ok(v), `${v}${ok(v) ? '' : `; expected ${want}`}`, matchFix);
  };
  expect('chrootdirectory', (v) => v === chroot, chroot);
  expect('forcecommand', (v) => v.startsWith('internal-sftp'), 'internal-sftp …');
  for (const key of ['allowtcpforwarding', 'permittty', 'x11forwarding']) expect(key, (v) => v === 'no', 'no');
  return checks;
}
