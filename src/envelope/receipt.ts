// The receiver's sealed receipt for one sender: what it delivered of the sender's channel, the proof that lets the sender forget.
//
// ── FRR1: receipt, version 1 ──────────────────────────────────────────────────────────────
//
//   0   4 bytes   magic "FRR1"
//   4   u8        version = 1
//   5   u8        keyIdLen, 1..64
//   6   keyIdLen  key id, ASCII [A-Za-z0-9._-]
//   6+keyIdLen    24-byte random nonce
//   then          crypto_secretbox_easy(prefix ‖ JSON, nonce, subkey 3) to the end of the file, ≤ 64 KiB of JSON
//
// Subkey 3 = crypto_kdf_derive_from_key(32, 3, "ferryenv", pair secret): a receipt can never be opened as a
// bundle, nor a bundle as a receipt. The JSON names its writer (`origin`, the receiver) and its reader
// (`destination`, the sender); the reader checks both and that the key binds exactly those two hosts, so a
// receipt cannot be reflected back to its writer or shown to a third host. A receipt is only ever read from the
// landing directory that the sender's own login reaches, so nobody but the two hosts can place one there.

import sodium from 'libsodium-wrappers';
import { z } from 'zod';
import { FerryError } from '../errors.js';
import { boxOpen, boxSeal, randomNonce, requireSodium } from './sodium.js';
import type { KeyLookup, SealKey } from './types.js';
import { bindsPair, checkSealKey, CHANNEL_RE, HOST_RE, KEY_ID_RE } from './validate.js';
import { BOX_MACBYTES, JSON_FRAME_MAX, KDF_CONTEXT, NONCE_BYTES, SUBKEY_RECEIPT } from './wire-format.js';

const MAGIC = 'FRR1';
const VERSION = 1;
/** Largest receipt file a reader accepts, in bytes. */
export const RECEIPT_MAX_BYTES = 6 + 64 + NONCE_BYTES + BOX_MACBYTES + 6 + 64 + NONCE_BYTES + JSON_FRAME_MAX;
/** Most refusals a receipt lists (the most recent). */
export const RECEIPT_MAX_REFUSED = 16;

const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const epochSchema = z.strictObject({ epoch: seq.min(1), channel: z.string().regex(CHANNEL_RE), hwm: seq });
const text = z.string().max(1024);
const code = z.string().regex(/^E[A-Z_]{1,40}$/);

const receiptSchema = z.strictObject({
  origin: z.string().regex(HOST_RE),
  destination: z.string().regex(HOST_RE),
  /** The receiver's dedupe-state instance: a different one means its state was lost and made anew. */
  instance: z.string().regex(/^[0-9a-f]{16}$/),
  /** Increases with every receipt the receiver writes for this sender. */
  gen: seq,
  written: seq,
  /** The epoch being delivered and its delivered mark: every sequence up to `hwm` is in the inbox (or was skipped by a gap record). */
  current: epochSchema.nullable(),
  /** The epoch the current one closed, with its final mark. */
  previous: epochSchema.nullable(),
  /** Gap records of the current epoch acknowledged so far. */
  gaps: seq,
  /** Why the channel does not move, when it does not: the next sequence missing, or an alarm. */
  blocked: z.strictObject({ seq, since: seq, code, reason: text }).nullable(),
  /** Bundles the receiver refused (quarantined), most recent last. */
  refused: z.array(z.strictObject({
    epoch: seq.min(1), channel: z.string().regex(CHANNEL_RE), firstSeq: seq, count: seq, code, reason: text, at: seq,
    /** A gap record was refused (its name ends in .gap), not a bundle. */
    gap: z.boolean().optional(),
    /** The refused bytes authenticated under the pair key: the sender's own bundle, identified by its sealed header, not by a name. */
    authentic: z.boolean().optional(),
    /** For an upload cut for its size: the most bytes this receiver reads. */
    limit: seq.optional(),
  })).max(RECEIPT_MAX_REFUSED),
});

/** What a receiver tells a sender about the sender's channel. */
export type Receipt = z.infer<typeof receiptSchema>;
/** One epoch's delivered mark in a receipt. */
export type ReceiptEpoch = z.infer<typeof epochSchema>;
/** One refused bundle in a receipt. */
export type ReceiptRefusal = Receipt['refused'][number];

function subkey(secret: Uint8Array): Uint8Array {
  return sodium.crypto_kdf_derive_from_key(32, SUBKEY_RECEIPT, KDF_CONTEXT, secret);
}

function prefix(keyId: string, nonce: Uint8Array): Uint8Array {
  const id = Buffer.from(keyId, 'latin1');
  const p = new Uint8Array(6 + id.length + NONCE_BYTES);
  p.set(Buffer.from(MAGIC, 'latin1'), 0);
  p[4] = VERSION;
  p[5] = id.length;
  p.set(id, 6);
  p.set(nonce, 6 + id.length);
  return p;
}

