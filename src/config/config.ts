// The configuration file (TOML): parsed with smol-toml, validated with zod, one sentence per problem.
import { accessSync, constants, promises as fsp, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { FerryError, errno } from '../errors.js';
import { DEFAULT_RECEIVE_LIMITS, type ReceiveLimits } from '../receive/limits.js';
import { DEFAULT_QUARANTINE_BOUNDS } from '../receive/quarantine.js';

/** Default config path when neither `--config` nor `$FERRY_CONFIG` is given. */
export const DEFAULT_CONFIG_PATH = '/etc/ferry/ferry.toml';
/** Default spool root. */
export const DEFAULT_ROOT = '/var/spool/ferry';
/** Default key directory. */
export const DEFAULT_KEYS = '/etc/ferry/keys';
/** Default `remote_root`: the landing directory under the chroot the README's recipe makes. */
export const DEFAULT_REMOTE_ROOT = '/landing';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const QUEUE_OR_STAR = /^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/;
const SSH_TARGET = /^([A-Za-z0-9._-]+)@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

const peerSchema = z.strictObject({
  /** `user@host:port` of the peer's SFTP account. */
  ssh: z.string().regex(SSH_TARGET, 'user@host:port'),
  /** Private key used to log in. */
  identity: z.string().min(1, 'a path to a private key'),
  /** known_hosts file holding the peer's pinned host key. */
  known_hosts: z.string().min(1, 'a path to a known_hosts file'),
  /** The landing directory the peer gave this host, as its SFTP login sees it ("/landing" under the README's chroot). */
  remote_root: z.string().startsWith('/', 'an absolute path').default(DEFAULT_REMOTE_ROOT),
  /** Bundles uploading to this peer at once. */
  pipeline: z.number().int().min(1).max(64).default(4),
  /** Most bundles published to this peer and not yet covered by its receipt. */
  window: z.number().int().min(1).max(1024).default(32),
});

const byteCount = z.number().int().min(0);
const receiveSchema = z.strictObject({
  /** Largest landing file this host reads, bytes. */
  max_bundle_bytes: byteCount.min(1).default(DEFAULT_RECEIVE_LIMITS.maxBundleBytes),
  /** Most messages in one bundle. */
  max_bundle_messages: z.number().int().min(1).default(DEFAULT_RECEIVE_LIMITS.maxBundleMessages),
  /** Largest payload one message may declare (inflated), bytes. */
  max_message_bytes: byteCount.default(DEFAULT_RECEIVE_LIMITS.maxMessageBytes),
  /** Largest sum of declared payload sizes in one bundle (inflated), bytes. */
  max_bundle_inflated_bytes: byteCount.default(DEFAULT_RECEIVE_LIMITS.maxBundleInflatedBytes),
  /** Largest inflate ratio of a compressed payload past its first MiB. */
  max_inflate_ratio: z.number().min(1).default(DEFAULT_RECEIVE_LIMITS.maxInflateRatio),
  /** Free space delivery never eats into, bytes (default: 64 MiB, or 2 % of the file system when less). */
  reserve_bytes: byteCount.optional(),
  /** Most refused bundles kept in quarantine per peer; past it the oldest go. */
  quarantine_max_entries: z.number().int().min(1).default(DEFAULT_QUARANTINE_BOUNDS.maxEntries),
  /** Most bytes of refused bundles kept in quarantine per peer; past it the oldest go. */
  quarantine_max_bytes: byteCount.min(1).default(DEFAULT_QUARANTINE_BOUNDS.maxBytes),
  /** Where `ferry peer add` put the per-peer chroots (`<chroot_base>/<peer>`), for `ferry doctor`. */
  chroot_base: z.string().startsWith('/', 'an absolute path').default('/srv/ferry'),
  /** The prefix of the peers' login names (`<login_prefix><peer>`), for `ferry doctor`. */
  login_prefix: z.string().regex(/^[a-z_][a-z0-9._-]{0,24}$/, 'the start of a user name, e.g. ferry-in-').default('ferry-in-'),
  /** The sshd config `ferry doctor` asks `sshd -T` about (default: sshd's own). */
  sshd_config: z.string().startsWith('/', 'an absolute path').optional(),
});

const queueSchema = z.strictObject({
  /** Compress payloads of this queue before sealing. */
  compression: z.enum(['none', 'gzip', 'br']).default('none'),
  /** Seconds a file in drop/<queue>/ must stay unchanged before it is ingested (with `commit = "settle"`). */
  settle: z.number().positive().default(5),
  /**
   * What tells ferry a file in drop/<queue>/ is complete. "settle" (default): an `X.done` marker, or size and
   * mtime unchanged for `settle` seconds — safe only for writers that never pause longer than that.
   * "marker": only an `X.done` marker, never time — for writers that may stall (scp over a slow link).
   */
  commit: z.enum(['settle', 'marker']).default('settle'),
});

const configSchema = z.strictObject({
  /** This host's name as its peers know it. */
  host: z.string().regex(NAME, 'a host name of letters, digits, ".", "_" or "-"').optional(),
  /** Spool root. */
  root: z.string().startsWith('/', 'an absolute path').optional(),
  /** Directory of pair key files. */
  keys: z.string().startsWith('/', 'an absolute path').optional(),
  /** Lease of a take, seconds. */
  lease: z.number().positive().default(300),
  /** Seconds a committed message may wait to be shipped before it goes to dead letters. */
  lifetime: z.number().positive().default(7 * 24 * 3600),
  /** Failed attempts before a taken message is dead-lettered. */
  max_attempts: z.number().int().min(1).default(5),
  /** Log level of the daemon. */
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  /** Loopback address for Prometheus metrics, e.g. "127.0.0.1:9464"; unset: off. */
  metrics: z.string().regex(/^(\[::1\]|::1|localhost|127(?:\.\d{1,3}){3}):\d{1,5}$/, 'a loopback host:port such as 127.0.0.1:9464').optional(),
  peers: z.record(z.string().regex(NAME, 'a peer name of letters, digits, ".", "_" or "-"'), peerSchema).default({}),
  routes: z.record(z.string().regex(QUEUE_OR_STAR, 'a queue name or "*"'), z.array(z.string())).default({}),
  queues: z.record(z.string().regex(QUEUE_OR_STAR, 'a queue name or "*"'), queueSchema).default({}),
  /** Limits on what peers may make this host read and write. */
  receive: receiveSchema.default(receiveSchema.parse({})),
});

/** A peer as configured, with its `ssh` target split. */
export interface PeerConfig {
  name: string;
  user: string;
  host: string;
  port: number;
  identity: string;
  knownHosts: string;
  remoteRoot: string;
  pipeline: number;
  window: number;
}

/** Per-queue settings. */
export type QueueConfig = z.infer<typeof queueSchema>;

/** The validated configuration with every default resolved. */
export interface FerryConfig {
  /** Where it was read from, or undefined when no file was used. */
  path: string | undefined;
  host: string;
  root: string;
  keys: string;
  leaseMs: number;
  /** How long a message may wait to be shipped, ms. */
  lifetimeMs: number;
  maxAttempts: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  metrics: string | undefined;
  peers: Map<string, PeerConfig>;
  /** queue (or "*") → destination hosts (peers, or this host for local delivery). */
  routes: Map<string, string[]>;
  queues: Map<string, QueueConfig>;
  /** The receiver's limits. */
  receive: ReceiveLimits;
  /** Where the peers' logins and chroots are, for `ferry doctor`. */
  inbound: { chrootBase: string; loginPrefix: string; sshdConfig: string | undefined };
  /** How much quarantine keeps per peer. */
  quarantine: { maxEntries: number; maxBytes: number };
}

/** Overrides from the command line. */
export interface ConfigOverrides {
  root?: string;
  keys?: string;
  host?: string;
}

function describePath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(top level)';
}

