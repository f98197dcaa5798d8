// The shell steps that give one sending peer its own chrooted, SFTP-only login on a receiving host (`ferry peer add --print`).
//
// The shape, for peer P on receiver R with daemon user D and login L:
//   <spool>/landing/P           owner D, group L, mode 2770 (setgid: the daemon's receipts get group L)
//   <chrootBase>/P              root:root 0755, holding only landing/ (the bind mount of <spool>/landing/P)
//   <authorizedKeysDir>/L       root:root 0644, the sender's public key
//   <sshdConfigFile>            a `Match User L` block: chroot, internal-sftp with umask 0027, no forwarding, no tty
// L is a system user with its own primary group, no shell and no home; D is a member of group L.
import { defaultHostName, DEFAULT_ROOT } from '../config/config.js';
import { FerryError } from '../errors.js';

/** One step of the recipe: why it is there, and one POSIX sh command (safe to run twice). */
export interface RecipeStep {
  why: string;
  sh: string;
}

/** What to set up, and where. Every path must be absolute and plain (letters, digits, `._+-/`). */
export interface PeerRecipeOptions {
  /** The sending peer's ferry host name. Required. */
  peer: string;
  /** The login the peer uses on this host. Default `ferry-in-<peer>`. */
  login?: string;
  /** The daemon's user on this host, owner of the spool. Default `ferry`. */
  daemonUser?: string;
  /** This host's spool root. Default `/var/spool/ferry`. */
  spoolRoot?: string;
  /** Parent of the per-peer chroots: the chroot is `<chrootBase>/<peer>`. Default `/srv/ferry`. */
  chrootBase?: string;
  /** The sshd config file holding this peer's Match block. Default `/etc/ssh/sshd_config.d/ferry-<peer>.conf`. */
  sshdConfigFile?: string;
  /** Root-owned directory of one authorized_keys file per login. Default `/etc/ssh/ferry-authorized_keys`. */
  authorizedKeysDir?: string;
  /** The sender's public key line (`ssh-ed25519 AAAA… comment`). Default none: a placeholder comment is written instead. */
  publicKey?: string;
  /** Append the bind mount to /etc/fstab (idempotently). Default true. */
  fstab?: boolean;
  /** Check the sshd config and reload sshd at the end. Default true. */
  reloadSshd?: boolean;
  /** A disk quota for the login, in bytes (needs user quotas on the spool's filesystem). Default none. */
  quotaBytes?: number;
  /** With `quotaBytes`: the most files the login may own. Default 0 (no limit). */
  quotaFiles?: number;
  /** This receiving host's ferry name, as the sender's `[peers.*]` table names it. Default: this machine's host name. */
  receiver?: string;
  /** The address the sender connects to (printed in the sender snippet). Default: `receiver`. */
  receiverHost?: string;
  /** The sshd port the sender connects to (printed in the sender snippet). Default 22. */
  sshPort?: number;
  /** The sender's SSH identity (printed in the sender snippet). Default `/etc/ferry/ssh/id_ed25519`. */
  identity?: string;
  /** The sender's known_hosts file (printed in the sender snippet). Default `/etc/ferry/ssh/known_hosts`. */
  knownHosts?: string;
}

/** The options with every default applied and every value checked. */
export type ResolvedPeerRecipe = Required<Omit<PeerRecipeOptions, 'publicKey' | 'quotaBytes'>> & Pick<PeerRecipeOptions, 'publicKey' | 'quotaBytes'> & {
  /** `<chrootBase>/<peer>`. */
  chroot: string;
  /** `<spoolRoot>/landing/<peer>`. */
  landingDir: string;
};

/** The landing directory as the peer's chrooted login sees it: the sender's `remote_root`. */
export const REMOTE_ROOT = '/landing';

const PEER_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// Portable Linux user names (what useradd accepts without --badname), at most 32 characters (utmp's limit).
const LOGIN_RE = /^[a-z_][a-z0-9._-]{0,31}$/;
const PATH_RE = /^\/[A-Za-z0-9._+/-]*$/;
const SAFE_WORD = /^[A-Za-z0-9._/%+=:,@-]+$/;
const KEY_TYPE_RE = /^(ssh-|ecdsa-|sk-)/;

