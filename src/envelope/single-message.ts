// seal/open for one message held in memory: the bundle format with a count of one, synchronous.

import { FerryError } from '../errors.js';
import { compressSync, type CompressOptions } from './compress.js';
import { inflateSync } from './decompress.js';
import { BundleParser, NEED_INPUT } from './parser.js';
import { concatBytes, Sealer, type SealMode } from './sealer.js';
import { requireSodium } from './sodium.js';
import type { BundleHeader, KeyLookup, Limits, MessageMeta, SealKey } from './types.js';
import { bindsPair, checkBundleHeader, checkMessageMeta, checkSealKey, checkSelf, resolveLimits } from './validate.js';
import { BLOCK_MAX, encodeJsonFrame, endJson, FRAME_END, FRAME_HEADER, FRAME_MESSAGE, headerJson, JSON_FRAME_MAX, metaJson, u32 } from './wire-format.js';

/** The envelope fields of a single message: a bundle header without `firstSeq` and `count` (they are `meta.seq` and 1). */
export type MessageEnvelope = Omit<BundleHeader, 'firstSeq' | 'count'>;

/** Options of {@link sealMessage}. */
export interface SealMessageOptions extends CompressOptions {
  /** Compress the payload when that shrinks it. Default `'none'`. */
  compression?: 'gzip' | 'br' | 'none';
  /** Sealing mode. Default `'auto'` (secretbox up to 1 MiB, secretstream beyond). */
  mode?: SealMode;
}

/** What {@link openMessage} returns. */
export interface OpenedMessage {
  header: BundleHeader;
  meta: MessageMeta;
  payload: Uint8Array;
}

/**
 * Seals one in-memory message into a one-message bundle. Synchronous: await `sodiumReady()` once first
 * (else `EUSAGE`). The result is what {@link openMessage} and `readSealedBundle` open.
 */
export function sealMessage(
  key: SealKey,
  envelope: MessageEnvelope,
  meta: Omit<MessageMeta, 'size' | 'compression'>,
  payload: Uint8Array,
  opts: SealMessageOptions = {},
): Uint8Array {
  requireSodium();
  const k = checkSealKey(key);
  if (!(payload instanceof Uint8Array)) throw new FerryError('EUSAGE', 'expected the payload to be a Uint8Array.');
  const m = checkMessageMeta({ ...meta, size: payload.length }, 'seal');
  const h = checkBundleHeader({ ...envelope, firstSeq: m.seq, count: 1 }, 'seal');
  if (!bindsPair(k, h.origin, h.destination)) {
    throw new FerryError('EKEY_PAIR', `key ${k.id} binds ${k.peers[0]} and ${k.peers[1]}, not ${h.origin} and ${h.destination}.`, { peer: h.destination });
  }
  const compression = opts.compression ?? 'none';
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'br') {
    throw new FerryError('EUSAGE', `expected compression to be gzip, br or none, got ${String(compression)}.`);
  }
  let packed: Uint8Array | undefined;
  if (compression !== 'none' && payload.length > 0) {
    packed = compressSync(compression, payload, opts);
    if (packed.length >= payload.length) packed = undefined; // does not shrink: send as is
  }

  const sealer = new Sealer(k, opts.mode ?? 'auto');
  try {
    sealer.write(encodeJsonFrame(FRAME_HEADER, headerJson(h)));
    const body = metaJson(packed === undefined || compression === 'none' ? m : { ...m, compression });
    if (body.length > JSON_FRAME_MAX) {
      throw new FerryError('EHEADER', `the metadata of message ${m.id} encodes to ${body.length} bytes; at most ${JSON_FRAME_MAX} fit in a frame (shorten its headers).`);
    }
    sealer.write(encodeJsonFrame(FRAME_MESSAGE, body));
    if (packed === undefined) {
      sealer.write(payload);
    } else {
      for (let at = 0; at < packed.length; at += BLOCK_MAX) {
        const block = packed.subarray(at, Math.min(at + BLOCK_MAX, packed.length));
        sealer.write(u32(block.length));
        sealer.write(block);
      }
      sealer.write(u32(0));
    }
    sealer.write(encodeJsonFrame(FRAME_END, endJson(1)));
    sealer.end();
    return concatBytes(sealer.takeOutput(true));
  } finally {
    sealer.dispose();
  }
}

/**
 * Default `maxMessageBytes` of {@link openMessage}: it inflates in memory, so a peer declaring a huge size
 * for a small compressed payload must not be able to make it allocate gigabytes. Pass `limits` to raise it.
 */
export const OPEN_MESSAGE_MAX_BYTES = 256 * 1024 * 1024;

/**
 * Opens a one-message bundle held in memory, with every check of `readSealedBundle` (same error codes),
 * plus `EENVELOPE_FORMAT` when the bundle holds more than one message. `limits.maxMessageBytes` defaults to
 * {@link OPEN_MESSAGE_MAX_BYTES}. Synchronous: await `sodiumReady()` once first.
 */
export function openMessage(bytes: Uint8Array, keys: KeyLookup, self: string, limits?: Partial<Limits>): OpenedMessage {
  requireSodium();
  if (!(bytes instanceof Uint8Array)) throw new FerryError('EUSAGE', 'expected the sealed message to be a Uint8Array.');
  const parser = new BundleParser(keys, checkSelf(self), resolveLimits({ maxMessageBytes: OPEN_MESSAGE_MAX_BYTES, ...limits }));
  parser.push(bytes);
  parser.end();
  let header: BundleHeader | undefined;
  let meta: MessageMeta | undefined;
  const parts: Uint8Array[] = [];
  try {
    for (;;) {
      const ev = parser.next();
      if (ev === NEED_INPUT) throw new FerryError('EENVELOPE_TRUNCATED', 'the sealed message ends early.'); // cannot happen after end()
      switch (ev.kind) {
        case 'header':
          if (ev.header.count !== 1) {
            throw new FerryError('EENVELOPE_FORMAT', `the envelope holds ${ev.header.count} messages; openMessage opens single messages (use readSealedBundle).`, {
              peer: ev.header.origin,
            });
          }
          header = ev.header;
          break;
        case 'message':
          meta = ev.meta;
          break;
        case 'data':
          parts.push(ev.bytes);
          break;
        case 'message-end':
          break;
        case 'end': {
          const m = meta as MessageMeta;
          const data = concatBytes(parts);
          const payload = m.compression === undefined ? data : inflateSync(m.compression, data, m.size);
          return { header: header as BundleHeader, meta: m, payload };
        }
      }
    }
  } finally {
    parser.dispose();
  }
}
