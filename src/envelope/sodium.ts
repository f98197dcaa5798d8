// The only file that calls libsodium: readiness, subkeys, secretbox and secretstream, with every throw turned into a result or a FerryError.

import { randomFillSync } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import { FerryError } from '../errors.js';
import { KDF_CONTEXT, SUBKEY_SECRETBOX, SUBKEY_SECRETSTREAM } from './wire-format.js';

let ready = false;
let loading: Promise<void> | undefined;

/** Resolves once libsodium's WASM is loaded. Await it once before calling the synchronous `sealMessage`/`openMessage`. */
export function sodiumReady(): Promise<void> {
  loading ??= sodium.ready.then(() => {
    rawPush = probeRawPush();
    ready = true;
  });
  return loading;
}

/** Throws unless {@link sodiumReady} has resolved (libsodium would otherwise fail with an obscure error). */
export function requireSodium(): void {
  if (!ready) throw new FerryError('EUSAGE', 'libsodium is not loaded yet; await sodiumReady() before sealing or opening synchronously.');
}

/** The per-mode subkeys of a pair secret (see wire-format.ts). */
export function deriveSubkey(secret: Uint8Array, mode: 'secretbox' | 'secretstream'): Uint8Array {
  const id = mode === 'secretbox' ? SUBKEY_SECRETBOX : SUBKEY_SECRETSTREAM;
  return sodium.crypto_kdf_derive_from_key(32, id, KDF_CONTEXT, secret);
}

// libsodium-wrappers draws randomness through one JS callback per few bytes (~150 µs for 24 bytes here);
// Node's CSPRNG is the same OS-seeded quality and fast, so nonces come from a small pool of it.
const pool = new Uint8Array(24 * 64);
let poolAt = pool.length;

