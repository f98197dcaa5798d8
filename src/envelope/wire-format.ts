// The sealed-bundle wire format, version 1: its exact layout, constants, and the clear-prefix and frame encoders.
//
// ── FRY1: sealed bundle, version 2 ──────────────────────────────────────────────────────────
//
// All integers are unsigned, big-endian. KiB = 1024 bytes, MiB = 1024 KiB.
//
// Clear prefix (P = 31 + keyIdLen bytes, 32..95):
//   0   4 bytes   magic "FRY1" = 46 52 59 31
//   4   u8        version = 2 (version 1, before channel epochs were numbered, is refused)
//   5   u8        mode: 1 = secretbox, 2 = secretstream
//   6   u8        keyIdLen, 1..64
//   7   keyIdLen  key id, ASCII [A-Za-z0-9._-]
//   7+keyIdLen    24 bytes: mode 1 the XSalsa20 nonce (random); mode 2 the secretstream header
//
// Keys: the 32-byte pair secret S is never used directly. Each mode uses its own subkey,
//   crypto_kdf_derive_from_key(32, id, "ferryenv", S) with id 1 for mode 1 and id 2 for mode 2,
//   so the two primitives never share a key (domain separation).
//
// Mode 1, secretbox (the writer uses it when the frame stream F is at most 1 MiB):
//   after the prefix, to end of file: crypto_secretbox_easy(prefix ‖ F, nonce, subkey 1)
//   = 16-byte MAC ‖ ciphertext. The plaintext starts with a byte-exact copy of the clear
//   prefix, which the reader compares after opening (binds magic, version, mode, key id,
//   nonce). F ≤ 1 MiB, so the reader refuses more than 16 + P + 1 MiB after the prefix.
//
// Mode 2, secretstream (crypto_secretstream_xchacha20poly1305, subkey 2), for F > 1 MiB:
//   after the prefix, chunks until the end of the file: u32 L ‖ L bytes of ciphertext,
//   17 ≤ L ≤ 65 536 + 17. The first chunk is pushed with the clear prefix as additional
//   data, the others with none. Every chunk but the last has tag MESSAGE and exactly
//   65 536 plaintext bytes; the last has tag FINAL and 0..65 536 plaintext bytes. No
//   other tag, nothing after the FINAL chunk; end of file before FINAL is truncation.
//   The concatenated chunk plaintexts are F.
//
// Frame stream F (independent of chunk boundaries):
//   F       = HEADER, then `count` times (MESSAGE, payload), then END; nothing after END.
//   frame   = type u8 ‖ u32 n ‖ n bytes of UTF-8 JSON (one object), n ≤ 65 536.
//   type 1  HEADER  {"origin","destination","channel","epoch","firstSeq","count","created","acked"
//                    [,"kind":"gap","gap"][,"resealed"]}
//   type 2  MESSAGE {"seq","queue","id","headers","committed","size"[,"compression"]}
//   type 3  END     {"count"}: the number of MESSAGE frames, HEADER.count (0 for a gap record).
//   A gap record (kind "gap") has no MESSAGE frames: it says the sender dead-lettered the sequences
//   firstSeq…firstSeq+count-1 of this epoch, and is the only way a receiver passes a missing sequence.
//   JSON objects carry exactly these fields (unknown ones are rejected). Numbers are
//   non-negative safe integers (count ≥ 1); message i (from 0) has seq = firstSeq + i.
//   payload, when MESSAGE has no "compression": exactly `size` raw bytes.
//   payload, when "compression" is "gzip" (RFC 1952) or "br" (RFC 7932):
//           blocks, each u32 m (1..65 536) ‖ m bytes, then u32 0. The blocks concatenate to
//           one compressed stream that inflates to exactly `size` bytes, with no bytes after
//           its end. (Blocks rather than one up-front length, so a writer can compress a
//           multi-GB payload in one streaming pass.)
//
// The receiver accepts the bundle only if the key named in the prefix exists, binds exactly
// {HEADER.origin, itself}, and HEADER.destination is itself.

import { readSync } from 'node:fs';
import type { BundleHeader, MessageMeta } from './types.js';

