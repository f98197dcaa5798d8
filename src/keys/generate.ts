// Making a new pair key from fresh randomness.

import sodium from 'libsodium-wrappers';
import { FerryError } from '../errors.js';
import { makePairKey, sortPeers, type PairKey } from './pair-key.js';
import { now as clockNow } from '../clock.js';

/** Options of {@link generatePairKey}. */
export interface GenerateOptions {
  /** Creation time; truncated to the second so the key file round-trips exactly. Default: now. */
  now?: Date;
  /** Expiry time; must be later than `now`. Default: the key never expires. */
  expires?: Date;
}

/**
 * Make a new key binding hosts `a` and `b` (any order) from 32 bytes of libsodium randomness.
 * The id is `<a>-<b>.<UTC yyyymmddThhmmssZ>.<6 random hex digits>`, the host part shortened
 * so the id stays within 64 characters. Throws FerryError `EHOST_NAME`, `EKEY_PAIR` or `EKEYFORMAT`.
 */
export async function generatePairKey(a: string, b: string, opts: GenerateOptions = {}): Promise<PairKey> {
  await sodium.ready;
  const now = opts.now ?? new Date(clockNow());
  const created = new Date(Math.floor(now.getTime() / 1000) * 1000);
  if (Number.isNaN(created.getTime())) throw new FerryError('EKEYFORMAT', 'expected `now` to be a valid date.');
  const peers = sortPeers(a, b);
  const stamp = created.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z'); // 20261128T024100Z
  const tag = sodium.to_hex(sodium.randombytes_buf(3));
  const suffix = `.${stamp}.${tag}`;
  const id = `${peers[0]}-${peers[1]}`.slice(0, 64 - suffix.length) + suffix;
  const secret = sodium.crypto_secretbox_keygen();
  try {
    return makePairKey({ id, peers, created, expires: opts.expires, secret });
  } finally {
    sodium.memzero(secret); // makePairKey keeps its own copy
  }
}
