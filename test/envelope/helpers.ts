// Shared helpers for envelope tests: keys, in-memory sinks and sources, and a crafting kit for hostile bundles.

import { expect } from 'vitest';
import { isFerryError, type FerryErrorCode } from '../../src/errors.js';
import {
  readSealedBundle,
  writeSealedBundle,
  type BundleHeader,
  type KeyLookup,
  type Limits,
  type MessageMeta,
  type OutgoingMessage,
  type SealKey,
  type WriteBundleOptions,
} from '../../src/envelope/index.js';
import { concatBytes, Sealer, type SealMode } from '../../src/envelope/sealer.js';
import { encodeJsonFrame, u32 } from '../../src/envelope/wire-format.js';

export function makeKey(id = 'k1', peers: readonly [string, string] = ['alpha', 'beta'], fill?: number): SealKey {
  const secret = new Uint8Array(32);
  if (fill === undefined) crypto.getRandomValues(secret);
  else secret.fill(fill);
  return { id, secret, peers };
}

export function lookup(...keys: SealKey[]): KeyLookup {
  return (id) => keys.find((k) => k.id === id);
}

export function header(over: Partial<BundleHeader> = {}): BundleHeader {
  return { origin: 'alpha', destination: 'beta', channel: 'epoch-1', epoch: 1, firstSeq: 1, count: 1, created: 1_700_000_000_000, acked: 0, ...over };
}

export function meta(seq: number, over: Partial<Omit<MessageMeta, 'seq'>> = {}): Omit<MessageMeta, 'compression'> {
  return { seq, queue: 'orders', id: `m-${seq}`, headers: {}, committed: 1_700_000_000_000 + seq, size: 0, ...over };
}

/** An outgoing message whose payload is `payload`, yielded in pieces of `piece` bytes. */
export function outgoing(m: Omit<MessageMeta, 'compression' | 'size'>, payload: Uint8Array, compression?: 'gzip' | 'br' | 'none', piece = 64 * 1024): OutgoingMessage {
  return {
    meta: { ...m, size: payload.length },
    compression,
    async *payload() {
      for (let at = 0; at < payload.length; at += piece) yield payload.slice(at, at + piece);
    },
  };
}

/** Seals into memory. */
export async function seal(
  key: SealKey,
  h: BundleHeader,
  messages: Iterable<OutgoingMessage> | AsyncIterable<OutgoingMessage>,
  opts?: WriteBundleOptions,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const { bytes } = await writeSealedBundle({ write: async (c) => void parts.push(c) }, key, h, messages, opts);
  const all = concatBytes(parts);
  expect(all.length).toBe(bytes);
  return all;
}

/** `bytes` as an async iterable of `piece`-byte chunks. */
export async function* chunks(bytes: Uint8Array, piece = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += piece) yield bytes.subarray(at, at + piece);
}

export interface Opened {
  header: BundleHeader;
  messages: { meta: MessageMeta; payload: Uint8Array }[];
  /** Payload bytes handed over before the outcome was known. */
  delivered: number;
}

/** Opens from memory, collecting everything. */
export async function open(
  bytes: Uint8Array | AsyncIterable<Uint8Array>,
  keys: KeyLookup,
  self = 'beta',
  limits?: Partial<Limits>,
  piece?: number,
): Promise<Opened> {
  const messages: Opened['messages'] = [];
  const input = bytes instanceof Uint8Array ? chunks(bytes, piece) : bytes;
  let delivered = 0;
  const h = await readSealedBundle(
    input,
    keys,
    self,
    {
      async onMessage(m) {
        const parts: Uint8Array[] = [];
        return {
          async write(c) {
            delivered += c.length;
            parts.push(c);
          },
          async end() {
            messages.push({ meta: m, payload: concatBytes(parts).slice() });
          },
        };
      },
    },
    limits,
  );
  return { header: h, messages, delivered };
}

/** Asserts `p` rejects with a FerryError of `code`. */
export async function expectCode(p: Promise<unknown>, code: FerryErrorCode): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isFerryError(err)) throw new Error(`expected FerryError ${code}, got ${err === undefined ? 'success' : String(err)}`, { cause: err });
  expect(err.code, err.message).toBe(code);
}

/** Deterministic pseudo-random bytes (xorshift), for payloads. */
export function pseudoRandom(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// ── crafting kit: validly sealed bundles with hostile content ─────────────────────────────

const utf8 = new TextEncoder();

/** A JSON frame of `type` with an arbitrary body (unchecked). */
export function jsonFrame(type: number, body: unknown): Uint8Array {
  return encodeJsonFrame(type, utf8.encode(JSON.stringify(body)));
}

/** A frame head claiming `len` bytes, without the body. */
export function frameHead(type: number, len: number): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = type;
  b.set(u32(len), 1);
  return b;
}

export { u32 };

/** Seals raw plaintext frame bytes exactly as given, with a genuine key: what a malicious or buggy peer could send. */
export function sealRaw(key: SealKey, plaintext: readonly Uint8Array[], mode: SealMode = 'auto'): Uint8Array {
  const sealer = new Sealer(key, mode);
  for (const p of plaintext) sealer.write(p);
  sealer.end();
  return concatBytes(sealer.takeOutput(true));
}

/** Splits a secretstream bundle into its prefix and its chunks (each with its length field). */
export function splitChunks(bundle: Uint8Array): { prefix: Uint8Array; chunks: Uint8Array[] } {
  const idLen = bundle[6] as number;
  const prefixLen = 7 + idLen + 24;
  const out: Uint8Array[] = [];
  let at = prefixLen;
  const view = new DataView(bundle.buffer, bundle.byteOffset, bundle.byteLength);
  while (at < bundle.length) {
    const len = view.getUint32(at);
    out.push(bundle.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  return { prefix: bundle.subarray(0, prefixLen), chunks: out };
}