/**
 * Seals `receipt` with `key`, which must bind its origin and destination. Synchronous: await `sodiumReady()` first.
 * Throws `EKEY_PAIR` for a key of another pair, `EUSAGE` for a receipt that does not validate.
 */
export function sealReceipt(key: SealKey, receipt: Receipt): Uint8Array {
  requireSodium();
  const k = checkSealKey(key);
  const parsed = receiptSchema.safeParse(receipt);
  if (!parsed.success) throw new FerryError('EUSAGE', `a receipt does not validate: ${parsed.error.issues[0]?.message ?? 'invalid'} at ${parsed.error.issues[0]?.path.join('.') ?? '?'}.`);
  if (!bindsPair(k, receipt.origin, receipt.destination)) {
    throw new FerryError('EKEY_PAIR', `key ${k.id} binds ${k.peers[0]} and ${k.peers[1]}, not ${receipt.origin} and ${receipt.destination}.`);
  }
  const body = Buffer.from(JSON.stringify(parsed.data), 'utf8');
  if (body.length > JSON_FRAME_MAX) throw new FerryError('EUSAGE', `a receipt encodes to ${body.length} bytes; at most ${JSON_FRAME_MAX} fit.`);
  const nonce = randomNonce();
  const p = prefix(k.id, nonce);
  const plain = new Uint8Array(p.length + body.length);
  plain.set(p, 0);
  plain.set(body, p.length);
  const sk = subkey(k.secret);
  const box = boxSeal(plain, nonce, sk);
  sk.fill(0);
  const out = new Uint8Array(p.length + box.length);
  out.set(p, 0);
  out.set(box, p.length);
  return out;
}

/**
 * Opens a receipt that `from` wrote for `self`. Throws `EENVELOPE_MAGIC`, `_VERSION`, `_FORMAT`, `_TOO_LARGE`,
 * `EKEY_UNKNOWN`, `EENVELOPE_MAC` (tampered, or another key), `EENVELOPE_ORIGIN` (written by another host, or
 * for another host, or under a key that does not bind exactly the two).
 */
export function openReceipt(bytes: Uint8Array, keys: KeyLookup, self: string, from: string): Receipt {
  requireSodium();
  if (bytes.length > RECEIPT_MAX_BYTES) throw new FerryError('EENVELOPE_TOO_LARGE', `a receipt of ${bytes.length} bytes is larger than the ${RECEIPT_MAX_BYTES} allowed.`);
  if (bytes.length < 6 || Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== MAGIC) throw new FerryError('EENVELOPE_MAGIC', 'the file is not a ferry receipt (bad magic).');
  if (bytes[4] !== VERSION) throw new FerryError('EENVELOPE_VERSION', `the receipt has format version ${bytes[4]}; this ferry reads version ${VERSION}.`);
  const idLen = bytes[5] as number;
  if (idLen < 1 || idLen > 64 || bytes.length < 6 + idLen + NONCE_BYTES + BOX_MACBYTES) throw new FerryError('EENVELOPE_FORMAT', 'the receipt is too short or names a key id of a bad length.');
  const keyId = Buffer.from(bytes.subarray(6, 6 + idLen)).toString('latin1');
  if (!KEY_ID_RE.test(keyId)) throw new FerryError('EENVELOPE_FORMAT', 'the receipt names a key id with characters outside [A-Za-z0-9._-].');
  const key = keys(keyId);
  if (key === undefined) throw new FerryError('EKEY_UNKNOWN', `the receipt is sealed with key ${keyId}, which this host does not hold.`);
  const k = checkSealKey(key);
  if (!bindsPair(k, self, from)) throw new FerryError('EENVELOPE_ORIGIN', `the receipt is sealed with key ${k.id}, which binds ${k.peers[0]} and ${k.peers[1]}, not ${from} and ${self}.`);
  const p = bytes.subarray(0, 6 + idLen + NONCE_BYTES);
  const sk = subkey(k.secret);
  const plain = boxOpen(bytes.subarray(p.length), p.subarray(6 + idLen), sk);
  sk.fill(0);
  if (plain === undefined) throw new FerryError('EENVELOPE_MAC', 'the receipt fails authentication (tampered, truncated, or sealed with another key).');
  if (plain.length < p.length || !Buffer.from(plain.subarray(0, p.length)).equals(Buffer.from(p))) {
    throw new FerryError('EENVELOPE_MAC', 'the receipt\'s clear prefix does not match the sealed copy.');
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain.subarray(p.length)));
  } catch (err) {
    throw new FerryError('EENVELOPE_FORMAT', 'the receipt is not valid UTF-8 JSON.', { cause: err });
  }
  const parsed = receiptSchema.safeParse(json);
  if (!parsed.success) throw new FerryError('EENVELOPE_FORMAT', `the receipt is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'} at ${parsed.error.issues[0]?.path.join('.') ?? '?'}.`);
  const r = parsed.data;
  if (r.origin !== from || r.destination !== self) {
    throw new FerryError('EENVELOPE_ORIGIN', `the receipt was written by ${r.origin} for ${r.destination}, not by ${from} for ${self}.`);
  }
  return r;
}
