// The rows `ferry keys list` shows: everything about each key except the secret.

import { KeyRing } from './key-ring.js';
import { fingerprint, isExpired, type PairKey } from './pair-key.js';
import { now as clockNow } from '../clock.js';

/** One key as `ferry keys list` shows it. Never holds the secret. */
export interface KeyRow {
  /** The key id. */
  id: string;
  /** The two hosts it binds, sorted. */
  peers: readonly [string, string];
  /** When it was made. */
  created: Date;
  /** Whole seconds from `created` to `now` (negative for a key dated in the future). */
  ageSeconds: number;
  /** When it expires; undefined if never. */
  expires: Date | undefined;
  /** True when expired at `now`: it neither seals nor opens any more. */
  expired: boolean;
  /** {@link fingerprint} of the secret, safe to show and compare between hosts. */
  fingerprint: string;
  /** The file it was loaded from, if any. */
  path: string | undefined;
}

/** Rows for every key of `keys` (a ring or a list), sorted by peers, creation time, id. */
export function keyRows(keys: KeyRing | Iterable<PairKey>, now: Date = new Date(clockNow())): KeyRow[] {
  const ring = keys instanceof KeyRing ? keys : new KeyRing(keys);
  return ring.list().map((k) => ({
    id: k.id,
    peers: [k.peers[0], k.peers[1]] as const,
    created: new Date(k.created.getTime()),
    ageSeconds: Math.floor((now.getTime() - k.created.getTime()) / 1000),
    expires: k.expires === undefined ? undefined : new Date(k.expires.getTime()),
    expired: isExpired(k, now),
    fingerprint: fingerprint(k),
    path: k.path,
  }));
}