/** Quotes `s` for POSIX sh (bare when it holds no special character). */
export function shq(s: string): string {
  return SAFE_WORD.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function usage(message: string): never {
  throw new FerryError('EUSAGE', message);
}

function checkPath(what: string, p: string): string {
  if (!PATH_RE.test(p) || p.split('/').includes('..')) usage(`${what} ${JSON.stringify(p)} is invalid; expected an absolute path of letters, digits, '.', '_', '+', '-' and '/', without '..'`);
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function checkLogin(what: string, name: string): string {
  if (!LOGIN_RE.test(name)) usage(`${what} ${JSON.stringify(name)} is not a valid Linux user name; expected 1 to 32 lower-case letters, digits, '.', '_' or '-', starting with a letter or '_'`);
  return name;
}

function checkCount(what: string, n: number, min: number, max: number): number {
  if (!Number.isSafeInteger(n) || n < min || n > max) usage(`${what} expects a whole number from ${min} to ${max}, got ${JSON.stringify(n)}`);
  return n;
}

/** Applies the defaults and validates every field; throws EUSAGE with one sentence otherwise. */
export function resolvePeerRecipe(opts: PeerRecipeOptions): ResolvedPeerRecipe {
  const peer = opts.peer;
  if (typeof peer !== 'string' || !PEER_RE.test(peer)) usage(`peer name ${JSON.stringify(peer)} is invalid; expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  const login = opts.login ?? `ferry-in-${peer}`;
  if (opts.login === undefined && !LOGIN_RE.test(login)) usage(`the default login ${JSON.stringify(login)} is not a valid Linux user name (at most 32 lower-case characters); pass --login NAME`);
  const receiver = opts.receiver ?? defaultHostName();
  if (!PEER_RE.test(receiver)) usage(`receiver name ${JSON.stringify(receiver)} is invalid; expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  const receiverHost = opts.receiverHost ?? receiver;
  if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$/.test(receiverHost)) usage(`receiver host ${JSON.stringify(receiverHost)} is invalid; expected a host name or an IP address`);
  const publicKey = opts.publicKey?.trim();
  if (publicKey !== undefined && (publicKey.length === 0 || /[\r\n\0]/.test(publicKey))) usage('the public key must be one non-empty line (the contents of the sender\'s id_ed25519.pub)');
  const spoolRoot = checkPath('spool root', opts.spoolRoot ?? DEFAULT_ROOT);
  const chrootBase = checkPath('chroot base', opts.chrootBase ?? '/srv/ferry');
  if (chrootBase.startsWith('/tmp/') || chrootBase === '/tmp') usage(`chroot base ${chrootBase} is under /tmp, which sshd refuses (every parent of a chroot must be root-owned and not group/other-writable)`);
  return {
    peer,
    login: checkLogin('login', login),
    daemonUser: checkLogin('daemon user', opts.daemonUser ?? 'ferry'),
    spoolRoot,
    chrootBase,
    sshdConfigFile: checkPath('sshd config file', opts.sshdConfigFile ?? `/etc/ssh/sshd_config.d/ferry-${peer}.conf`),
    authorizedKeysDir: checkPath('authorized keys directory', opts.authorizedKeysDir ?? '/etc/ssh/ferry-authorized_keys'),
    publicKey,
    fstab: opts.fstab ?? true,
    reloadSshd: opts.reloadSshd ?? true,
    quotaBytes: opts.quotaBytes === undefined ? undefined : checkCount('--quota', opts.quotaBytes, 1024, Number.MAX_SAFE_INTEGER),
    quotaFiles: checkCount('quota files', opts.quotaFiles ?? 0, 0, 2 ** 32 - 1),
    receiver,
    receiverHost,
    sshPort: checkCount('--ssh-port', opts.sshPort ?? 22, 1, 65535),
    identity: checkPath('identity', opts.identity ?? '/etc/ferry/ssh/id_ed25519'),
    knownHosts: checkPath('known_hosts', opts.knownHosts ?? '/etc/ferry/ssh/known_hosts'),
    chroot: `${chrootBase}/${peer}`,
    landingDir: `${spoolRoot}/landing/${peer}`,
  };
}

/** The `Match User` block for the login, exactly as the recipe writes it. */
export function sshdMatchBlock(r: ResolvedPeerRecipe): string {
  return [
    `# ferry: the SFTP-only, chrooted login of peer ${r.peer} (written by \`ferry peer add ${r.peer} --print\`)`,
    `Match User ${r.login}`,
    `    AuthorizedKeysFile ${r.authorizedKeysDir}/%u`,
    `    ChrootDirectory ${r.chroot}`,
    // umask 0027: uploads are 0640, readable by the daemon through group <login>, by no one else.
    `    ForceCommand internal-sftp -u 0027 -d ${REMOTE_ROOT}`,
    '    PasswordAuthentication no',
    '    KbdInteractiveAuthentication no',
    '    DisableForwarding yes',
    '    AllowTcpForwarding no',
    '    AllowAgentForwarding no',
    '    AllowStreamLocalForwarding no',
    '    X11Forwarding no',
    '    PermitTTY no',
    '    PermitTunnel no',
    '',
  ].join('\n');
}

/** The key line as authorized: `restrict` is prefixed unless the line already carries options. */
function authorizedLine(publicKey: string): string {
  return KEY_TYPE_RE.test(publicKey) ? `restrict ${publicKey}` : publicKey;
}

/**
 * The steps, in order, that set up peer `opts.peer`'s login on this (receiving) host. Run them as root. Every step
 * is idempotent: a second run changes nothing. Throws EUSAGE when a name or path is invalid.
 */
export function peerRecipe(opts: PeerRecipeOptions): RecipeStep[] {
  const r = resolvePeerRecipe(opts);
  const L = shq(r.login);
  const landing = shq(r.landingDir);
  const mnt = shq(`${r.chroot}/landing`);
  const keyFile = shq(`${r.authorizedKeysDir}/${r.login}`);
  const fstabLine = `${r.landingDir} ${r.chroot}/landing none bind 0 0`;
  const keyLine = r.publicKey === undefined ? `# paste the public key of ${r.peer}'s ferry identity here, as one line starting with "restrict "` : authorizedLine(r.publicKey);
  const cfgDir = r.sshdConfigFile.slice(0, r.sshdConfigFile.lastIndexOf('/')) || '/';
  const steps: RecipeStep[] = [
    {
      why: `The spool's landing directory must exist already, owned by ${r.daemonUser} (\`sudo -u ${r.daemonUser} ferry init\` makes it).`,
      sh: `[ -d ${shq(`${r.spoolRoot}/landing`)} ] || { echo ${shq(`${r.spoolRoot}/landing is missing: run \`sudo -u ${r.daemonUser} ferry init\` first`)} >&2; exit 1; }`,
    },
    { why: `The login's own group ${r.login}: the group of its uploads and of the daemon's receipts.`, sh: `getent group ${L} >/dev/null || groupadd --system ${L}` },
    {
      why: `The login ${r.login}: a system user with no shell and no home, so it can do nothing but what sshd's Match block allows.`,
      sh: `getent passwd ${L} >/dev/null || useradd --system --gid ${L} --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${L}`,
    },
    { why: 'Unlock it without a password: with `UsePAM no`, sshd refuses a locked account (useradd --system makes one).', sh: `usermod -p '*' ${L}` },
    {
      why: `The daemon user ${r.daemonUser} joins group ${r.login}, so it can read the uploads (mode 0640). Restart the daemon afterwards: a running process keeps its old groups.`,
      sh: `usermod -a -G ${L} ${shq(r.daemonUser)}`,
    },
    {
      why: `Refuse a symlink in place of ${r.peer}'s landing directory: chown and chmod would follow it.`,
      sh: `[ ! -L ${landing} ] || { echo ${shq(`${r.landingDir} is a symlink; remove it`)} >&2; exit 1; }`,
    },
    {
      why: `${r.peer}'s landing directory: ${r.daemonUser} owns it, group ${r.login} may write it, no one else may enter. Setgid (2770), so the daemon's files there get group ${r.login} and the peer can read its receipts.`,
      sh: `install -d -o ${shq(r.daemonUser)} -g ${L} -m 2770 ${landing}`,
    },
    {
      why: `The chroot ${r.chroot}: sshd requires it and every parent to be root-owned and not group/other-writable.`,
      sh: `install -d -o root -g root -m 0755 ${shq(r.chrootBase)} ${shq(r.chroot)}`,
    },
    {
      // Guarded: once the bind mount is there, install would chown the peer's landing directory to root.
      why: 'The mount point in the chroot: its only entry, an empty root-owned directory (skipped once mounted).',
      sh: `mountpoint -q ${mnt} || install -d -o root -g root -m 0755 ${mnt}`,
    },
    {
      why: `Show ${r.peer}'s landing directory, and nothing else, as /landing inside the chroot. This direction keeps the directory in the spool, where the daemon pins it; the chroot only shows it.`,
      sh: `mountpoint -q ${mnt} || mount --bind ${landing} ${mnt}`,
    },
  ];
  if (r.fstab) {
    steps.push({ why: 'Make the bind mount survive a reboot.', sh: `grep -qxF ${shq(fstabLine)} /etc/fstab || printf '%s\\n' ${shq(fstabLine)} >> /etc/fstab` });
  }
  steps.push(
    {
      why: 'The authorized_keys directory: root-owned, outside the spool and the chroot, so neither the peer nor the daemon can add a key.',
      sh: `install -d -o root -g root -m 0755 ${shq(r.authorizedKeysDir)}`,
    },
    { why: `The key file of ${r.login} (root:root 0644, as StrictModes wants).`, sh: `[ -f ${keyFile} ] || install -o root -g root -m 0644 /dev/null ${keyFile}` },
    {
      why:
        r.publicKey === undefined
          ? `No --public-key was given: a placeholder comment is written. Replace it with the sender's key (its /etc/ferry/ssh/id_ed25519.pub, prefixed with "restrict ").`
          : `Authorize the sender's key, with \`restrict\` (no pty, no forwarding, whatever sshd's config says).`,
      sh: `grep -qxF -- ${shq(keyLine)} ${keyFile} || printf '%s\\n' ${shq(keyLine)} >> ${keyFile}`,
    },
    { why: `The directory of the sshd config file.`, sh: `[ -d ${shq(cfgDir)} ] || install -d -o root -g root -m 0755 ${shq(cfgDir)}` },
    {
      // Written last but one: the login becomes reachable only once its chroot and mount are in place.
      why: `sshd's Match block for ${r.login}: SFTP only (internal-sftp, umask 0027, starting in /landing), chrooted, key only, no forwarding, no tty.\nDebian and Ubuntu include sshd_config.d/*.conf at the top of sshd_config; elsewhere add that Include as its first line.`,
      sh: `cat > ${shq(r.sshdConfigFile)} <<'EOF'\n${sshdMatchBlock(r)}EOF`,
    },
  );
  if (r.quotaBytes !== undefined) {
    const blocks = Math.ceil(r.quotaBytes / 1024);
    steps.push({
      why: `Optional: a disk quota of ${r.quotaBytes} bytes for ${r.login} (needs the usrquota mount option on the spool's filesystem), so one peer cannot fill the disk.`,
      sh: `setquota -u ${L} 0 ${blocks} 0 ${r.quotaFiles} "$(df -P ${landing} | awk 'NR==2 {print $6}')"`,
    });
  }
  if (r.reloadSshd) {
    steps.push({ why: 'Check the whole sshd config, then reload sshd (the unit is `ssh` on Debian and Ubuntu, `sshd` elsewhere).', sh: 'sshd -t && (systemctl reload ssh || systemctl reload sshd)' });
  }
  return steps;
}

