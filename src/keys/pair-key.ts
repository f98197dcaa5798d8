// What a pair key is: the shape, the naming rules, and the checks every key must pass.

import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { FerryError } from '../errors.js';

/** Length in bytes of a pair key's secret (the `crypto_secretbox` key size). */
export const SECRET_BYTES = 32;

/** A key id: 1–64 letters, digits, `.`, `_` or `-`. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** A host name as keys name it: a letter or digit, then up to 63 letters, digits, `.`, `_` or `-`. */
export const HOST_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * A symmetric key shared by exactly two hosts.
 *
 * Structurally a `{ id; secret; peers }`, which is all the envelope module needs.
 * Keys made by this module redact `secret` from `JSON.stringify` and `util.inspect`,
 * so logging a key by mistake does not leak it (spreading one still copies it).
 */
export interface PairKey {
  /** Unique id, carried in the clear in every envelope sealed with this key. */
  readonly id: string;
  /** The two hosts the key binds, sorted, never equal. */
  readonly peers: readonly [string, string];
  /** When the key was made; among usable keys for a pair, the newest seals. */
  readonly created: Date;
  /** From this instant on the key neither seals nor opens. Absent: never expires. */
  readonly expires?: Date;
  /** The 32 secret bytes. */
  readonly secret: Uint8Array;
  /** The file the key was loaded from or written to, when there is one. */
  readonly path?: string;
}

/** True when `id` is a well-formed key id. */
export function isKeyId(id: string): boolean {
  return KEY_ID_PATTERN.test(id);
}

/** True when `host` is a well-formed host name. */
export function isHostName(host: string): boolean {
  return HOST_NAME_PATTERN.test(host);
}

/** The two host names in canonical (sorted) order. */
export function sortPeers(a: string, b: string): [string, string] {
  return a < b ? [a, b] : [b, a];
}

/** True when `key` binds exactly the hosts `a` and `b` (in either order). */
export function bindsPair(key: Pick<PairKey, 'peers'>, a: string, b: string): boolean {
  const [x, y] = sortPeers(a, b);
  return key.peers[0] === x && key.peers[1] === y;
}

/** True when `key` is expired at `now` (expiry is inclusive: at `expires` it is already dead). */
export function isExpired(key: Pick<PairKey, 'expires'>, now: Date): boolean {
  return key.expires !== undefined && now.getTime() >= key.expires.getTime();
}

/**
 * A short, stable name for a key that never reveals it: `SHA256:` and 16 base64 characters
 * (96 bits) of sha256("ferry-key-fingerprint\0" ‖ secret). The domain prefix keeps the value
 * unrelated to any other hash of the secret; 96 bits is plenty to tell keys apart by eye, and
 * with a 256-bit random secret the hash gives nothing away about it.
 */
export function fingerprint(key: Pick<PairKey, 'secret'>): string {
  const h = createHash('sha256');
  h.update('ferry-key-fingerprint\0', 'utf8');
  h.update(key.secret);
  return 'SHA256:' + h.digest('base64').replace(/=+$/, '').slice(0, 16);
}

/** Fields from which {@link makePairKey} builds a key. */
export interface PairKeyFields {
  id: string;
  peers: readonly [string, string];
  created: Date;
  expires?: Date | undefined;
  secret: Uint8Array;
  path?: string | undefined;
}

/**
 * Check `fields` and build a frozen {@link PairKey} from them: peers sorted, dates and secret
 * copied (so later changes to the caller's objects do not reach the key), secret redacted
 * from JSON and inspect output. Throws FerryError `EHOST_NAME`, `EKEY_PAIR` or `EKEYFORMAT`.
 */
export function makePairKey(fields: PairKeyFields): PairKey {
  const { id, peers, created, expires, secret, path } = fields;
  const where = path === undefined ? `key ${JSON.stringify(id.slice(0, 80))}` : `key file ${path}`;
  for (const host of peers) {
    if (!isHostName(host)) {
      throw new FerryError('EHOST_NAME', `${where} names host ${JSON.stringify(host.slice(0, 80))}; expected a letter or digit followed by up to 63 letters, digits, \`.\`, \`_\` or \`-\`.`, { path, peer: host });
    }
  }
  if (peers[0] === peers[1]) {
    throw new FerryError('EKEY_PAIR', `${where} binds host \`${peers[0]}\` to itself; a pair key binds two different hosts.`, { path, peer: peers[0] });
  }
  if (!isKeyId(id)) {
    throw new FerryError('EKEYFORMAT', `${where} has a bad id: expected 1 to 64 letters, digits, \`.\`, \`_\` or \`-\`, got ${JSON.stringify(id.slice(0, 80))}.`, { path });
  }
  if (!isValidDate(created)) {
    throw new FerryError('EKEYFORMAT', `${where} has an invalid \`created\` time.`, { path });
  }
  if (expires !== undefined) {
    if (!isValidDate(expires)) throw new FerryError('EKEYFORMAT', `${where} has an invalid \`expires\` time.`, { path });
    if (expires.getTime() <= created.getTime()) {
      throw new FerryError('EKEYFORMAT', `${where} has \`expires\` ${expires.toISOString()} not later than \`created\` ${created.toISOString()}.`, { path });
    }
  }
  if (!(secret instanceof Uint8Array) || secret.byteLength !== SECRET_BYTES) {
    throw new FerryError('EKEYFORMAT', `${where} has a secret of ${secret?.byteLength ?? 0} bytes; expected ${SECRET_BYTES}.`, { path });
  }

  const key: PairKey = {
    id,
    peers: Object.freeze(sortPeers(peers[0], peers[1])) as readonly [string, string],
    created: new Date(created.getTime()),
    ...(expires === undefined ? {} : { expires: new Date(expires.getTime()) }),
    // A fresh, unshared ArrayBuffer: never a view into Node's Buffer pool or the caller's memory.
    secret: new Uint8Array(secret),
    ...(path === undefined ? {} : { path }),
  };
  const redacted = (): Record<string, unknown> => ({
    id: key.id,
    peers: key.peers,
    created: key.created,
    ...(key.expires === undefined ? {} : { expires: key.expires }),
    secret: '[redacted]',
    fingerprint: fingerprint(key),
    ...(key.path === undefined ? {} : { path: key.path }),
  });
  // Non-enumerable, so spreading or Object.keys still sees exactly the PairKey fields.
  Object.defineProperty(key, 'toJSON', { value: redacted, enumerable: false });
  Object.defineProperty(key, inspect.custom, {
    value: (depth: number, options: object) => `PairKey ${inspect(redacted(), { ...options, depth })}`,
    enumerable: false,
  });
  return Object.freeze(key);
}

// Years 0–9999 only: the range a TOML date-time (RFC 3339) can write down.
function isValidDate(d: unknown): d is Date {
  return d instanceof Date && !Number.isNaN(d.getTime()) && d.getUTCFullYear() >= 0 && d.getUTCFullYear() <= 9999;
}
