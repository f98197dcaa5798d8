// `ferry doctor`: check everything ferry depends on and say, per check, pass or fail and how to fix it.
import { promises as fsp } from 'node:fs';
import { loadConfig, routeFor, type FerryConfig } from '../config/config.js';
import { askDaemon } from '../daemon/lock.js';
import type { DaemonStatus } from '../daemon/daemon.js';
import { isFerryError, type FerryError, messageOf } from '../errors.js';
import { KeyRing, loadKeyDir } from '../keys/index.js';
import { describeUser, sudoUser } from '../spool/owner.js';
import { SftpTransport } from '../transport/index.js';
import { inboundChecks } from '../deploy/inbound-check.js';
import { probeConfinement } from '../deploy/confinement-probe.js';
import { listDir } from '../maildir/fsx.js';
import { isHostName } from '../spool/names.js';
import type { GlobalFlags } from './context.js';
import { spoolChecks } from './doctor-spool.js';
import { out, type CliIO } from './io.js';
import { now as clockNow } from '../clock.js';

/** One check's outcome. */
export interface Check {
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** How to fix it (on failure). */
  fix?: string;
  /** A warning does not fail the run. */
  warning?: boolean;
}

/** Runs every check; never throws for a failed check (that is a result). */
export async function runChecks(flags: GlobalFlags, now = clockNow()): Promise<Check[]> {
  const checks: Check[] = [];
  let config: FerryConfig;
  try {
    config = await loadConfig(flags.config, { root: flags.root, keys: flags.keys });
    checks.push({ name: 'config', ok: true, detail: config.path ? `${config.path} is valid (host ${config.host})` : `no config file; defaults (host ${config.host})` });
  } catch (err) {
    checks.push({ name: 'config', ok: false, detail: messageOf(err), fix: 'fix the named field (see the README, Configuration)' });
    return checks;
  }

  const found = await spoolChecks(config.root, config.host);
  checks.push(...found.checks);
  const { spool, ownerUid } = found;

  // Receiving: every sending peer's landing directory, login, chroot and bind mount, as `ferry peer add --print` makes them.
  if (spool) {
    for (const peer of (await listDir(spool.layout.landing)).filter((n) => isHostName(n) && n !== config.host).sort()) {
      checks.push(...(await inboundChecks({
        peer, spoolRoot: config.root, login: `${config.inbound.loginPrefix}${peer}`, chrootBase: config.inbound.chrootBase,
        ...(ownerUid === undefined ? {} : { daemonUid: ownerUid }), ...(config.inbound.sshdConfig ? { sshdConfig: config.inbound.sshdConfig } : {}),
      })));
    }
  }

  if (spool) {
    try {
      const fs = await fsp.statfs(config.root);
      const free = fs.bavail * fs.bsize;
      const pct = (fs.bavail / fs.blocks) * 100;
      const ok = pct >= 5 && free >= 256 * 2 ** 20;
      checks.push({ name: 'disk', ok, detail: `${(free / 2 ** 30).toFixed(1)} GiB free (${pct.toFixed(0)}%) under ${config.root}`, ...(ok ? {} : { fix: 'free space: a full disk stops delivery (nothing is lost, but nothing moves)' }) });
    } catch (err) {
      checks.push({ name: 'disk', ok: false, detail: messageOf(err) });
    }
    const live = (await askDaemon(config.root, 'status', 1000)) as DaemonStatus | undefined;
    checks.push(live !== undefined
      ? { name: 'daemon', ok: true, detail: `a daemon is running on this spool (pid ${live.pid})` }
      : { name: 'daemon', ok: false, warning: true, detail: 'no daemon is running on this spool', fix: 'start it: `systemctl start ferry` or `ferry daemon`' });
    if (live !== undefined) checks.push(...daemonErrorChecks(live, config.root, ownerUid));
  }

  // Keys: the directory loads, nothing is refused, and every routed peer has an unexpired pair key.
  let ring: KeyRing | undefined;
  try {
    // As the daemon would load them: it runs as the spool's owner, whoever runs doctor (root included).
    const { keys, errors } = await loadKeyDir(config.keys, ownerUid === undefined ? {} : { uid: ownerUid });
    ring = new KeyRing(keys, { dir: config.keys });
    const as = ownerUid === undefined ? '' : ` (loaded as ${describeUser(ownerUid)}, the spool's owner)`;
    checks.push(errors.length === 0
      ? { name: 'keys', ok: true, detail: `${keys.length} key(s) in ${config.keys}${as}` }
      : { name: 'keys', ok: false, detail: errors.map((e) => e.message).join('; '), fix: errors.map((e) => keyFix(e, ownerUid)).join('; ') });
  } catch (err) {
    checks.push({ name: 'keys', ok: false, detail: messageOf(err), fix: `create ${config.keys} (mode 0700) and deploy pair keys into it` });
  }
  const routed = new Set<string>();
  for (const q of config.routes.keys()) for (const d of routeFor(config, q)) if (d !== config.host) routed.add(d);
  for (const peer of config.peers.keys()) routed.add(peer);
  for (const peer of [...routed].sort()) {
    if (ring) {
      try {
        const key = ring.sealingKey(config.host, peer, new Date(now));
        const soon = key.expires !== undefined && key.expires.getTime() - now < 14 * 86_400_000;
        checks.push({ name: `key ${config.host}-${peer}`, ok: true, warning: soon, detail: `${key.id}${key.expires ? `, expires ${key.expires.toISOString()}` : ''}${soon ? ' — expires within 14 days' : ''}`, ...(soon ? { fix: 'generate and deploy the next key now' } : {}) });
      } catch (err) {
        checks.push({ name: `key ${config.host}-${peer}`, ok: false, detail: messageOf(err), fix: `ferry keys generate --peers ${config.host},${peer} and deploy it to both hosts` });
      }
    }
    const p = config.peers.get(peer);
    if (!p) continue;
    for (const [what, path] of [['identity', p.identity], ['known_hosts', p.knownHosts]] as const) {
      try {
        const st = await fsp.stat(path);
        const loose = what === 'identity' && (st.mode & 0o077) !== 0;
        checks.push({ name: `${peer} ${what}`, ok: !loose, detail: loose ? `${path} has mode 0${(st.mode & 0o777).toString(8)}` : path, ...(loose ? { fix: `chmod 600 ${path}` } : {}) });
      } catch (err) {
        checks.push({ name: `${peer} ${what}`, ok: false, detail: messageOf(err), fix: `create ${path}` });
      }
    }
    const transport = new SftpTransport({ peer, host: p.host, port: p.port, username: p.user, identity: p.identity, knownHosts: p.knownHosts, remoteRoot: p.remoteRoot, connectTimeoutMs: 8000, opTimeoutMs: 8000 });
    try {
      const probe = await transport.probe();
      const ok = probe.landingWritable;
      checks.push({ name: `${peer} ssh`, ok, detail: `reachable at ${p.host}:${p.port}, host key ${probe.fingerprint} pinned, sftp extensions ok, landing directory ${p.remoteRoot} ${ok ? 'writable' : 'NOT writable'}${probe.landingFreeBytes === undefined ? '' : `, ${(probe.landingFreeBytes / 2 ** 30).toFixed(1)} GiB free there`}`, ...(ok ? {} : { fix: `${p.remoteRoot} must be the landing directory ${peer} gave ${p.user}, as that login sees it (normally /landing): on ${peer}, run \`ferry peer add ${config.host} --print\` and follow it` }) });
      // The login must reach nothing but its landing directory: a peer that hands us more is a hole in its trust boundary.
      const confinement = await probeConfinement(await transport.sftpChannel(), p.remoteRoot, 8000);
      checks.push(confinement.confined
        ? { name: `${peer} confinement`, ok: true, detail: `${p.user}@${p.host} reaches nothing but ${p.remoteRoot}` }
        : { name: `${peer} confinement`, ok: false, detail: confinement.findings.join('; '), fix: `give this host a login on ${peer} that is chrooted to its own landing directory: on ${peer}, \`ferry peer add ${config.host} --print\` and follow it, then set peers.${peer}.ssh to that login and remote_root = "/landing"` });
    } catch (err) {
      const code = isFerryError(err) ? err.code : undefined;
      const fix = code === 'EHOSTKEY' || code === 'EHOSTKEY_UNKNOWN'
        ? `verify the fingerprint out of band, then put the peer's host key in ${p.knownHosts}`
        : code === 'ETRANSPORT_AUTH' ? `authorize ${p.identity}.pub for ${p.user} on ${peer}: append it to /etc/ssh/authorized_keys/${p.user} there (see the README, The receiving side)` : `check that ${p.host}:${p.port} runs sshd and is reachable`;
      checks.push({ name: `${peer} ssh`, ok: false, detail: messageOf(err), fix });
    } finally {
      await transport.close();
    }
  }

  // Clock: ferry orders and expires by time; a clock far in the past breaks lifetimes and key expiry.
  const year = new Date(now).getUTCFullYear();
  checks.push(year >= 2024 ? { name: 'clock', ok: true, detail: new Date(now).toISOString() } : { name: 'clock', ok: false, detail: `the clock says ${new Date(now).toISOString()}`, fix: 'set the clock (NTP)' });
  return checks;
}

