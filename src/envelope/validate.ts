// Strict validation of everything that goes into or comes out of a bundle: keys, headers, message metadata, limits.

import { FerryError, type FerryErrorCode } from '../errors.js';
import { DEFAULT_LIMITS, type BundleHeader, type Limits, type MessageMeta, type SealKey } from './types.js';

export const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const QUEUE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const HEADER_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const CHANNEL_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const KEY_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const MESSAGE_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_HEADERS = 64;
export const MAX_HEADER_VALUE_BYTES = 4096;

/**
 * Who is validating: `seal` checks the caller's own input (name errors get the input codes),
 * `open` checks what a peer sealed (everything is a malformed envelope).
 */
export type Side = 'seal' | 'open';

type Kind = 'host' | 'queue' | 'header' | 'format';

const CODES: Record<Side, Record<Kind, FerryErrorCode>> = {
  seal: { host: 'EHOST_NAME', queue: 'EQUEUE_NAME', header: 'EHEADER', format: 'EENVELOPE_FORMAT' },
  open: { host: 'EENVELOPE_FORMAT', queue: 'EENVELOPE_QUEUE', header: 'EENVELOPE_FORMAT', format: 'EENVELOPE_FORMAT' },
};

function fail(side: Side, kind: Kind, message: string): never {
  throw new FerryError(CODES[side][kind], message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Rejects fields other than `allowed` (only for what a peer sealed; our own callers may pass richer objects). */
function onlyFields(side: Side, what: string, v: Record<string, unknown>, allowed: readonly string[]): void {
  if (side !== 'open') return;
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) fail(side, 'format', `${what} has an unknown field ${JSON.stringify(k.slice(0, 64))}.`);
  }
}

function safeInt(side: Side, what: string, v: unknown, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    fail(side, 'format', `expected ${what} to be an integer from ${min} to 2^53-1, got ${describe(v)}.`);
  }
  return v;
}

function name(side: Side, kind: Kind, what: string, v: unknown, re: RegExp): string {
  if (typeof v !== 'string' || !re.test(v)) fail(side, kind, `expected ${what} to match ${re.source}, got ${describe(v)}.`);
  return v;
}

/** A short, safe rendering of a bad value for an error message. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

const HEADER_FIELDS = ['origin', 'destination', 'channel', 'epoch', 'firstSeq', 'count', 'created', 'acked', 'kind', 'gap', 'resealed'] as const;
/** Longest reason a gap record carries, in UTF-8 bytes. */
export const MAX_GAP_REASON_BYTES = 512;

/**
 * A fresh, checked copy of a bundle header, with `epoch` and `acked` always set. When sealing they default to 1 and
 * 0; a peer's header must carry both.
 */
export function checkBundleHeader(v: unknown, side: Side): BundleHeader & { epoch: number; acked: number } {
  if (!isRecord(v)) fail(side, 'format', `expected the bundle header to be an object, got ${describe(v)}.`);
  onlyFields(side, 'the bundle header', v, HEADER_FIELDS);
  const h: BundleHeader & { epoch: number; acked: number } = {
    origin: name(side, 'host', 'header.origin', v.origin, HOST_RE),
    destination: name(side, 'host', 'header.destination', v.destination, HOST_RE),
    channel: name(side, 'format', 'header.channel', v.channel, CHANNEL_RE),
    epoch: side === 'seal' && v.epoch === undefined ? 1 : safeInt(side, 'header.epoch', v.epoch, 1),
    firstSeq: safeInt(side, 'header.firstSeq', v.firstSeq, 1),
    count: safeInt(side, 'header.count', v.count, 1),
    created: safeInt(side, 'header.created', v.created),
    acked: side === 'seal' && v.acked === undefined ? 0 : safeInt(side, 'header.acked', v.acked),
  };
  if (h.firstSeq + h.count - 1 > Number.MAX_SAFE_INTEGER) {
    fail(side, 'format', `header.firstSeq ${h.firstSeq} plus count ${h.count} runs past 2^53-1.`);
  }
  // The receiver cannot have delivered what the sender had not sealed yet: a bundle claiming so is malformed.
  if (side === 'open' && h.acked >= h.firstSeq) fail(side, 'format', `header.acked ${h.acked} is not below header.firstSeq ${h.firstSeq}.`);
  if (v.kind !== undefined) {
    if (v.kind !== 'gap') fail(side, 'format', `expected header.kind to be "gap" or absent, got ${describe(v.kind)}.`);
    if (typeof v.gap !== 'string' || Buffer.byteLength(v.gap, 'utf8') > MAX_GAP_REASON_BYTES) {
      fail(side, 'format', `expected header.gap (the reason of a gap record) to be a string of at most ${MAX_GAP_REASON_BYTES} bytes, got ${describe(v.gap)}.`);
    }
    h.kind = 'gap';
    h.gap = v.gap;
  } else if (v.gap !== undefined) {
    fail(side, 'format', 'header.gap is only allowed in a gap record (kind "gap").');
  }
  if (v.resealed !== undefined) {
    const n = safeInt(side, 'header.resealed', v.resealed, 1);
    if (n > h.count || h.kind === 'gap') fail(side, 'format', `header.resealed ${n} must count messages of this bundle (at most ${h.count}, none for a gap record).`);
    h.resealed = n;
  }
  return h;
}

const META_FIELDS = ['seq', 'queue', 'id', 'headers', 'committed', 'size', 'compression'] as const;