/** 24 fresh random bytes (a secretbox nonce or a secretstream header). */
export function randomNonce(): Uint8Array {
  if (poolAt === pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const out = pool.slice(poolAt, poolAt + 24);
  pool.fill(0, poolAt, poolAt + 24); // a nonce is handed out once
  poolAt += 24;
  return out;
}

export function boxSeal(plain: Uint8Array, nonce: Uint8Array, subkey: Uint8Array): Uint8Array {
  return sodium.crypto_secretbox_easy(plain, nonce, subkey);
}

/** The plaintext, or `undefined` when the MAC does not verify (libsodium throws for that; we do not leak its message). */
export function boxOpen(cipher: Uint8Array, nonce: Uint8Array, subkey: Uint8Array): Uint8Array | undefined {
  try {
    return sodium.crypto_secretbox_open_easy(cipher, nonce, subkey);
  } catch {
    return undefined;
  }
}

/** A secretstream state: an address inside libsodium's WASM heap, freed by {@link disposeStream}. */
export type StreamState = number;

export const TAG_MESSAGE = 0;
export const TAG_FINAL = 3;

/**
 * A pushing secretstream state and its 24-byte header. libsodium's init_push is randombytes(header) then
 * exactly init_pull(header); we draw the header from Node's CSPRNG (see randomNonce) and call init_pull,
 * which skips libsodium's slow JS randomness. The round-trip tests prove the equivalence on every run.
 */
export function streamInitPush(subkey: Uint8Array): { state: StreamState; header: Uint8Array } {
  const header = randomNonce();
  return { state: streamInitPull(header, subkey), header };
}

/** One sealed chunk: `plain.length + 17` bytes. */
export function streamPush(state: StreamState, plain: Uint8Array, ad: Uint8Array | null, tag: number): Uint8Array {
  return sodium.crypto_secretstream_xchacha20poly1305_push(asAddress(state), plain, ad, tag);
}

/**
 * Seals one chunk straight into `out` at `at` (room for `plain.length + 17` bytes), returning the length.
 * Uses libsodium's raw WASM export when the start-up probe proved it byte-identical to the wrapper: that
 * saves the wrapper's output allocation and a copy per 64 KiB chunk. Otherwise falls back to the wrapper.
 */
export function streamPushInto(state: StreamState, plain: Uint8Array, ad: Uint8Array | null, tag: number, out: Uint8Array, at: number): number {
  if (rawPush !== undefined) return rawPush(state, plain, ad, tag, out, at);
  const cipher = streamPush(state, plain, ad, tag);
  out.set(cipher, at);
  return cipher.length;
}

/** Whether sealing uses the raw WASM fast path; tests switch it off to cover the fallback. Returns the previous state. */
export function rawPushEnabled(enable?: boolean): boolean {
  const was = rawPush !== undefined;
  if (enable === false) {
    if (rawPush !== undefined) disabledRawPush = rawPush;
    rawPush = undefined;
  } else if (enable === true) {
    rawPush ??= disabledRawPush;
  }
  return was;
}

let disabledRawPush: RawPush | undefined;

type RawPush = (state: StreamState, plain: Uint8Array, ad: Uint8Array | null, tag: number, out: Uint8Array, at: number) => number;

let rawPush: RawPush | undefined;

interface RawModule {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _crypto_secretstream_xchacha20poly1305_push(
    state: number,
    c: number,
    clenP: number,
    m: number,
    mlenLo: number,
    mlenHi: number,
    ad: number,
    adlenLo: number,
    adlenHi: number,
    tag: number,
  ): number;
}

const RAW_MAX_PLAIN = 64 * 1024;
const RAW_MAX_AD = 256;

/** The raw push, if the wrapper exposes its module and the raw call reproduces the wrapper's output exactly. */
function probeRawPush(): RawPush | undefined {
  const mod = (sodium as unknown as { libsodium?: Partial<RawModule> }).libsodium;
  if (
    mod === undefined ||
    typeof mod._malloc !== 'function' ||
    typeof mod._crypto_secretstream_xchacha20poly1305_push !== 'function' ||
    !(mod.HEAPU8 instanceof Uint8Array)
  ) {
    return undefined;
  }
  const m = mod as RawModule;
  // Scratch buffers inside the WASM heap, allocated once for the process (JS is single-threaded and push is synchronous).
  const mPtr = m._malloc(RAW_MAX_PLAIN);
  const cPtr = m._malloc(RAW_MAX_PLAIN + 17);
  const adPtr = m._malloc(RAW_MAX_AD);
  if (mPtr === 0 || cPtr === 0 || adPtr === 0) return undefined;
  const push: RawPush = (state, plain, ad, tag, out, at) => {
    if (plain.length > RAW_MAX_PLAIN || (ad !== null && ad.length > RAW_MAX_AD)) {
      const cipher = streamPush(state, plain, ad, tag);
      out.set(cipher, at);
      return cipher.length;
    }
    m.HEAPU8.set(plain, mPtr); // HEAPU8 is re-read each time: the WASM memory may have grown
    if (ad !== null) m.HEAPU8.set(ad, adPtr);
    const rc = m._crypto_secretstream_xchacha20poly1305_push(state, cPtr, 0, mPtr, plain.length, 0, ad === null ? 0 : adPtr, ad === null ? 0 : ad.length, 0, tag);
    if (rc !== 0) throw new FerryError('EUSAGE', 'libsodium refused to seal a secretstream chunk.');
    const clen = plain.length + 17;
    out.set(m.HEAPU8.subarray(cPtr, cPtr + clen), at);
    return clen;
  };
  try {
    const key = new Uint8Array(32).fill(7);
    const header = new Uint8Array(24).fill(9);
    const a = streamInitPull(header, key);
    const b = streamInitPull(header, key);
    const ad = Uint8Array.of(1, 2, 3);
    let same = true;
    for (const [plain, tag] of [[new Uint8Array(1000).fill(5), TAG_MESSAGE], [new Uint8Array(0), TAG_FINAL]] as const) {
      const viaWrapper = streamPush(a, plain, ad, tag);
      const viaRaw = new Uint8Array(viaWrapper.length + 3);
      const n = push(b, plain, ad, tag, viaRaw, 3);
      same &&= n === viaWrapper.length && Buffer.compare(viaRaw.subarray(3), viaWrapper) === 0;
    }
    disposeStream(a);
    disposeStream(b);
    return same ? push : undefined;
  } catch {
    return undefined;
  }
}

export function streamInitPull(header: Uint8Array, subkey: Uint8Array): StreamState {
  return sodium.crypto_secretstream_xchacha20poly1305_init_pull(header, subkey) as unknown as StreamState;
}

/** The chunk's plaintext and tag, or `undefined` when it does not verify. */
export function streamPull(state: StreamState, cipher: Uint8Array, ad: Uint8Array | null): { message: Uint8Array; tag: number } | undefined {
  try {
    const r = sodium.crypto_secretstream_xchacha20poly1305_pull(asAddress(state), cipher, ad);
    return r === false ? undefined : r;
  } catch {
    return undefined;
  }
}

interface WasmModule {
  HEAPU8: Uint8Array;
  _free(address: number): void;
}

/**
 * Zeroes and frees a secretstream state. libsodium-wrappers mallocs 52 bytes for each state and
 * never frees them: a daemon opening millions of bundles would leak, and the state holds key
 * material. Harmless no-op if the wrapper's internals ever change shape.
 */
export function disposeStream(state: StreamState): void {
  const mod = (sodium as unknown as { libsodium?: Partial<WasmModule> }).libsodium;
  if (mod === undefined || typeof mod._free !== 'function' || !(mod.HEAPU8 instanceof Uint8Array)) return;
  if (!Number.isInteger(state) || state <= 0 || state + 52 > mod.HEAPU8.length) return;
  mod.HEAPU8.fill(0, state, state + 52);
  mod._free(state);
}

// The wrapper's typings call the state a StateAddress object; at run time it is the bare address.
function asAddress(state: StreamState): Parameters<typeof sodium.crypto_secretstream_xchacha20poly1305_push>[0] {
  return state as unknown as Parameters<typeof sodium.crypto_secretstream_xchacha20poly1305_push>[0];
}
