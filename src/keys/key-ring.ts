// An immutable set of pair keys and the rules for choosing one: the newest seals, any unexpired one opens.

import { FerryError } from '../errors.js';
import { bindsPair, isExpired, makePairKey, type PairKey } from './pair-key.js';
import { now as clockNow } from '../clock.js';

/** Where a key id stands in a ring at a given time. */
export type KeyStatus = 'active' | 'expired' | 'unknown';

/** Options of the {@link KeyRing} constructor. */
export interface KeyRingOptions {
  /** The key directory the keys came from, named in errors. Default: none. */
  dir?: string | undefined;
}

/**
 * The keys a host holds, immutable. Expiry is judged at call time (`now`, default the clock),
 * so a ring held for a long time stops using a key the moment it expires.
 */
export class KeyRing {
  /** The key directory named in errors, if known. */
  readonly dir: string | undefined;
  readonly #byId: ReadonlyMap<string, PairKey>;
  readonly #sorted: readonly PairKey[];

  /** Build a ring from `keys`. Throws FerryError `EKEYFORMAT` for a bad key or an id given twice. */
  constructor(keys: Iterable<PairKey> = [], opts: KeyRingOptions = {}) {
    this.dir = opts.dir;
    const byId = new Map<string, PairKey>();
    for (const k of keys) {
      const key = makePairKey(k); // validates, copies and freezes
      if (byId.has(key.id)) {
        throw new FerryError('EKEYFORMAT', `key id \`${key.id}\` appears twice${this.#inDir()}; key ids must be unique.`, { path: key.path ?? this.dir });
      }
      byId.set(key.id, key);
    }
    this.#byId = byId;
    this.#sorted = Object.freeze([...byId.values()].sort(compareKeys));
  }

  /** Number of keys, expired ones included. */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * The key to seal with from `self` to `peer`: among unexpired keys binding the pair, the one
   * created last (ties broken by the greater id, so every host picks the same one).
   * Throws FerryError `EKEY_NONE` naming the pair and the key directory.
   */
  sealingKey(self: string, peer: string, now: Date = new Date(clockNow())): PairKey {
    let best: PairKey | undefined;
    for (const key of this.#sorted) {
      if (!bindsPair(key, self, peer) || isExpired(key, now)) continue;
      if (best === undefined || compareAge(key, best) > 0) best = key;
    }
    if (best === undefined) {
      throw new FerryError('EKEY_NONE', `no unexpired key binds ${self} and ${peer}${this.#inDir()}; deploy one (ferry keys generate --peers ${self},${peer}, then copy it to both hosts).`, { peer, path: this.dir });
    }
    return best;
  }

  /** The key with this id if it exists and is unexpired at `now`, else undefined (see {@link status} for which). */
  lookup(id: string, now: Date = new Date(clockNow())): PairKey | undefined {
    const key = this.#byId.get(id);
    return key === undefined || isExpired(key, now) ? undefined : key;
  }

  /** Whether `id` is an unexpired key, an expired one, or not in the ring. */
  status(id: string, now: Date = new Date(clockNow())): KeyStatus {
    const key = this.#byId.get(id);
    if (key === undefined) return 'unknown';
    return isExpired(key, now) ? 'expired' : 'active';
  }

  /** The key to open an envelope naming `id`. Throws FerryError `EKEY_UNKNOWN` or `EKEY_EXPIRED`. */
  openingKey(id: string, now: Date = new Date(clockNow())): PairKey {
    const key = this.#byId.get(id);
    const shown = JSON.stringify(id.slice(0, 80));
    if (key === undefined) {
      throw new FerryError('EKEY_UNKNOWN', `no key with id ${shown}${this.#inDir()}.`, { path: this.dir });
    }
    if (isExpired(key, now)) {
      throw new FerryError('EKEY_EXPIRED', `key ${shown} expired at ${key.expires?.toISOString()}.`, { path: key.path ?? this.dir });
    }
    return key;
  }

  /**
   * {@link openingKey}, and also require the key to bind exactly `self` and `origin`: a receiver
   * accepts origin A only under a key A shares with it. Throws `EKEY_UNKNOWN`, `EKEY_EXPIRED`, `EKEY_PAIR`.
   */
  openingKeyFor(id: string, self: string, origin: string, now: Date = new Date(clockNow())): PairKey {
    const key = this.openingKey(id, now);
    if (!bindsPair(key, self, origin)) {
      throw new FerryError('EKEY_PAIR', `key \`${key.id}\` binds ${key.peers[0]} and ${key.peers[1]}, not ${self} and ${origin}.`, { peer: origin, path: key.path ?? this.dir });
    }
    return key;
  }

  /** Every key, expired ones included, sorted by peers, then creation time, then id. */
  list(): readonly PairKey[] {
    return this.#sorted;
  }

  /** The hosts `host` shares an unexpired key with at `now`, sorted. */
  peersOf(host: string, now: Date = new Date(clockNow())): string[] {
    const peers = new Set<string>();
    for (const key of this.#sorted) {
      if (isExpired(key, now)) continue;
      if (key.peers[0] === host) peers.add(key.peers[1]);
      else if (key.peers[1] === host) peers.add(key.peers[0]);
    }
    return [...peers].sort();
  }

  #inDir(): string {
    return this.dir === undefined ? '' : ` in key directory ${this.dir}`;
  }
}

function compareAge(a: PairKey, b: PairKey): number {
  return a.created.getTime() - b.created.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function compareKeys(a: PairKey, b: PairKey): number {
  const pa = `${a.peers[0]}\0${a.peers[1]}`;
  const pb = `${b.peers[0]}\0${b.peers[1]}`;
  return pa < pb ? -1 : pa > pb ? 1 : compareAge(a, b);
}
