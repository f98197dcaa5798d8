// Streams a bundle of messages into a sealed file: frames, optional per-message compression, sealing, large writes.

import { FerryError } from '../errors.js';
import { compressStream, compressSync, type CompressOptions } from './compress.js';
import { concatBytes, Sealer, type SealMode } from './sealer.js';
import { sodiumReady } from './sodium.js';
import type { BundleHeader, ByteSink, MessageMeta, OutgoingMessage, SealKey } from './types.js';
import { bindsPair, checkBundleHeader, checkMessageMeta, checkSealKey, describe, messageCount } from './validate.js';
import {
  BLOCK_MAX,
  encodeJsonFrame,
  endJson,
  FRAME_END,
  FRAME_HEADER,
  FRAME_MESSAGE,
  headerJson,
  JSON_FRAME_MAX,
  metaJson,
  u32,
} from './wire-format.js';

/** Options of {@link writeSealedBundle}. */
export interface WriteBundleOptions extends CompressOptions {
  /** Sealing mode. Default `'auto'`: secretbox when the frames fit in 1 MiB, else secretstream. */
  mode?: SealMode;
  /** Approximate size of the chunks handed to `out.write`. Default about 256 KiB (four sealed chunks). */
  writeChunkBytes?: number;
}

/** Four sealed 64 KiB chunks with their lengths, plus room for the prefix: about 256 KiB. */
const DEFAULT_WRITE_CHUNK = 4 * (4 + 64 * 1024 + 17) + 128;

/** Payloads up to this size are compressed in one go, and sent uncompressed when that does not shrink them. */
const SYNC_COMPRESS_MAX = 256 * 1024;
const ZERO = u32(0);

/**
 * Seals `messages` into one bundle, written to `out` as it goes. Memory stays bounded whatever the payload
 * sizes: at most 1 MiB of plaintext (while it may still fit one secretbox) plus about `writeChunkBytes` of output.
 * Checks that the key binds origin and destination (EKEY_PAIR), that there are exactly `header.count` messages
 * with seqs `firstSeq…` (EENVELOPE_FORMAT), and that each payload yields exactly `meta.size` bytes (EENVELOPE_FORMAT).
 * On failure what was written to `out` is garbage and must be discarded.
 */
export async function writeSealedBundle(
  out: ByteSink,
  key: SealKey,
  header: BundleHeader,
  messages: Iterable<OutgoingMessage> | AsyncIterable<OutgoingMessage>,
  opts: WriteBundleOptions = {},
): Promise<{ bytes: number }> {
  await sodiumReady();
  const k = checkSealKey(key);
  const h = checkBundleHeader(header, 'seal');
  if (!bindsPair(k, h.origin, h.destination)) {
    throw new FerryError('EKEY_PAIR', `key ${k.id} binds ${k.peers[0]} and ${k.peers[1]}, not ${h.origin} and ${h.destination}.`, { peer: h.destination });
  }
  const chunkBytes = opts.writeChunkBytes ?? DEFAULT_WRITE_CHUNK;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw new FerryError('EUSAGE', `expected writeChunkBytes to be a positive integer, got ${describe(chunkBytes)}.`);
  }

  const sealer = new Sealer(k, opts.mode ?? 'auto', chunkBytes);
  let bytes = 0;
  const flush = async (all: boolean): Promise<void> => {
    if (sealer.pendingBytes === 0 || (!all && sealer.pendingBytes < chunkBytes)) return;
    for (const chunk of sealer.takeOutput(all)) {
      bytes += chunk.length;
      await out.write(chunk);
    }
  };
  // Large inputs are fed in slices so sealed output never piles up between flushes.
  const feed = async (data: Uint8Array): Promise<void> => {
    for (let at = 0; at < data.length; at += chunkBytes) {
      sealer.write(data.subarray(at, Math.min(at + chunkBytes, data.length)));
      await flush(false);
    }
  };

  try {
    sealer.write(encodeJsonFrame(FRAME_HEADER, headerJson(h)));
    let index = 0;
    for await (const msg of messages) {
      if (index >= messageCount(h)) throw new FerryError('EENVELOPE_FORMAT', `more messages were given than the header's count of ${messageCount(h)}.`);
      const meta = checkMessageMeta(msg.meta, 'seal');
      const expected = h.firstSeq + index;
      if (meta.seq !== expected) {
        throw new FerryError('EENVELOPE_FORMAT', `message ${meta.id} has seq ${meta.seq}; message ${index} of the bundle must have seq ${expected}.`, {
          queue: meta.queue,
        });
      }
      await writeMessage(sealer, meta, msg, opts, feed, flush);
      index++;
    }
    if (index !== messageCount(h)) throw new FerryError('EENVELOPE_FORMAT', `${index} messages were given; the header says ${messageCount(h)}.`);
    sealer.write(encodeJsonFrame(FRAME_END, endJson(index)));
    sealer.end();
    await flush(true);
    return { bytes };
  } finally {
    sealer.dispose();
  }
}