/** "FRY1". */
export const MAGIC = Uint8Array.of(0x46, 0x52, 0x59, 0x31);
export const VERSION = 2;
export const MODE_SECRETBOX = 1;
export const MODE_SECRETSTREAM = 2;
/** Offset of the key id in the prefix (magic, version, mode, keyIdLen come first). */
export const PREFIX_FIXED_BYTES = 7;
/** Nonce (mode 1) or secretstream header (mode 2). */
export const NONCE_BYTES = 24;
export const KEY_ID_MAX = 64;
/** Largest frame stream sealed with secretbox. */
export const SECRETBOX_MAX_FRAMES = 1024 * 1024;
/** Plaintext bytes per secretstream chunk. */
export const CHUNK_PLAIN_BYTES = 64 * 1024;
/** crypto_secretstream_xchacha20poly1305_ABYTES. */
export const STREAM_ABYTES = 17;
/** crypto_secretbox_MACBYTES. */
export const BOX_MACBYTES = 16;
export const CHUNK_CIPHER_MAX = CHUNK_PLAIN_BYTES + STREAM_ABYTES;
/** Largest JSON frame body. */
export const JSON_FRAME_MAX = 64 * 1024;
/** Largest compressed block. */
export const BLOCK_MAX = 64 * 1024;
export const FRAME_HEAD_BYTES = 5;

export const FRAME_HEADER = 1;
export const FRAME_MESSAGE = 2;
export const FRAME_END = 3;

/** crypto_kdf context and subkey ids (see the format comment). */
export const KDF_CONTEXT = 'ferryenv';
export const SUBKEY_SECRETBOX = 1;
export const SUBKEY_SECRETSTREAM = 2;
/** Receipts (receipt.ts) are sealed under their own subkey, so no receipt can be taken for a bundle or back. */
export const SUBKEY_RECEIPT = 3;

const utf8 = new TextEncoder();

/** The clear prefix for `mode`, key id and 24-byte nonce/header. */
export function encodePrefix(mode: number, keyId: string, nonce: Uint8Array): Uint8Array {
  const id = utf8.encode(keyId);
  const prefix = new Uint8Array(PREFIX_FIXED_BYTES + id.length + NONCE_BYTES);
  prefix.set(MAGIC, 0);
  prefix[4] = VERSION;
  prefix[5] = mode;
  prefix[6] = id.length;
  prefix.set(id, PREFIX_FIXED_BYTES);
  prefix.set(nonce, PREFIX_FIXED_BYTES + id.length);
  return prefix;
}

/** A 4-byte big-endian u32. */
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** One JSON frame: type, length, body. The caller checks the length against {@link JSON_FRAME_MAX}. */
export function encodeJsonFrame(type: number, body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEAD_BYTES + body.length);
  frame[0] = type;
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, FRAME_HEAD_BYTES);
  return frame;
}

/** The HEADER frame body, fields in canonical order (a checked header: `epoch` and `acked` are set). */
export function headerJson(h: BundleHeader): Uint8Array {
  const o: Record<string, unknown> = {
    origin: h.origin,
    destination: h.destination,
    channel: h.channel,
    epoch: h.epoch,
    firstSeq: h.firstSeq,
    count: h.count,
    created: h.created,
    acked: h.acked,
  };
  if (h.kind !== undefined) o.kind = h.kind;
  if (h.gap !== undefined) o.gap = h.gap;
  if (h.resealed !== undefined) o.resealed = h.resealed;
  return utf8.encode(JSON.stringify(o));
}

/** The MESSAGE frame body, fields in canonical order. */
export function metaJson(m: MessageMeta): Uint8Array {
  const o: Record<string, unknown> = {
    seq: m.seq,
    queue: m.queue,
    id: m.id,
    headers: m.headers,
    committed: m.committed,
    size: m.size,
  };
  if (m.compression !== undefined) o.compression = m.compression;
  return utf8.encode(JSON.stringify(o));
}

/** The END frame body. */
export function endJson(count: number): Uint8Array {
  return utf8.encode(JSON.stringify({ count }));
}

/**
 * The key id a bundle's clear prefix names, from its first bytes (at least 7 + 64 for any id), or undefined when
 * they are not a version-2 prefix. Only for reporting (which key a refused bundle wanted): the parser verifies.
 */
export function clearKeyId(head: Uint8Array): string | undefined {
  if (head.length < PREFIX_FIXED_BYTES + 1) return undefined;
  for (let i = 0; i < 4; i++) if (head[i] !== MAGIC[i]) return undefined;
  if (head[4] !== VERSION) return undefined;
  const len = head[6] as number;
  if (len < 1 || len > KEY_ID_MAX || PREFIX_FIXED_BYTES + len > head.length) return undefined;
  let id = '';
  for (let i = 0; i < len; i++) id += String.fromCharCode(head[PREFIX_FIXED_BYTES + i] as number);
  return /^[A-Za-z0-9._-]{1,64}$/.test(id) ? id : undefined;
}

/** The key id in the clear prefix of the bundle file open at `fd` (see {@link clearKeyId}), or undefined if unreadable. */
export function keyIdOf(fd: number): string | undefined {
  try {
    const buf = Buffer.alloc(PREFIX_FIXED_BYTES + KEY_ID_MAX);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return clearKeyId(buf.subarray(0, n));
  } catch {
    return undefined;
  }
}
