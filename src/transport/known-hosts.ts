// OpenSSH known_hosts: parse it, find the keys pinned for a host, and judge a presented host key against them.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** One key line of a known_hosts file. */
export interface KnownHostEntry {
  /** `revoked`: this key must never be accepted; `cert-authority`: a CA line (ferry ignores those). */
  marker: 'revoked' | 'cert-authority' | undefined;
  /** The host pattern field exactly as written (`host`, `[host]:port`, comma lists, `|1|salt|hash`). */
  hosts: string;
  /** Key type as written, e.g. `ssh-ed25519`. */
  keyType: string;
  /** The raw public key blob (what the server presents during key exchange). */
  key: Buffer;
  /** 1-based line number, for messages. */
  line: number;
}

/** A line that could not be parsed; skipped (like OpenSSH does), reported so `ferry doctor` can warn. */
export interface KnownHostsProblem {
  line: number;
  reason: string;
}

/** Result of {@link parseKnownHosts}. */
export interface KnownHosts {
  entries: KnownHostEntry[];
  problems: KnownHostsProblem[];
}

/**
 * Parse the text of an OpenSSH known_hosts file. Comments and blank lines are skipped; malformed lines are
 * reported in `problems` and skipped. Hashed host fields (`|1|salt|hash`) are kept as written and matched
 * with HMAC-SHA1 by {@link hostMatches}.
 */
export function parseKnownHosts(text: string): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const problems: KnownHostsProblem[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = (lines[i] ?? '').trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const fields = raw.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else {
        problems.push({ line: lineNo, reason: `unknown marker ${m}` });
        continue;
      }
    }
    const [hosts, keyType, keyB64] = fields;
    if (hosts === undefined || keyType === undefined || keyB64 === undefined) {
      problems.push({ line: lineNo, reason: 'expected `hosts keytype base64-key`' });
      continue;
    }
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyB64)) {
      problems.push({ line: lineNo, reason: 'key is not base64' });
      continue;
    }
    const key = Buffer.from(keyB64, 'base64');
    // The blob starts with its own type name: a mismatch means a corrupt or hand-edited line.
    const blobType = keyTypeOf(key);
    if (blobType !== keyType) {
      problems.push({ line: lineNo, reason: `key type ${keyType} does not match the key blob (${blobType ?? 'unreadable'})` });
      continue;
    }
    entries.push({ marker, hosts, keyType, key, line: lineNo });
  }
  return { entries, problems };
}

/** Read and parse a known_hosts file (see {@link parseKnownHosts}). */
export async function readKnownHosts(file: string): Promise<KnownHosts> {
  return parseKnownHosts(await readFile(file, 'utf8'));
}

/** The name OpenSSH looks up for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/**
 * True when a known_hosts host field `hostsField` names `name` (as made by {@link knownHostsName}): comma lists, `*`/`?`
 * wildcards, `!negation` (a negated match excludes the line), and hashed `|1|salt|hash` fields.
 */
export function hostMatches(hostsField: string, name: string): boolean {
  if (hostsField.startsWith('|1|')) return hashedMatches(hostsField, name);
  let matched = false;
  for (const pattern of hostsField.split(',')) {
    if (pattern === '') continue;
    const negated = pattern.startsWith('!');
    const p = negated ? pattern.slice(1) : pattern;
    if (globMatches(p.toLowerCase(), name.toLowerCase())) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function hashedMatches(field: string, name: string): boolean {
  const parts = field.split('|'); // ['', '1', salt, hash]
  const salt = parts[2];
  const hash = parts[3];
  if (parts.length !== 4 || salt === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

function globMatches(pattern: string, name: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === name;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

/** The type name at the start of an SSH public key blob (`ssh-ed25519`…), or undefined if unreadable. */
export function keyTypeOf(rawKey: Buffer): string | undefined {
  if (rawKey.length < 4) return undefined;
  const len = rawKey.readUInt32BE(0);
  if (len === 0 || len > 64 || rawKey.length < 4 + len) return undefined;
  return rawKey.subarray(4, 4 + len).toString('latin1');
}

/** `SHA256:` + unpadded base64 of the SHA-256 of the raw key: the same string `ssh-keygen -lf` prints. */
export function fingerprintSha256(rawKey: Buffer): string {
  return `SHA256:${createHash('sha256').update(rawKey).digest('base64').replace(/=+$/, '')}`;
}

/** The keys pinned for `host:port`, and the revoked keys. */
export interface PinnedKeys {
  /** Non-revoked, non-CA entries whose host field names the host. */
  keys: KnownHostEntry[];
  /** Every `@revoked` entry, whatever its host field: a revoked key is refused for every host. */
  revoked: KnownHostEntry[];
}

/** Select the keys pinned for `host:port` (see {@link PinnedKeys}). `@cert-authority` lines are ignored. */
export function pinnedKeys(knownHosts: KnownHosts, host: string, port: number): PinnedKeys {
  const name = knownHostsName(host, port);
  const keys: KnownHostEntry[] = [];
  const revoked: KnownHostEntry[] = [];
  for (const e of knownHosts.entries) {
    if (e.marker === 'revoked') revoked.push(e);
    else if (e.marker === undefined && hostMatches(e.hosts, name)) keys.push(e);
  }
  return { keys, revoked };
}

/** Verdict of {@link checkHostKey}. */
export type HostKeyVerdict =
  /** The presented key is one of the pinned keys. */
  | 'match'
  /** No key is pinned for this host. */
  | 'unknown'
  /** Keys are pinned for this host, and the presented key is none of them. */
  | 'mismatch'
  /** The presented key is listed `@revoked`. */
  | 'revoked';

/** Judge the raw key a server presented against the pins. Byte comparison of whole key blobs. */
export function checkHostKey(pins: PinnedKeys, presented: Buffer): HostKeyVerdict {
  if (pins.revoked.some((e) => e.key.equals(presented))) return 'revoked';
  if (pins.keys.length === 0) return 'unknown';
  return pins.keys.some((e) => e.key.equals(presented)) ? 'match' : 'mismatch';
}

/** Host key algorithms ssh2 1.x can verify; ssh2 throws on any other name in `algorithms.serverHostKey`. */
const SSH2_HOST_KEY_ALGORITHMS = new Set([
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
  'ssh-dss',
]);

/**
 * The host key signature algorithms to offer for the pinned key types, in a stable order, so that the server
 * presents a key we pinned rather than another of its keys. RSA keys sign with rsa-sha2-512/256 (ssh-rsa last).
 * Types ssh2 cannot verify (e.g. security-key `sk-*` host keys) are left out; the result may be empty.
 */
export function hostKeyAlgorithms(keyTypes: Iterable<string>): string[] {
  const out: string[] = [];
  const add = (a: string) => {
    if (!out.includes(a)) out.push(a);
  };
  for (const t of keyTypes) {
    if (t === 'ssh-rsa') {
      add('rsa-sha2-512');
      add('rsa-sha2-256');
      add('ssh-rsa');
    } else {
      add(t);
    }
  }
  return out.filter((a) => SSH2_HOST_KEY_ALGORITHMS.has(a));
}
