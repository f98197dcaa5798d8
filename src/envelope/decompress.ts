// Bounded decompression of received payloads: never inflates past the declared size (a bomb stops at size + one chunk).

import { constants as bufferConstants } from 'node:buffer';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { FerryError } from '../errors.js';
import type { Compression } from './compress.js';

const OUT_CHUNK = 64 * 1024;

function bomb(kind: Compression, size: number): FerryError {
  return new FerryError('EENVELOPE_BOMB', `a ${kind} payload inflates past its declared ${size} bytes.`);
}

function short(kind: Compression, size: number, got: number): FerryError {
  return new FerryError('EENVELOPE_FORMAT', `a ${kind} payload inflates to ${got} bytes, not its declared ${size}.`);
}

function trailing(kind: Compression): FerryError {
  return new FerryError('EENVELOPE_FORMAT', `a ${kind} payload has bytes after the end of its compressed stream.`);
}

/** Inflates `compressed` (all in memory) to exactly `size` bytes, stopping as soon as the output would pass `size`. */
export function inflateSync(kind: Compression, compressed: Uint8Array, size: number): Uint8Array {
  if (size >= bufferConstants.MAX_LENGTH) {
    throw new FerryError('EENVELOPE_TOO_LARGE', `a payload of ${size} bytes is too large to open in memory.`);
  }
  // One byte of slack: output of exactly size + 1 is a bomb too, and maxOutputLength must be ≥ 1.
  // Output chunks no bigger than needed: small payloads should not allocate 64 KiB each.
  const opts = { maxOutputLength: size + 1, chunkSize: Math.min(OUT_CHUNK, Math.max(64, size + 1)), info: true } as const;
  let result: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    result = (kind === 'gzip' ? zlib.gunzipSync(compressed, opts) : zlib.brotliDecompressSync(compressed, opts)) as unknown as typeof result;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') throw bomb(kind, size);
    throw new FerryError('EENVELOPE_FORMAT', `a ${kind} payload is corrupt.`, { cause: err });
  }
  if (result.buffer.length > size) throw bomb(kind, size);
  if (result.buffer.length < size) throw short(kind, size, result.buffer.length);
  if (result.engine.bytesWritten !== compressed.length) throw trailing(kind);
  return result.buffer;
}

/** Output a payload may reach before the inflate-ratio bound applies (small payloads compress very well legitimately). */
const RATIO_FREE_BYTES = 1024 * 1024;

/**
 * Inflates a compressed stream to exactly `size` bytes, handing each piece (≤ 64 KiB) to `onOutput`
 * and waiting for it. Past `size` it stops at once with EENVELOPE_BOMB: at most one more chunk is
 * inflated. So does an output that, past 1 MiB, exceeds `maxRatio` times the compressed bytes fed
 * so far: a declared size is the sender's word, the ratio is the receiver's own limit.
 * Errors from `source` and `onOutput` come out unchanged.
 */
export async function inflateStream(
  kind: Compression,
  source: AsyncIterable<Uint8Array>,
  size: number,
  onOutput: (piece: Uint8Array) => Promise<void>,
  maxRatio = Number.POSITIVE_INFINITY,
): Promise<void> {
  const z = kind === 'gzip' ? zlib.createGunzip({ chunkSize: OUT_CHUNK }) : zlib.createBrotliDecompress({ chunkSize: OUT_CHUNK });
  let fed = 0;
  let produced = 0;
  let primary: { err: unknown } | undefined;
  try {
    await pipeline(
      async function* () {
        try {
          for await (const piece of source) {
            fed += piece.length;
            yield piece;
          }
        } catch (err) {
          primary ??= { err };
          throw err;
        }
      },
      z,
      async function (out: AsyncIterable<Buffer>) {
        for await (const piece of out) {
          produced += piece.length;
          if (produced > size) {
            primary ??= { err: bomb(kind, size) };
            throw primary.err;
          }
          if (produced > RATIO_FREE_BYTES && produced > maxRatio * fed) {
            primary ??= { err: new FerryError('EENVELOPE_BOMB', `a ${kind} payload inflates more than ${maxRatio} times its compressed size, past this host's limit.`) };
            throw primary.err;
          }
          try {
            await onOutput(piece);
          } catch (err) {
            primary ??= { err };
            throw err;
          }
        }
      },
    );
  } catch (err) {
    if (primary !== undefined) throw primary.err;
    throw new FerryError('EENVELOPE_FORMAT', `a ${kind} payload is corrupt.`, { cause: err });
  }
  if (produced < size) throw short(kind, size, produced);
  if (z.bytesWritten !== fed) throw trailing(kind);
}