/** How to fix one refused key file or directory. */
function keyFix(e: FerryError, ownerUid: number | undefined): string {
  const user = ownerUid === undefined ? 'ferry' : sudoUser(ownerUid);
  switch (e.code) {
    case 'EKEYOWNER': return `\`chown ${user}: ${e.path ?? '<file>'}\` (keys must belong to the daemon's user; deploy with rsync --chown=${user}:${user})`;
    case 'EKEYPERM': return `\`chmod go-rwx ${e.path ?? '<file>'}\` (0600 files, 0700 directory; deploy with rsync --chmod=F600,D700)`;
    case 'EKEYFORMAT': return `fix or remove ${e.path ?? 'the file named'}`;
    default: return `see the message about ${e.path ?? 'the key directory'}`;
  }
}

/** What a running daemon reports as failing: an accept pass that keeps failing, peers it cannot ship to. */
function daemonErrorChecks(live: DaemonStatus, root: string, ownerUid: number | undefined): Check[] {
  const checks: Check[] = [];
  const at = (t: number) => new Date(t).toISOString();
  if (live.lastAcceptError) {
    const unreadable = /EACCES|EPERM/.test(live.lastAcceptError.message);
    const user = ownerUid === undefined ? 'ferry' : sudoUser(ownerUid);
    checks.push({
      name: 'daemon accept', ok: false,
      detail: `accepting outbox messages fails (since ${at(live.lastAcceptError.at)}): ${live.lastAcceptError.message}`,
      fix: unreadable ? `a file the daemon cannot read blocks the outbox: \`chown -R ${user}: ${root}\`, and run ferry commands as ${user} only` : 'see the daemon log (journalctl -u ferry) for the failing step',
    });
  }
  for (const p of live.peers) {
    if (p.failures > 0 && p.lastError) {
      checks.push({ name: `${p.peer} shipping`, ok: false, detail: `${p.failures} failure(s) in a row, last at ${at(p.lastError.at)}: ${p.lastError.message}`, fix: 'see the peer checks below and `ferry status`; the daemon retries with backoff' });
    }
  }
  return checks;
}

/** Prints each check; exit 1 when any (non-warning) check failed. */
export async function doctorCommand(flags: GlobalFlags & { json?: boolean }, io: CliIO): Promise<number> {
  const checks = await runChecks(flags);
  const failed = checks.filter((c) => !c.ok && !c.warning);
  if (flags.json) {
    out(io, JSON.stringify({ ok: failed.length === 0, checks }));
  } else {
    for (const c of checks) {
      const mark = c.ok && !c.warning ? 'ok  ' : c.warning ? 'warn' : 'FAIL';
      out(io, `${mark}  ${c.name}: ${c.detail}`);
      if (c.fix && (!c.ok || c.warning)) out(io, `      fix: ${c.fix}`);
    }
    out(io, failed.length === 0 ? 'all checks passed' : `${failed.length} check(s) failed`);
  }
  return failed.length === 0 ? 0 : 1;
}
