// `ferry doctor`: check everything ferry depends on and say, per check, pass or fail and how to fix it.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, routeFor, type FerryConfig } from '../config/config.js';
import { askDaemon } from '../daemon/lock.js';
import { isFerryError } from '../errors.js';
import { KeyRing, loadKeyDir } from '../keys/index.js';
import { SpoolLayout } from '../spool/layout.js';
import { Spool } from '../spool/spool.js';
import { SftpTransport } from '../transport/index.js';
import type { GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

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

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs every check; never throws for a failed check (that is a result). */
export async function runChecks(flags: GlobalFlags, now = Date.now()): Promise<Check[]> {
  const checks: Check[] = [];
  let config: FerryConfig;
  try {
    config = await loadConfig(flags.config, { root: flags.root, keys: flags.keys });
    checks.push({ name: 'config', ok: true, detail: config.path ? `${config.path} is valid (host ${config.host})` : `no config file; defaults (host ${config.host})` });
  } catch (err) {
    checks.push({ name: 'config', ok: false, detail: message(err), fix: 'fix the named field (see the README, Configuration)' });
    return checks;
  }

  // Modes are checked before the spool is opened: opening tightens them, and doctor only looks.
  const layout = new SpoolLayout(config.root);
  const loose: string[] = [];
  for (const dir of layout.fixedDirs) {
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (st && (st.mode & 0o077) !== 0) loose.push(`${dir} (0${(st.mode & 0o777).toString(8)})`);
  }
  let spool: Spool | undefined;
  try {
    spool = await Spool.open(config.root, { host: config.host });
    checks.push(loose.length === 0
      ? { name: 'spool', ok: true, detail: `${config.root}: layout present, directories 0700, one file system` }
      : { name: 'spool', ok: false, detail: `group/other access on ${loose.join(', ')}`, fix: 'chmod 700 the directories named (the daemon also tightens them when it opens the spool)' });
  } catch (err) {
    checks.push({ name: 'spool', ok: false, detail: message(err), fix: isFerryError(err, 'ENOT_INIT') ? 'run `ferry init`' : 'see the error; the spool must be real directories on one file system' });
  }

  if (spool) {
    try {
      const fs = await fsp.statfs(config.root);
      const free = fs.bavail * fs.bsize;
      const pct = (fs.bavail / fs.blocks) * 100;
      const ok = pct >= 5 && free >= 256 * 2 ** 20;
      checks.push({ name: 'disk', ok, detail: `${(free / 2 ** 30).toFixed(1)} GiB free (${pct.toFixed(0)}%) under ${config.root}`, ...(ok ? {} : { fix: 'free space: a full disk stops delivery (nothing is lost, but nothing moves)' }) });
    } catch (err) {
      checks.push({ name: 'disk', ok: false, detail: message(err) });
    }
    const live = await askDaemon(config.root, 'status', 1000);
    checks.push({ name: 'daemon', ok: live !== undefined, warning: true, detail: live !== undefined ? 'a daemon is running on this spool' : 'no daemon is running on this spool', ...(live === undefined ? { fix: 'start it: `systemctl start ferry` or `ferry daemon`' } : {}) });
  }

  // Keys: the directory loads, nothing is refused, and every routed peer has an unexpired pair key.
  let ring: KeyRing | undefined;
  try {
    const { keys, errors } = await loadKeyDir(config.keys);
    ring = new KeyRing(keys, { dir: config.keys });
    checks.push(errors.length === 0
      ? { name: 'keys', ok: true, detail: `${keys.length} key(s) in ${config.keys}` }
      : { name: 'keys', ok: false, detail: errors.map((e) => e.message).join('; '), fix: 'chmod 600 / chown the key files named, or remove malformed ones' });
  } catch (err) {
    checks.push({ name: 'keys', ok: false, detail: message(err), fix: `create ${config.keys} (mode 0700) and deploy pair keys into it` });
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
        checks.push({ name: `key ${config.host}-${peer}`, ok: false, detail: message(err), fix: `ferry keys generate --peers ${config.host},${peer} and deploy it to both hosts` });
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
        checks.push({ name: `${peer} ${what}`, ok: false, detail: message(err), fix: `create ${path}` });
      }
    }
    const transport = new SftpTransport({ peer, host: p.host, port: p.port, username: p.user, identity: p.identity, knownHosts: p.knownHosts, remoteRoot: p.remoteRoot, connectTimeoutMs: 8000, opTimeoutMs: 8000 });
    try {
      const probe = await transport.probe();
      const ok = probe.landingWritable;
      checks.push({ name: `${peer} ssh`, ok, detail: `reachable at ${p.host}:${p.port}, host key ${probe.fingerprint} pinned, sftp extensions ok, landing area ${ok ? 'writable' : 'NOT writable'}${probe.landingFreeBytes === undefined ? '' : `, ${(probe.landingFreeBytes / 2 ** 30).toFixed(1)} GiB free there`}`, ...(ok ? {} : { fix: `create ${join(p.remoteRoot, 'landing', 'tmp')} and ${join(p.remoteRoot, 'landing', 'new')} writable by ${p.user} on ${peer}` }) });
    } catch (err) {
      const code = isFerryError(err) ? err.code : undefined;
      const fix = code === 'EHOSTKEY' || code === 'EHOSTKEY_UNKNOWN'
        ? `verify the fingerprint out of band, then put the peer's host key in ${p.knownHosts}`
        : code === 'ETRANSPORT_AUTH' ? `authorize ${p.identity}.pub for ${p.user} on ${peer}` : `check that ${p.host}:${p.port} runs sshd and is reachable`;
      checks.push({ name: `${peer} ssh`, ok: false, detail: message(err), fix });
    } finally {
      await transport.close();
    }
  }

  // Clock: ferry orders and expires by time; a clock far in the past breaks lifetimes and key expiry.
  const year = new Date(now).getUTCFullYear();
  checks.push(year >= 2024 ? { name: 'clock', ok: true, detail: new Date(now).toISOString() } : { name: 'clock', ok: false, detail: `the clock says ${new Date(now).toISOString()}`, fix: 'set the clock (NTP)' });
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