/** Validates parsed TOML into a {@link FerryConfig}. Throws `ECONFIG` naming the field and what was expected. */
export function validateConfig(raw: unknown, path: string | undefined, overrides: ConfigOverrides = {}): FerryConfig {
  const where = path ? ` in ${path}` : '';
  // zod 4 keeps the offending value in an issue only when asked: the message shows what was given.
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = describePath(issue?.path ?? []);
    let got = '';
    if (issue && issue.code !== 'unrecognized_keys' && 'input' in issue && issue.input !== undefined) got = `, got \`${typeof issue.input === 'object' ? JSON.stringify(issue.input) : String(issue.input)}\``;
    let message = issue?.message ?? 'invalid';
    if (issue?.code === 'unrecognized_keys') message = `no unknown field (${issue.keys.join(', ')})`;
    else if (issue?.code === 'invalid_type') message = `a ${issue.expected}`;
    throw new FerryError('ECONFIG', `expected \`${field}\`${where} to be ${message}${got}`, path === undefined ? {} : { path });
  }
  const c = result.data;
  const host = overrides.host ?? c.host ?? defaultHostName();
  if (!NAME.test(host)) throw new FerryError('ECONFIG', `expected \`host\`${where} to be a host name, got \`${host}\``);
  const peers = new Map<string, PeerConfig>();
  for (const [name, p] of Object.entries(c.peers)) {
    if (name === host) throw new FerryError('ECONFIG', `\`peers.${name}\`${where} names this host itself; routes to "${name}" are delivered locally without a peer entry`);
    const m = SSH_TARGET.exec(p.ssh);
    const port = m?.[3] === undefined ? 22 : Number(m[3]);
    if (!m || port < 1 || port > 65535) throw new FerryError('ECONFIG', `expected \`peers.${name}.ssh\`${where} to be user@host:port, got \`${p.ssh}\``);
    peers.set(name, {
      name, user: m[1] as string, host: (m[2] as string).replace(/^\[|\]$/g, ''), port,
      identity: p.identity, knownHosts: p.known_hosts, remoteRoot: p.remote_root, pipeline: p.pipeline, window: p.window,
    });
  }
  const routes = new Map<string, string[]>();
  for (const [queue, dests] of Object.entries(c.routes)) {
    const seen = new Set<string>();
    for (const d of dests) {
      if (d !== host && !peers.has(d)) {
        throw new FerryError('ECONFIG', `\`routes.${queue === '*' ? '"*"' : queue}\`${where} names "${d}", which is neither this host ("${host}") nor a configured [peers.${d}]`);
      }
      if (seen.has(d)) throw new FerryError('ECONFIG', `\`routes.${queue === '*' ? '"*"' : queue}\`${where} names "${d}" twice`);
      seen.add(d);
    }
    routes.set(queue, dests);
  }
  return {
    path,
    host,
    root: overrides.root ?? c.root ?? DEFAULT_ROOT,
    keys: overrides.keys ?? c.keys ?? DEFAULT_KEYS,
    leaseMs: Math.round(c.lease * 1000),
    lifetimeMs: Math.round(c.lifetime * 1000),
    maxAttempts: c.max_attempts,
    logLevel: c.log_level,
    metrics: c.metrics,
    peers,
    routes,
    queues: new Map(Object.entries(c.queues)),
    receive: {
      maxBundleBytes: c.receive.max_bundle_bytes, maxBundleMessages: c.receive.max_bundle_messages, maxMessageBytes: c.receive.max_message_bytes,
      maxBundleInflatedBytes: c.receive.max_bundle_inflated_bytes, maxInflateRatio: c.receive.max_inflate_ratio, reserveBytes: c.receive.reserve_bytes,
    },
    quarantine: { maxEntries: c.receive.quarantine_max_entries, maxBytes: c.receive.quarantine_max_bytes },
    inbound: { chrootBase: c.receive.chroot_base, loginPrefix: c.receive.login_prefix, sshdConfig: c.receive.sshd_config },
  };
}

