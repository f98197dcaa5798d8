// Hostile bundles, one attack per test, each refused with its exact error code.

import zlib from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSealedBundle, sodiumReady } from '../../src/envelope/index.js';
import { deriveSubkey, streamInitPush, streamPush, TAG_FINAL, TAG_MESSAGE } from '../../src/envelope/sodium.js';
import { concatBytes } from '../../src/envelope/sealer.js';
import { encodePrefix, FRAME_END, FRAME_HEADER, FRAME_MESSAGE, MODE_SECRETSTREAM } from '../../src/envelope/wire-format.js';
import {
  chunks,
  expectCode,
  frameHead,
  header,
  jsonFrame,
  lookup,
  makeKey,
  meta,
  open,
  outgoing,
  pseudoRandom,
  seal,
  sealRaw,
  splitChunks,
  u32,
} from '../envelope/helpers.js';

const key = makeKey('k1', ['alpha', 'beta']);
const keys = lookup(key);
const text = new TextEncoder();

beforeAll(async () => {
  await sodiumReady();
});

/** A well-formed frame stream for `count` messages of `payload`, to tamper with before sealing. */
function goodFrames(count = 1, payload = text.encode('payload')): Uint8Array[] {
  const frames = [jsonFrame(FRAME_HEADER, header({ count }))];
  for (let i = 0; i < count; i++) frames.push(jsonFrame(FRAME_MESSAGE, { ...meta(1 + i), size: payload.length }), payload);
  frames.push(jsonFrame(FRAME_END, { count }));
  return frames;
}

function small(): Promise<Uint8Array> {
  return seal(key, header(), [outgoing(meta(1), text.encode('hello'))]);
}

/** A secretstream bundle of several chunks. */
function multiChunk(): Promise<Uint8Array> {
  return seal(key, header(), [outgoing(meta(1), pseudoRandom(300_000, 3))], { mode: 'secretstream' });
}

/** Seals plaintext chunks with explicit secretstream tags, bypassing the writer's rules. */
function sealTagged(parts: { plain: Uint8Array; tag: number }[]): Uint8Array {
  const subkey = deriveSubkey(key.secret, 'secretstream');
  const { state, header: ssHeader } = streamInitPush(subkey);
  const prefix = encodePrefix(MODE_SECRETSTREAM, key.id, ssHeader);
  const out: Uint8Array[] = [prefix];
  parts.forEach((p, i) => {
    const c = streamPush(state, p.plain, i === 0 ? prefix : null, p.tag);
    out.push(u32(c.length), c);
  });
  return concatBytes(out);
}