async function writeMessage(
  sealer: Sealer,
  meta: MessageMeta,
  msg: OutgoingMessage,
  opts: CompressOptions,
  feed: (data: Uint8Array) => Promise<void>,
  flush: (all: boolean) => Promise<void>,
): Promise<void> {
  const compression = msg.compression ?? 'none';
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'br') {
    throw new FerryError('EUSAGE', `expected compression to be gzip, br or none, got ${describe(compression)}.`, { queue: meta.queue });
  }
  const payload = exactPayload(msg, meta);
  if (compression === 'none' || meta.size === 0) {
    sealer.write(metaFrame(meta));
    for await (const chunk of payload) await feed(chunk);
    return;
  }
  if (meta.size <= SYNC_COMPRESS_MAX) {
    const parts: Uint8Array[] = [];
    for await (const chunk of payload) parts.push(chunk);
    const data = concatBytes(parts);
    const packed = compressSync(compression, data, opts);
    if (packed.length >= data.length) {
      sealer.write(metaFrame(meta));
      await feed(data);
      return;
    }
    sealer.write(metaFrame({ ...meta, compression }));
    writeBlocks(sealer, packed);
    sealer.write(ZERO);
    await flush(false);
    return;
  }
  // Large: compress as it streams. Each output piece becomes blocks; the list ends with a zero length.
  sealer.write(metaFrame({ ...meta, compression }));
  await compressStream(compression, payload, meta.size, opts, async (piece) => {
    writeBlocks(sealer, piece);
    await flush(false);
  });
  sealer.write(ZERO);
}

function writeBlocks(sealer: Sealer, data: Uint8Array): void {
  for (let at = 0; at < data.length; at += BLOCK_MAX) {
    const block = data.subarray(at, Math.min(at + BLOCK_MAX, data.length));
    sealer.write(u32(block.length));
    sealer.write(block);
  }
}

function metaFrame(meta: MessageMeta): Uint8Array {
  const body = metaJson(meta);
  if (body.length > JSON_FRAME_MAX) {
    throw new FerryError('EHEADER', `the metadata of message ${meta.id} encodes to ${body.length} bytes; at most ${JSON_FRAME_MAX} fit in a frame (shorten its headers).`, {
      queue: meta.queue,
    });
  }
  return encodeJsonFrame(FRAME_MESSAGE, body);
}

/** The payload, checked to be Uint8Array chunks totalling exactly `meta.size` bytes; throws before passing on a byte too many. */
async function* exactPayload(msg: OutgoingMessage, meta: MessageMeta): AsyncGenerator<Uint8Array> {
  let seen = 0;
  for await (const chunk of msg.payload()) {
    if (!(chunk instanceof Uint8Array)) {
      throw new FerryError('EUSAGE', `the payload of message ${meta.id} yielded ${describe(chunk)}, not bytes.`, { queue: meta.queue });
    }
    seen += chunk.length;
    if (seen > meta.size) {
      throw new FerryError('EENVELOPE_FORMAT', `the payload of message ${meta.id} yields more than its declared ${meta.size} bytes.`, { queue: meta.queue });
    }
    if (chunk.length > 0) yield chunk;
  }
  if (seen !== meta.size) {
    throw new FerryError('EENVELOPE_FORMAT', `the payload of message ${meta.id} yields ${seen} bytes, not its declared ${meta.size}.`, { queue: meta.queue });
  }
}