/** This machine's host name, cut to what ferry accepts. */
export function defaultHostName(): string {
  const h = hostname().split('.')[0]?.replace(/[^A-Za-z0-9._-]/g, '-') ?? 'localhost';
  return NAME.test(h) ? h : 'localhost';
}

/**
 * Loads the configuration: `path` if given (it must exist), else `$FERRY_CONFIG`, else
 * /etc/ferry/ferry.toml when it exists, else defaults. Overrides (command-line flags) win.
 * `allowMissing` lets an explicitly named file be absent too (`ferry init` is about to write it).
 */
export async function loadConfig(path: string | undefined, overrides: ConfigOverrides = {}, allowMissing = false): Promise<FerryConfig> {
  const explicit = path ?? process.env.FERRY_CONFIG;
  const file = explicit ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT' && (explicit === undefined || allowMissing)) return validateConfig({}, undefined, overrides);
    const why = errno(err) === 'ENOENT' ? 'does not exist' : errno(err) === 'EACCES' ? `is not readable by ${whoAmI()} (EACCES: ${unreadableCause(file)})` : errno(err) === 'EISDIR' ? 'is a directory' : `cannot be read (${errno(err) ?? String(err)})`;
    throw new FerryError('ECONFIG', `config file ${file} ${why}`, { path: file, cause: err });
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new FerryError('ECONFIG', `config file ${file} is not valid TOML: ${msg}`, { path: file, cause: err });
  }
  return validateConfig(raw, file, overrides);
}