describe('hostile bundles are refused with a precise code', () => {
  it('bad magic is EENVELOPE_MAGIC', async () => {
    const b = (await small()).slice();
    b[0] = 0x47;
    await expectCode(open(b, keys), 'EENVELOPE_MAGIC');
  });

  it('an unknown format version is EENVELOPE_VERSION', async () => {
    const b = (await small()).slice();
    b[4] = 3;
    await expectCode(open(b, keys), 'EENVELOPE_VERSION');
    b[4] = 1; // the version before numbered epochs
    await expectCode(open(b, keys), 'EENVELOPE_VERSION');
  });

  it('an unknown sealing mode is EENVELOPE_FORMAT', async () => {
    const b = (await small()).slice();
    b[5] = 7;
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('a key id length of zero is EENVELOPE_FORMAT', async () => {
    const b = (await small()).slice();
    b[6] = 0;
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('a key id this host does not hold is EKEY_UNKNOWN', async () => {
    const b = await seal(makeKey('k9'), header(), [outgoing(meta(1), text.encode('x'))]);
    await expectCode(open(b, keys), 'EKEY_UNKNOWN');
  });

  it('a secretbox bundle sealed with another secret under the same key id is EENVELOPE_MAC', async () => {
    const b = await seal(makeKey('k1'), header(), [outgoing(meta(1), text.encode('x'))]);
    await expectCode(open(b, keys), 'EENVELOPE_MAC');
  });

  it('a secretstream bundle sealed with another secret under the same key id is EENVELOPE_MAC, before any byte is handed over', async () => {
    const b = await seal(makeKey('k1'), header(), [outgoing(meta(1), text.encode('x'))], { mode: 'secretstream' });
    let handed = false;
    await expectCode(
      readSealedBundle(chunks(b), keys, 'beta', {
        onHeader: () => void (handed = true),
        onMessage: async () => {
          handed = true;
          return { write: async () => undefined, end: async () => undefined };
        },
      }),
      'EENVELOPE_MAC',
    );
    expect(handed).toBe(false);
  });

  it('a peer impersonating another origin with its own pair key is EENVELOPE_ORIGIN', async () => {
    // mallory shares k-mb with beta and claims to be alpha.
    const mallory = makeKey('k-mb', ['mallory', 'beta']);
    const b = sealRaw(mallory, goodFrames());
    await expectCode(open(b, lookup(key, mallory)), 'EENVELOPE_ORIGIN');
  });

  it('a bundle addressed to another host is EENVELOPE_DEST', async () => {
    const frames = goodFrames();
    frames[0] = jsonFrame(FRAME_HEADER, header({ destination: 'gamma' }));
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_DEST');
  });

  it('a bundle for this host opened on a host outside the key pair is EENVELOPE_DEST', async () => {
    await expectCode(open(await small(), keys, 'gamma'), 'EENVELOPE_DEST');
  });

  it('a header frame over 64 KiB is EENVELOPE_TOO_LARGE', async () => {
    const body = text.encode(JSON.stringify({ ...header(), pad: 'x'.repeat(70_000) }));
    const b = sealRaw(key, [frameHead(FRAME_HEADER, body.length), body]);
    await expectCode(open(b, keys), 'EENVELOPE_TOO_LARGE');
  });

  it('a frame length claiming 4 GiB is EENVELOPE_TOO_LARGE without allocating it', async () => {
    const before = process.memoryUsage().arrayBuffers;
    await expectCode(open(sealRaw(key, [frameHead(FRAME_HEADER, 0xffffffff)]), keys), 'EENVELOPE_TOO_LARGE');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
  });

  it('a secretstream chunk length claiming 4 GiB is EENVELOPE_TOO_LARGE without allocating it', async () => {
    const { prefix, chunks: cs } = splitChunks(await multiChunk());
    const forged = concatBytes([prefix, u32(0xffffffff), (cs[0] as Uint8Array).subarray(4)]);
    const before = process.memoryUsage().arrayBuffers;
    await expectCode(open(forged, keys), 'EENVELOPE_TOO_LARGE');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
  });

  it('a compressed block length claiming 4 GiB is EENVELOPE_TOO_LARGE', async () => {
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header()),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 10, compression: 'gzip' }),
      u32(0xffffffff),
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_TOO_LARGE');
  });

  it('a gzip bomb (10 bytes declared, 100 MiB inflated) is EENVELOPE_BOMB and stops early', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(100 * 1024 * 1024));
    const blocks: Uint8Array[] = [];
    for (let at = 0; at < bomb.length; at += 65536) {
      const block = bomb.subarray(at, at + 65536);
      blocks.push(u32(block.length), block);
    }
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header()),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 10, compression: 'gzip' }),
      ...blocks,
      u32(0),
      jsonFrame(FRAME_END, { count: 1 }),
    ]);
    const started = performance.now();
    let delivered = 0;
    await expectCode(
      readSealedBundle(chunks(b), keys, 'beta', {
        onMessage: async () => ({ write: async (c) => void (delivered += c.length), end: async () => undefined }),
      }),
      'EENVELOPE_BOMB',
    );
    expect(delivered).toBeLessThanOrEqual(10);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('a streamed brotli bomb (1 MiB declared, 256 MiB inflated) is EENVELOPE_BOMB after at most the declared bytes', async () => {
    const z = zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
    const parts: Buffer[] = [];
    z.on('data', (d: Buffer) => parts.push(d));
    const zeros = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < 16; i++) z.write(zeros);
    await new Promise<void>((resolve) => z.end(resolve));
    const bomb = Buffer.concat(parts);
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header()),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 1024 * 1024, compression: 'br' }),
      u32(bomb.length),
      bomb,
      u32(0),
      jsonFrame(FRAME_END, { count: 1 }),
    ]);
    let delivered = 0;
    const started = performance.now();
    await expectCode(
      readSealedBundle(chunks(b), keys, 'beta', {
        onMessage: async () => ({ write: async (c) => void (delivered += c.length), end: async () => undefined }),
      }),
      'EENVELOPE_BOMB',
    );
    expect(delivered).toBeLessThanOrEqual(1024 * 1024);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('a compressed payload inflating to fewer bytes than declared is EENVELOPE_FORMAT', async () => {
    const packed = zlib.gzipSync(Buffer.alloc(100, 1));
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header()),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 101, compression: 'gzip' }),
      u32(packed.length),
      packed,
      u32(0),
      jsonFrame(FRAME_END, { count: 1 }),
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('bytes after the end of a brotli stream inside a payload are EENVELOPE_FORMAT', async () => {
    const packed = Buffer.concat([zlib.brotliCompressSync(Buffer.alloc(1000, 1)), Buffer.from('smuggled')]);
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header()),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 1000, compression: 'br' }),
      u32(packed.length),
      packed,
      u32(0),
      jsonFrame(FRAME_END, { count: 1 }),
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('trailing bytes after the final secretstream chunk are EENVELOPE_FORMAT', async () => {
    const b = concatBytes([await multiChunk(), Uint8Array.of(0)]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('trailing bytes after a secretbox are EENVELOPE_MAC (the box runs to the end of the file)', async () => {
    const b = concatBytes([await small(), Uint8Array.of(0)]);
    await expectCode(open(b, keys), 'EENVELOPE_MAC');
  });

  it('a whole chunk appended after the FINAL chunk is EENVELOPE_FORMAT', async () => {
    const b = sealTagged([
      { plain: concatBytes(goodFrames()), tag: TAG_FINAL },
      { plain: text.encode('more'), tag: TAG_FINAL },
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('a secretstream bundle whose final chunk was cut off is EENVELOPE_TRUNCATED', async () => {
    const { prefix, chunks: cs } = splitChunks(await multiChunk());
    expect(cs.length).toBeGreaterThan(2);
    await expectCode(open(concatBytes([prefix, ...cs.slice(0, -1)]), keys), 'EENVELOPE_TRUNCATED');
  });

  it('a secretstream bundle that never carries TAG_FINAL is EENVELOPE_TRUNCATED', async () => {
    const plain = concatBytes(goodFrames(1, new Uint8Array(65536 * 2)));
    const full = plain.subarray(0, 65536 * 2); // two full MESSAGE chunks, then nothing
    const b = sealTagged([
      { plain: full.subarray(0, 65536), tag: TAG_MESSAGE },
      { plain: full.subarray(65536), tag: TAG_MESSAGE },
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_TRUNCATED');
  });

  it('a short chunk without TAG_FINAL is EENVELOPE_FORMAT', async () => {
    const plain = concatBytes(goodFrames());
    const b = sealTagged([
      { plain: plain.subarray(0, 10), tag: TAG_MESSAGE },
      { plain: plain.subarray(10), tag: TAG_FINAL },
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('a chunk with the REKEY tag is EENVELOPE_FORMAT', async () => {
    const b = sealTagged([{ plain: concatBytes(goodFrames()), tag: 2 }]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('reordered secretstream chunks are EENVELOPE_MAC', async () => {
    const { prefix, chunks: cs } = splitChunks(await multiChunk());
    const [c0, c1, c2, ...rest] = cs as [Uint8Array, Uint8Array, Uint8Array, ...Uint8Array[]];
    await expectCode(open(concatBytes([prefix, c0, c2, c1, ...rest]), keys), 'EENVELOPE_MAC');
  });

  it('a replayed (duplicated) secretstream chunk is EENVELOPE_MAC', async () => {
    const { prefix, chunks: cs } = splitChunks(await multiChunk());
    const [c0, c1, ...rest] = cs as [Uint8Array, Uint8Array, ...Uint8Array[]];
    await expectCode(open(concatBytes([prefix, c0, c1, c1, ...rest]), keys), 'EENVELOPE_MAC');
  });

  it('a chunk spliced in from another bundle under the same key is EENVELOPE_MAC', async () => {
    const a = splitChunks(await multiChunk());
    const b = splitChunks(await multiChunk());
    await expectCode(open(concatBytes([a.prefix, a.chunks[0] as Uint8Array, ...b.chunks.slice(1)]), keys), 'EENVELOPE_MAC');
  });

  it('a key id relabelled to an alias holding the same secret is EENVELOPE_MAC (the sealed prefix copy differs)', async () => {
    const alias = { ...key, id: 'k2' };
    const b = (await small()).slice();
    b[8] = '2'.charCodeAt(0); // "k1" -> "k2" in the clear prefix
    await expectCode(open(b, lookup(key, alias)), 'EENVELOPE_MAC');
    const s = (await multiChunk()).slice();
    s[8] = '2'.charCodeAt(0);
    await expectCode(open(s, lookup(key, alias)), 'EENVELOPE_MAC');
  });

  it('a duplicate message seq is EENVELOPE_FORMAT', async () => {
    const p = text.encode('x');
    const b = sealRaw(key, [
      jsonFrame(FRAME_HEADER, header({ count: 2 })),
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 1 }),
      p,
      jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 1 }),
      p,
      jsonFrame(FRAME_END, { count: 2 }),
    ]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('fewer messages than the header count is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames(1);
    frames[0] = jsonFrame(FRAME_HEADER, header({ count: 2 }));
    frames[frames.length - 1] = jsonFrame(FRAME_END, { count: 2 });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('more messages than the header count is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames(2);
    frames[0] = jsonFrame(FRAME_HEADER, header({ count: 1 }));
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('an end frame whose count disagrees with the header is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames(1);
    frames[frames.length - 1] = jsonFrame(FRAME_END, { count: 2 });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('a missing end frame is EENVELOPE_FORMAT', async () => {
    await expectCode(open(sealRaw(key, goodFrames().slice(0, -1)), keys), 'EENVELOPE_FORMAT');
  });

  it('sealed bytes after the end frame are EENVELOPE_FORMAT', async () => {
    await expectCode(open(sealRaw(key, [...goodFrames(), Uint8Array.of(0)]), keys), 'EENVELOPE_FORMAT');
  });

  it('a payload shorter than its declared size is EENVELOPE_FORMAT', async () => {
    const b = sealRaw(key, [jsonFrame(FRAME_HEADER, header()), jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 100 }), text.encode('short'), jsonFrame(FRAME_END, { count: 1 })]);
    await expectCode(open(b, keys), 'EENVELOPE_FORMAT');
  });

  it('an unknown field in the metadata is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames();
    frames[1] = jsonFrame(FRAME_MESSAGE, { ...meta(1), size: 7, origin: 'alpha' });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('an unknown field in the header is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames();
    frames[0] = jsonFrame(FRAME_HEADER, { ...header(), priority: 1 });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('a queue name that escapes the spool is EENVELOPE_QUEUE', async () => {
    const frames = goodFrames();
    frames[1] = jsonFrame(FRAME_MESSAGE, { ...meta(1), queue: '../etc', size: 7 });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_QUEUE');
  });

  it('metadata that is not valid UTF-8 is EENVELOPE_FORMAT', async () => {
    const body = Uint8Array.of(0x7b, 0xff, 0x7d);
    await expectCode(open(sealRaw(key, [frameHead(FRAME_HEADER, body.length), body]), keys), 'EENVELOPE_FORMAT');
  });

  it('a header that is a JSON array is EENVELOPE_FORMAT', async () => {
    await expectCode(open(sealRaw(key, [jsonFrame(FRAME_HEADER, [header()])]), keys), 'EENVELOPE_FORMAT');
  });

  it('an unknown frame type is EENVELOPE_FORMAT', async () => {
    const frames = goodFrames();
    frames[1] = jsonFrame(9, { ...meta(1), size: 7 });
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('a message count above the reader limit is EENVELOPE_TOO_LARGE', async () => {
    await expectCode(open(await small(), keys, 'beta', { maxMessages: 0 }), 'EENVELOPE_TOO_LARGE');
  });

  it('a declared payload size above the reader limit is EENVELOPE_TOO_LARGE', async () => {
    await expectCode(open(await small(), keys, 'beta', { maxMessageBytes: 4 }), 'EENVELOPE_TOO_LARGE');
  });

  it('a bundle larger than the reader limit is EENVELOPE_TOO_LARGE', async () => {
    await expectCode(open(await multiChunk(), keys, 'beta', { maxBundleBytes: 100_000 }), 'EENVELOPE_TOO_LARGE');
  });

  it('a secretbox bundle longer than 1 MiB is EENVELOPE_TOO_LARGE as soon as it passes the bound', async () => {
    const b = concatBytes([(await small()).subarray(0, 7 + 2 + 24), new Uint8Array(4 * 1024 * 1024)]);
    let pulled = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < b.length; at += 65536) {
        pulled += 65536;
        yield b.subarray(at, at + 65536);
      }
    }
    await expectCode(open(source(), keys), 'EENVELOPE_TOO_LARGE');
    expect(pulled).toBeLessThan(1.2 * 1024 * 1024);
  });

  it('an empty file is EENVELOPE_TRUNCATED', async () => {
    await expectCode(open(new Uint8Array(0), keys), 'EENVELOPE_TRUNCATED');
  });
});
