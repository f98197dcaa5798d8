// Seals a frame stream, synchronously: picks secretbox or secretstream, cuts 64 KiB chunks, gathers the sealed bytes into large blocks.

import { FerryError } from '../errors.js';
import { boxSeal, deriveSubkey, disposeStream, randomNonce, streamInitPush, streamPushInto, TAG_FINAL, TAG_MESSAGE, type StreamState } from './sodium.js';
import type { SealKey } from './types.js';
import { CHUNK_PLAIN_BYTES, encodePrefix, MODE_SECRETBOX, MODE_SECRETSTREAM, SECRETBOX_MAX_FRAMES, STREAM_ABYTES } from './wire-format.js';

/**
 * `auto`: secretbox when the whole frame stream fits in 1 MiB, else secretstream.
 * The forced modes exist for tests and tools; `secretbox` refuses more than 1 MiB.
 */
export type SealMode = 'auto' | 'secretbox' | 'secretstream';

const BOX_BLOCKS = SECRETBOX_MAX_FRAMES / CHUNK_PLAIN_BYTES;
const CHUNK_OUT_BYTES = 4 + CHUNK_PLAIN_BYTES + STREAM_ABYTES;

// Plaintext blocks never leave a Sealer (libsodium copies them), so they are recycled across bundles:
// fresh memory is expensive (page faults), and a daemon seals bundle after bundle.
const spareBlocks: Uint8Array[] = [];
const SPARE_MAX = BOX_BLOCKS + 2;

function takeBlock(): Uint8Array {
  return spareBlocks.pop() ?? new Uint8Array(CHUNK_PLAIN_BYTES);
}

function giveBlock(b: Uint8Array): void {
  if (spareBlocks.length < SPARE_MAX) spareBlocks.push(b);
}

/**
 * Takes plaintext frame bytes through `write`, produces sealed bytes through `takeOutput`.
 * Memory: while the mode is undecided it holds up to 1 MiB of plaintext (mode 1 needs it whole);
 * once streaming, one 64 KiB chunk plus the output the caller has not taken yet.
 * Output comes in blocks of about `outBlockBytes`, each a fresh buffer the Sealer never touches again.
 */
export class Sealer {
  private readonly keyId: string;
  private readonly secret: Uint8Array;
  private held: Uint8Array[] = []; // full 64 KiB blocks kept while the mode is undecided
  private cur: Uint8Array = takeBlock();
  private fill = 0;
  private stream: { state: StreamState; ad: Uint8Array | null } | undefined;
  private ready: Uint8Array[] = []; // finished output blocks
  private outBuf: Uint8Array | undefined; // output block being filled
  private outPos = 0;
  private readyBytes = 0;
  private ended = false;

  constructor(
    key: SealKey,
    private readonly mode: SealMode = 'auto',
    private readonly outBlockBytes = 256 * 1024,
  ) {
    this.keyId = key.id;
    this.secret = key.secret;
    if (mode === 'secretstream') this.startStream();
  }

  /** Sealed bytes produced and not yet taken. */
  get pendingBytes(): number {
    return this.readyBytes + this.outPos;
  }