/** `uid 995` of this process, for messages. */
function whoAmI(): string {
  const uid = process.geteuid?.();
  return uid === undefined ? 'this user' : `uid ${uid}`;
}

/** Why `file` cannot be read: the first directory on its path this process may not search, or the file's own mode. */
function unreadableCause(file: string): string {
  const parts = resolve(file).split('/').filter((p) => p.length > 0);
  let dir = '/';
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    try {
      accessSync(dir, constants.X_OK);
    } catch {
      return `directory ${dir} (${modeOf(dir)}) is not searchable; make it 0755`;
    }
  }
  return `the file's mode is ${modeOf(file)}; make it readable, e.g. 0644 owned by root`;
}

function modeOf(path: string): string {
  try {
    const st = statSync(path);
    return `mode 0${(st.mode & 0o7777).toString(8)}, owner uid ${st.uid}`;
  } catch {
    return 'not stat-able';
  }
}

/** The peers (and/or this host) a queue is routed to: its own route, else the "*" route, else none. */
export function routeFor(config: FerryConfig, queue: string): string[] {
  return config.routes.get(queue) ?? config.routes.get('*') ?? [];
}

/** Per-queue settings: the queue's own, else "*", else defaults. */
export function queueConfig(config: FerryConfig, queue: string): QueueConfig {
  return config.queues.get(queue) ?? config.queues.get('*') ?? queueSchema.parse({});
}

/** A starter config for `ferry init`. */
export function starterConfig(host: string, root: string, keys: string): string {
  return `# ferry configuration — see the README for every field.
host = "${host}"
root = "${root}"
keys = "${keys}"

# [peers.beta]
# ssh = "ferry-in-${host}@beta.example:22"  # the SFTP-only login beta gave this host (\`ferry peer add ${host} --print\` on beta)
# identity = "/etc/ferry/ssh/id_ed25519"
# known_hosts = "/etc/ferry/ssh/known_hosts"
# remote_root = "/landing"               # this host's landing directory on beta, as that chrooted login sees it

[routes]
# orders = ["beta"]
# "*" = ["beta"]
`;
}
