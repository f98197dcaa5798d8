// Payload compression before sealing: whole-buffer for small payloads, streaming for large ones.

import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { FerryError } from '../errors.js';

export type Compression = 'gzip' | 'br';

/** Compression settings. */
export interface CompressOptions {
  /** gzip level, 1–9. Default 6. */
  gzipLevel?: number;
  /** brotli quality, 0–11. Default 5: 11 compresses a few percent better at about a hundredth of the speed. */
  brotliQuality?: number;
}

const OUT_CHUNK = 64 * 1024;

function brotliParams(opts: CompressOptions, sizeHint: number): Record<number, number> {
  return {
    [zlib.constants.BROTLI_PARAM_QUALITY]: opts.brotliQuality ?? 5,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: Math.min(sizeHint, 0xffffffff),
  };
}

/**
 * `data` compressed in one go. The window shrinks to fit small inputs: zlib's default state is ~256 KiB,
 * and allocating that per 1 KiB message cost ~6× the compression itself (with identical output size).
 */
export function compressSync(kind: Compression, data: Uint8Array, opts: CompressOptions = {}): Uint8Array {
  const bits = Math.min(15, Math.max(9, Math.ceil(Math.log2(data.length + 1))));
  try {
    return kind === 'gzip'
      ? zlib.gzipSync(data, { level: opts.gzipLevel ?? 6, windowBits: bits, memLevel: Math.min(8, Math.max(1, bits - 6)) })
      : zlib.brotliCompressSync(data, {
          params: { ...brotliParams(opts, data.length), [zlib.constants.BROTLI_PARAM_LGWIN]: Math.max(10, Math.min(24, bits + 1)) },
        });
  } catch (err) {
    throw new FerryError('EUSAGE', `could not ${kind}-compress a payload (check the compression options).`, { cause: err });
  }
}

/**
 * Compresses `source` as it streams, handing each piece of output (at most 64 KiB) to `onOutput`
 * and waiting for it, so memory stays bounded. Errors from `source` and `onOutput` come out unchanged.
 */
export async function compressStream(
  kind: Compression,
  source: AsyncIterable<Uint8Array>,
  sizeHint: number,
  opts: CompressOptions,
  onOutput: (piece: Uint8Array) => Promise<void>,
): Promise<void> {
  let z: zlib.Gzip | zlib.BrotliCompress;
  try {
    z =
      kind === 'gzip'
        ? zlib.createGzip({ level: opts.gzipLevel ?? 6, chunkSize: OUT_CHUNK })
        : zlib.createBrotliCompress({ chunkSize: OUT_CHUNK, params: brotliParams(opts, sizeHint) });
  } catch (err) {
    throw new FerryError('EUSAGE', `could not start ${kind} compression (check the compression options).`, { cause: err });
  }
  let primary: { err: unknown } | undefined;
  try {
    await pipeline(
      async function* () {
        try {
          yield* source;
        } catch (err) {
          primary ??= { err };
          throw err;
        }
      },
      z,
      async function (out: AsyncIterable<Buffer>) {
        for await (const piece of out) {
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
    throw new FerryError('EENVELOPE_FORMAT', `${kind} compression failed.`, { cause: err });
  }
}