/** A TOML string (basic string, escaped). */
function tomlString(s: string): string {
  return JSON.stringify(s);
}

/** The `[peers.<receiver>]` table the sender puts in its ferry.toml to ship to this host through the login. */
export function senderSnippet(opts: PeerRecipeOptions): string {
  const r = resolvePeerRecipe(opts);
  const key = /^[A-Za-z0-9_-]+$/.test(r.receiver) ? r.receiver : tomlString(r.receiver);
  return [
    `[peers.${key}]`,
    `ssh = ${tomlString(`${r.login}@${r.receiverHost}:${r.sshPort}`)}`,
    `identity = ${tomlString(r.identity)}`,
    `known_hosts = ${tomlString(r.knownHosts)}`,
    `remote_root = ${tomlString(REMOTE_ROOT)}   # the landing directory as the chrooted login sees it`,
    '',
  ].join('\n');
}

/** The steps as a commented shell script: `#!/bin/sh`, `set -eu`, each step preceded by its reason. */
export function renderRecipe(steps: RecipeStep[]): string {
  const parts = ['#!/bin/sh', '# Run as root on the receiving host. Every step is safe to run twice.', 'set -eu', ''];
  for (const s of steps) parts.push(...s.why.split('\n').map((l) => `# ${l}`), s.sh, '');
  return parts.join('\n');
}