  /** Appends plaintext. Copies it, so the caller may reuse `bytes`. */
  write(bytes: Uint8Array): void {
    if (this.ended) throw new Error('Sealer.write after end');
    let off = 0;
    while (off < bytes.length) {
      if (this.fill === CHUNK_PLAIN_BYTES) this.commitBlock();
      const n = Math.min(CHUNK_PLAIN_BYTES - this.fill, bytes.length - off);
      this.cur.set(n === bytes.length ? bytes : bytes.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
    }
  }

  /** Seals what remains; afterwards `takeOutput(true)` returns the last bytes. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.stream !== undefined) {
      this.pushChunk(this.cur.subarray(0, this.fill), TAG_FINAL);
      this.dispose();
      return;
    }
    // Mode 1: the plaintext is a copy of the clear prefix, then the frames.
    const nonce = randomNonce();
    const prefix = encodePrefix(MODE_SECRETBOX, this.keyId, nonce);
    const plain = new Uint8Array(prefix.length + this.held.length * CHUNK_PLAIN_BYTES + this.fill);
    plain.set(prefix, 0);
    let at = prefix.length;
    for (const b of this.held) {
      plain.set(b, at);
      at += b.length;
    }
    plain.set(this.cur.subarray(0, this.fill), at);
    const subkey = deriveSubkey(this.secret, 'secretbox');
    const sealed = boxSeal(plain, nonce, subkey);
    subkey.fill(0);
    plain.fill(0);
    this.releaseBlocks();
    // One output buffer: a bundle is then one write (the extra copy is small next to the encryption).
    const whole = new Uint8Array(prefix.length + sealed.length);
    whole.set(prefix, 0);
    whole.set(sealed, prefix.length);
    this.ready.push(whole);
    this.readyBytes += whole.length;
  }

  /** Finished output blocks, in order; with `all`, also the block being filled. */
  takeOutput(all = false): Uint8Array[] {
    if (all) this.finishOutBlock();
    const out = this.ready;
    this.ready = [];
    this.readyBytes = 0;
    return out;
  }

  /** Frees the secretstream state and recycles the plaintext blocks; safe to call twice or after a failure. */
  dispose(): void {
    if (this.stream !== undefined && this.stream.state !== 0) {
      disposeStream(this.stream.state);
      this.stream.state = 0;
    }
    if (this.ended) this.releaseBlocks();
  }

  private releaseBlocks(): void {
    for (const b of this.held) giveBlock(b);
    this.held = [];
    if (this.fill >= 0) {
      giveBlock(this.cur);
      this.fill = -1; // no block any more
    }
  }

  // The current block is full and more bytes follow, so it is not the last one.
  private commitBlock(): void {
    if (this.stream !== undefined) {
      this.pushChunk(this.cur, TAG_MESSAGE); // push copies it into the WASM heap: the block is reused
      this.fill = 0;
      return;
    }
    this.held.push(this.cur);
    this.cur = takeBlock();
    this.fill = 0;
    if (this.held.length >= BOX_BLOCKS) {
      // 1 MiB is held and more is coming: too big for one secretbox.
      if (this.mode === 'secretbox') {
        throw new FerryError('EENVELOPE_TOO_LARGE', `a secretbox bundle holds at most ${SECRETBOX_MAX_FRAMES} bytes of frames.`);
      }
      this.startStream();
    }
  }

  private startStream(): void {
    const subkey = deriveSubkey(this.secret, 'secretstream');
    const { state, header } = streamInitPush(subkey);
    subkey.fill(0);
    const prefix = encodePrefix(MODE_SECRETSTREAM, this.keyId, header);
    this.emitSmall(prefix);
    // The first chunk carries the clear prefix as additional data, binding it to the stream.
    this.stream = { state, ad: prefix };
    const held = this.held;
    this.held = [];
    for (const b of held) {
      this.pushChunk(b, TAG_MESSAGE);
      giveBlock(b);
    }
  }

  private pushChunk(plain: Uint8Array, tag: number): void {
    const s = this.stream as { state: StreamState; ad: Uint8Array | null };
    const buf = this.room(CHUNK_OUT_BYTES);
    const len = plain.length + STREAM_ABYTES;
    new DataView(buf.buffer, buf.byteOffset).setUint32(this.outPos, len);
    const written = streamPushInto(s.state, plain, s.ad, tag, buf, this.outPos + 4);
    if (written !== len) throw new FerryError('EUSAGE', 'libsodium sealed a chunk of unexpected length.');
    s.ad = null;
    this.outPos += 4 + len;
  }

  private emitSmall(bytes: Uint8Array): void {
    const buf = this.room(bytes.length);
    buf.set(bytes, this.outPos);
    this.outPos += bytes.length;
  }

  /** The output block, with room for `n` more bytes. */
  private room(n: number): Uint8Array {
    if (this.outBuf !== undefined && this.outBuf.length - this.outPos < n) this.finishOutBlock();
    if (this.outBuf === undefined) {
      this.outBuf = new Uint8Array(Math.max(this.outBlockBytes, n));
      this.outPos = 0;
    }
    return this.outBuf;
  }

  private finishOutBlock(): void {
    if (this.outBuf === undefined) return;
    if (this.outPos > 0) {
      this.ready.push(this.outBuf.subarray(0, this.outPos));
      this.readyBytes += this.outPos;
    }
    this.outBuf = undefined;
    this.outPos = 0;
  }
}

/** One buffer holding `parts` in order (no copy for a single part). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