/** A fresh, checked copy of message metadata. On `seal`, `compression` is not read (the writer decides it). */
export function checkMessageMeta(v: unknown, side: Side): MessageMeta {
  if (!isRecord(v)) fail(side, 'format', `expected message metadata to be an object, got ${describe(v)}.`);
  onlyFields(side, 'message metadata', v, META_FIELDS);
  const meta: MessageMeta = {
    seq: safeInt(side, 'meta.seq', v.seq),
    queue: name(side, 'queue', 'meta.queue', v.queue, QUEUE_RE),
    id: name(side, 'format', 'meta.id', v.id, MESSAGE_ID_RE),
    headers: checkHeaders(v.headers, side),
    committed: safeInt(side, 'meta.committed', v.committed),
    size: safeInt(side, 'meta.size', v.size),
  };
  if (side === 'open' && v.compression !== undefined) {
    if (v.compression !== 'gzip' && v.compression !== 'br') {
      fail(side, 'format', `expected meta.compression to be "gzip" or "br", got ${describe(v.compression)}.`);
    }
    meta.compression = v.compression;
  }
  return meta;
}

function checkHeaders(v: unknown, side: Side): Record<string, string> {
  if (!isRecord(v)) fail(side, 'header', `expected meta.headers to be an object of strings, got ${describe(v)}.`);
  const keys = Object.keys(v);
  if (keys.length > MAX_HEADERS) fail(side, 'header', `a message carries at most ${MAX_HEADERS} headers, got ${keys.length}.`);
  // A plain object is safe: the name pattern excludes `__proto__`, so every header is an own data property.
  const out: Record<string, string> = {};
  for (const k of keys) {
    if (!HEADER_KEY_RE.test(k)) fail(side, 'header', `expected header name to match ${HEADER_KEY_RE.source}, got ${describe(k)}.`);
    const value = v[k];
    if (typeof value !== 'string') fail(side, 'header', `expected header ${k} to be a string, got ${describe(value)}.`);
    // Cheap bound first: a UTF-16 code unit is at most 3 UTF-8 bytes.
    if (value.length * 3 > MAX_HEADER_VALUE_BYTES && Buffer.byteLength(value, 'utf8') > MAX_HEADER_VALUE_BYTES) {
      fail(side, 'header', `header ${k} is longer than ${MAX_HEADER_VALUE_BYTES} bytes.`);
    }
    out[k] = value;
  }
  return out;
}

/** The END frame body (its count is 0 for a gap record). */
export function checkEndFrame(v: unknown): { count: number } {
  if (!isRecord(v)) fail('open', 'format', `expected the end frame to be an object, got ${describe(v)}.`);
  onlyFields('open', 'the end frame', v, ['count']);
  return { count: safeInt('open', 'end.count', v.count, 0) };
}

/** The number of MESSAGE frames a bundle with this header holds: `count`, or none for a gap record. */
export function messageCount(h: BundleHeader): number {
  return h.kind === 'gap' ? 0 : h.count;
}

/** Checks a key handed to us (by the caller or a KeyLookup); a malformed one is `EKEYFORMAT`. */
export function checkSealKey(key: unknown): SealKey {
  const bad = (why: string): never => {
    throw new FerryError('EKEYFORMAT', `key is malformed: ${why}.`);
  };
  if (!isRecord(key)) return bad('not an object');
  if (typeof key.id !== 'string' || !KEY_ID_RE.test(key.id)) bad(`id ${describe(key.id)} does not match ${KEY_ID_RE.source}`);
  if (!(key.secret instanceof Uint8Array) || key.secret.length !== 32) bad(`secret of key ${String(key.id)} is not 32 bytes`);
  const peers = key.peers;
  if (!Array.isArray(peers) || peers.length !== 2 || !peers.every((p) => typeof p === 'string' && HOST_RE.test(p))) {
    bad(`peers of key ${String(key.id)} are not two host names`);
  }
  return key as unknown as SealKey;
}

/** True when `key` binds exactly the hosts `a` and `b`. */
export function bindsPair(key: SealKey, a: string, b: string): boolean {
  const [p, q] = key.peers;
  return (p === a && q === b) || (p === b && q === a);
}

/** The caller's host name. */
export function checkSelf(self: unknown): string {
  if (typeof self !== 'string' || !HOST_RE.test(self)) {
    throw new FerryError('EHOST_NAME', `expected this host's name to match ${HOST_RE.source}, got ${describe(self)}.`);
  }
  return self;
}

/** Complete limits from a partial override. */
export function resolveLimits(limits: Partial<Limits> | undefined): Limits {
  const l: Limits = { ...DEFAULT_LIMITS, ...limits };
  for (const k of ['maxMessages', 'maxMessageBytes', 'maxBundleBytes', 'maxTotalBytes'] as const) {
    const v = l[k];
    if (typeof v !== 'number' || Number.isNaN(v) || v < 0 || (v !== Number.POSITIVE_INFINITY && !Number.isInteger(v))) {
      throw new FerryError('EUSAGE', `expected limits.${k} to be a non-negative integer or Infinity, got ${describe(v)}.`);
    }
  }
  if (typeof l.maxInflateRatio !== 'number' || !(l.maxInflateRatio >= 1)) {
    throw new FerryError('EUSAGE', `expected limits.maxInflateRatio to be a number of at least 1 or Infinity, got ${describe(l.maxInflateRatio)}.`);
  }
  return l;
}
