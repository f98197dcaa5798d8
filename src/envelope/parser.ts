// The bundle parser, without I/O: fed sealed bytes, it verifies and yields header, messages and payload bytes one event at a time.
//
// Two layers. The envelope layer reads the clear prefix, finds the key, and turns ciphertext
// into verified plaintext (mode 1: the whole box at end of input; mode 2: chunk by chunk, each
// authenticated before any of its bytes move on). The frame layer parses that plaintext. No
// buffer is ever sized from a length field before the field is checked against its bound, and
// no plaintext is released before the MAC that covers it has verified.

import { FerryError, isFerryError, type FerryErrorCode } from '../errors.js';
import { ByteQueue } from './byte-queue.js';
import { boxOpen, deriveSubkey, disposeStream, streamInitPull, streamPull, TAG_FINAL, TAG_MESSAGE, type StreamState } from './sodium.js';
import type { BundleHeader, KeyLookup, Limits, MessageMeta, SealKey } from './types.js';
import { bindsPair, checkBundleHeader, checkEndFrame, checkMessageMeta, checkSealKey, KEY_ID_RE, messageCount } from './validate.js';
import {
  BLOCK_MAX,
  BOX_MACBYTES,
  CHUNK_CIPHER_MAX,
  CHUNK_PLAIN_BYTES,
  FRAME_END,
  FRAME_HEAD_BYTES,
  FRAME_HEADER,
  FRAME_MESSAGE,
  JSON_FRAME_MAX,
  MAGIC,
  MODE_SECRETBOX,
  MODE_SECRETSTREAM,
  NONCE_BYTES,
  PREFIX_FIXED_BYTES,
  SECRETBOX_MAX_FRAMES,
  STREAM_ABYTES,
  VERSION,
} from './wire-format.js';

/** What the parser has verified, in order. */
export type ParseEvent =
  | { kind: 'header'; header: BundleHeader; key: SealKey }
  | { kind: 'message'; meta: MessageMeta }
  /** Payload bytes: raw when the message has no compression, else compressed-stream bytes. A view the parser never reuses. */
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'message-end' }
  /** The bundle is complete and nothing follows it. */
  | { kind: 'end'; header: BundleHeader };

/** `next()` needs more input (or `end()`) before it can go on. */
export const NEED_INPUT: unique symbol = Symbol('need-input');

const NEED_PLAIN: unique symbol = Symbol('need-plain');

type EnvState = 'prefix' | 'box' | 'stream' | 'done';
type FrameState = 'header' | 'item' | 'raw' | 'block-len' | 'block' | 'tail' | 'done';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const AUTHENTIC = new WeakMap<FerryError, BundleHeader>();

/**
 * The header of the bundle a failure is about, when the failure concerns bytes that authenticated under the pair key
 * (its header, a message's metadata, a payload that inflates too far): only the key's holders can have sealed those,
 * so the failure is about the sender's own bundle, whatever name it was found under. Undefined for failures of bytes
 * that did not authenticate (the clear prefix, framing, a MAC): anyone with a login can make those.
 */
export function authenticHeaderOf(err: unknown): BundleHeader | undefined {
  return err instanceof FerryError ? AUTHENTIC.get(err) : undefined;
}

/** Records that `err` concerns authenticated plaintext of the bundle with `header`. */
export function markAuthentic(err: FerryError, header: BundleHeader): void {
  AUTHENTIC.set(err, header);
}

export class BundleParser {
  private readonly input = new ByteQueue();
  private readonly plain = new ByteQueue();
  private inputEnded = false;
  private inputBytes = 0;
  private failure: FerryError | undefined;
  /** True while the frame layer runs: a failure then concerns plaintext that authenticated (see {@link authenticHeaderOf}). */
  private frameLayer = false;

  private env: EnvState = 'prefix';
  private prefix: Uint8Array | undefined;
  private key: SealKey | undefined;
  private stream: StreamState = 0;
  private streamAd: Uint8Array | null = null;
  private chunkIndex = 0;
  private finalSeen = false;

  private frame: FrameState = 'header';
  private header: BundleHeader | undefined;
  private index = 0; // messages started
  private remaining = 0; // bytes left in the current payload or block
  private declared = 0; // payload bytes declared so far (inflated sizes)

  constructor(
    private readonly keys: KeyLookup,
    private readonly self: string,
    private readonly limits: Limits,
    /** `'receiver'`: the bundle must be for this host; `'sender'`: it must be from this host (re-sealing its own). */
    private readonly role: 'receiver' | 'sender' = 'receiver',
  ) {}

  /** Queues sealed bytes (not copied: the producer must not reuse the chunk). */
  push(chunk: Uint8Array): void {
    if (this.inputEnded) throw new Error('BundleParser.push after end');
    this.inputBytes += chunk.length;
    if (this.inputBytes > this.limits.maxBundleBytes) {
      this.fail('EENVELOPE_TOO_LARGE', `the bundle is larger than the limit of ${this.limits.maxBundleBytes} bytes.`);
    }
    this.input.push(chunk);
  }

  /** No more input. */
  end(): void {
    this.inputEnded = true;
  }

  /** The next verified event, or {@link NEED_INPUT}. Throws a FerryError on any defect, and again on every later call. */
  next(): ParseEvent | typeof NEED_INPUT {
    if (this.failure !== undefined) throw this.failure;
    try {
      for (;;) {
        this.frameLayer = true;
        const ev = this.frameStep();
        this.frameLayer = false;
        if (ev !== NEED_PLAIN) return ev;
        const r = this.envelopeStep();
        if (r === 'need-input') return NEED_INPUT;
        if (r === 'end') {
          const header = this.header as BundleHeader;
          if (this.frame === 'tail' || this.frame === 'done') {
            this.frame = 'done';
            return { kind: 'end', header };
          }
          this.fail('EENVELOPE_FORMAT', `the sealed data ends ${this.where()}.`);
        }
      }
    } catch (err) {
      this.failure = isFerryError(err)
        ? err
        : new FerryError('EENVELOPE_FORMAT', 'the bundle could not be parsed.', { cause: err });
      if (this.frameLayer && this.header !== undefined) markAuthentic(this.failure, this.header);
      this.dispose();
      throw this.failure;
    }
  }

  /** True when `err` is this parser's own failure (not one of the inflater or a handler). */
  failedWith(err: unknown): boolean {
    return err === this.failure;
  }

  /** Frees crypto state; call when abandoning the parser early. */
  dispose(): void {
    if (this.stream !== 0) {
      disposeStream(this.stream);
      this.stream = 0;
    }
  }

  private fail(code: FerryErrorCode, message: string): never {
    const peer = this.header?.origin;
    const err = new FerryError(code, message, peer === undefined ? {} : { peer });
    this.failure = err;
    throw err;
  }

  private where(): string {
    switch (this.frame) {
      case 'header':
        return 'before the bundle header is complete';
      case 'item':
        return `after ${this.index} of ${this.header?.count ?? '?'} messages, before the end frame`;
      case 'raw':
      case 'block':
      case 'block-len':
        return `inside the payload of message ${this.index} of ${this.header?.count ?? '?'}`;
      default:
        return 'unexpectedly';
    }
  }

  // ── envelope layer ──────────────────────────────────────────────────────────────────────

  /** Makes the envelope layer progress: `progress` (state advanced or plaintext added), `need-input`, or `end` (no more plaintext, authentically). */
  private envelopeStep(): 'progress' | 'need-input' | 'end' {
    switch (this.env) {
      case 'prefix':
        return this.readPrefix();
      case 'box':
        return this.openBox();
      case 'stream':
        return this.pullChunk();
      case 'done':
        return 'end';
    }
  }

  private readPrefix(): 'progress' | 'need-input' {
    const q = this.input;
    // Check each fixed byte as soon as it is there, so garbage is refused on its first bytes.
    const fixed = Math.min(q.available, PREFIX_FIXED_BYTES);
    for (let i = 0; i < fixed; i++) {
      const b = q.byteAt(i);
      if (i < 4 && b !== MAGIC[i]) this.fail('EENVELOPE_MAGIC', 'the file is not a ferry bundle (bad magic).');
      if (i === 4 && b !== VERSION) this.fail('EENVELOPE_VERSION', `the bundle has format version ${b}; this ferry reads version ${VERSION}.`);
      if (i === 5 && b !== MODE_SECRETBOX && b !== MODE_SECRETSTREAM) this.fail('EENVELOPE_FORMAT', `the bundle has unknown sealing mode ${b}.`);
      if (i === 6 && (b < 1 || b > 64)) this.fail('EENVELOPE_FORMAT', `the bundle's key id length ${b} is not in 1..64.`);
    }
    if (fixed < PREFIX_FIXED_BYTES) return this.needInput('inside the clear prefix');
    const idLen = q.byteAt(6);
    const total = PREFIX_FIXED_BYTES + idLen + NONCE_BYTES;
    if (q.available < total) return this.needInput('inside the clear prefix');
    const prefix = q.read(total).slice(); // own copy: it is compared and used as additional data later
    let keyId = '';
    for (let i = 0; i < idLen; i++) keyId += String.fromCharCode(prefix[PREFIX_FIXED_BYTES + i] as number);
    if (!KEY_ID_RE.test(keyId)) this.fail('EENVELOPE_FORMAT', 'the bundle names a key id with characters outside [A-Za-z0-9._-].');
    let found: SealKey | undefined;
    try {
      found = this.keys(keyId);
    } catch (err) {
      if (isFerryError(err)) throw err;
      throw new FerryError('EKEY_UNKNOWN', `looking up key ${keyId} failed.`, { cause: err });
    }
    if (found === undefined) this.fail('EKEY_UNKNOWN', `the bundle is sealed with key ${keyId}, which this host does not hold.`);
    const key = checkSealKey(found);
    if (key.id !== keyId) throw new FerryError('EKEYFORMAT', `looking up key ${keyId} returned key ${key.id}.`);
    this.key = key;
    this.prefix = prefix;
    const nonce = prefix.subarray(total - NONCE_BYTES);
    if (prefix[5] === MODE_SECRETBOX) {
      this.env = 'box';
    } else {
      const subkey = deriveSubkey(key.secret, 'secretstream');
      this.stream = streamInitPull(nonce, subkey);
      subkey.fill(0);
      this.streamAd = prefix;
      this.env = 'stream';
    }
    return 'progress';
  }

  private openBox(): 'progress' | 'need-input' {
    const prefix = this.prefix as Uint8Array;
    const max = BOX_MACBYTES + prefix.length + SECRETBOX_MAX_FRAMES;
    if (this.input.available > max) this.fail('EENVELOPE_TOO_LARGE', `a secretbox bundle holds at most ${max} sealed bytes after its prefix.`);
    if (!this.inputEnded) return 'need-input'; // the box is opened whole, at the end of input
    const n = this.input.available;
    if (n < BOX_MACBYTES + prefix.length) this.fail('EENVELOPE_TRUNCATED', 'the bundle ends before its sealed box is complete.');
    const cipher = this.input.read(n);
    const subkey = deriveSubkey((this.key as SealKey).secret, 'secretbox');
    const plain = boxOpen(cipher, prefix.subarray(prefix.length - NONCE_BYTES), subkey);
    subkey.fill(0);
    if (plain === undefined) this.fail('EENVELOPE_MAC', 'the bundle fails authentication (tampered, truncated, or sealed with another key).');
    if (!equalBytes(plain.subarray(0, prefix.length), prefix)) {
      this.fail('EENVELOPE_MAC', 'the bundle\'s clear prefix does not match the sealed copy.');
    }
    this.plain.push(plain.subarray(prefix.length));
    this.env = 'done';
    return 'progress';
  }

  private pullChunk(): 'progress' | 'need-input' | 'end' {
    const q = this.input;
    if (this.finalSeen) {
      if (q.available > 0) this.fail('EENVELOPE_FORMAT', 'the bundle has bytes after its final chunk.');
      if (!this.inputEnded) return 'need-input';
      this.env = 'done';
      return 'end';
    }
    if (q.available < 4) {
      return this.needInput(q.available === 0 ? 'without a final chunk' : 'inside a chunk length', 'EENVELOPE_TRUNCATED');
    }
    const len = q.u32At(0);
    if (len > CHUNK_CIPHER_MAX) this.fail('EENVELOPE_TOO_LARGE', `chunk ${this.chunkIndex} claims ${len} bytes; at most ${CHUNK_CIPHER_MAX} are allowed.`);
    if (len < STREAM_ABYTES) this.fail('EENVELOPE_FORMAT', `chunk ${this.chunkIndex} claims ${len} bytes, fewer than its ${STREAM_ABYTES}-byte tag.`);
    if (q.available < 4 + len) return this.needInput(`inside chunk ${this.chunkIndex}`, 'EENVELOPE_TRUNCATED');
    q.skip(4);
    const cipher = q.read(len);
    const r = streamPull(this.stream, cipher, this.streamAd);
    if (r === undefined) {
      this.fail('EENVELOPE_MAC', `chunk ${this.chunkIndex} of the bundle fails authentication (tampered, reordered, or sealed with another key).`);
    }
    this.streamAd = null;
    if (r.tag === TAG_FINAL) {
      this.finalSeen = true;
      this.dispose();
    } else if (r.tag !== TAG_MESSAGE) {
      this.fail('EENVELOPE_FORMAT', `chunk ${this.chunkIndex} has unexpected secretstream tag ${r.tag}.`);
    } else if (r.message.length !== CHUNK_PLAIN_BYTES) {
      this.fail('EENVELOPE_FORMAT', `chunk ${this.chunkIndex} is not final but holds ${r.message.length} bytes, not ${CHUNK_PLAIN_BYTES}.`);
    }
    this.chunkIndex++;
    this.plain.push(r.message);
    return 'progress';
  }

  private needInput(where: string, code: FerryErrorCode = 'EENVELOPE_TRUNCATED'): 'need-input' {
    if (this.inputEnded) this.fail(code, `the bundle ends ${where}.`);
    return 'need-input';
  }

  // ── frame layer ─────────────────────────────────────────────────────────────────────────

  private frameStep(): ParseEvent | typeof NEED_PLAIN {
    const p = this.plain;
    for (;;) {
      switch (this.frame) {
        case 'header': {
          const f = this.readFrame();
          if (f === NEED_PLAIN) return f;
          if (f.type !== FRAME_HEADER) this.fail('EENVELOPE_FORMAT', `the bundle starts with frame type ${f.type}, not a header.`);
          const header = checkBundleHeader(parseJson(f.body, 'the bundle header'), 'open');
          this.header = header;
          this.checkHeader(header);
          this.frame = 'item';
          return { kind: 'header', header, key: this.key as SealKey };
        }
        case 'item': {
          const f = this.readFrame();
          if (f === NEED_PLAIN) return f;
          const h = this.header as BundleHeader;
          if (f.type === FRAME_MESSAGE) {
            if (h.kind === 'gap') this.fail('EENVELOPE_FORMAT', 'a gap record holds a message.');
            if (this.index >= h.count) this.fail('EENVELOPE_FORMAT', `the bundle holds more messages than its header's count of ${h.count}.`);
            const meta = checkMessageMeta(parseJson(f.body, 'message metadata'), 'open');
            const expected = h.firstSeq + this.index;
            if (meta.seq !== expected) {
              this.fail('EENVELOPE_FORMAT', `message ${this.index} of the bundle has seq ${meta.seq}, expected ${expected} (duplicate or out of order).`);
            }
            if (meta.size > this.limits.maxMessageBytes) {
              this.fail('EENVELOPE_TOO_LARGE', `message ${meta.id} declares ${meta.size} bytes; the limit is ${this.limits.maxMessageBytes}.`);
            }
            this.declared += meta.size;
            if (this.declared > this.limits.maxTotalBytes) {
              this.fail('EENVELOPE_TOO_LARGE', `the bundle's payloads declare more than the limit of ${this.limits.maxTotalBytes} bytes in all.`);
            }
            this.index++;
            this.remaining = meta.size;
            this.frame = meta.compression === undefined ? 'raw' : 'block-len';
            return { kind: 'message', meta };
          }
          if (f.type === FRAME_END) {
            const expected = messageCount(h);
            if (this.index !== expected) this.fail('EENVELOPE_FORMAT', `the bundle ends after ${this.index} messages; its header says ${expected}.`);
            const end = checkEndFrame(parseJson(f.body, 'the end frame'));
            if (end.count !== expected) this.fail('EENVELOPE_FORMAT', `the end frame counts ${end.count} messages; the header says ${expected}.`);
            this.frame = 'tail';
            continue;
          }
          this.fail('EENVELOPE_FORMAT', `unexpected frame type ${f.type} where a message or the end frame belongs.`);
          break;
        }
        case 'raw':
        case 'block': {
          if (this.remaining === 0) {
            if (this.frame === 'block') {
              this.frame = 'block-len';
              continue;
            }
            this.frame = 'item';
            return { kind: 'message-end' };
          }
          if (p.available === 0) return NEED_PLAIN;
          const bytes = p.readUpTo(this.remaining);
          this.remaining -= bytes.length;
          return { kind: 'data', bytes };
        }
        case 'block-len': {
          if (p.available < 4) return NEED_PLAIN;
          const len = p.u32At(0);
          p.skip(4);
          if (len === 0) {
            this.frame = 'item';
            return { kind: 'message-end' };
          }
          if (len > BLOCK_MAX) this.fail('EENVELOPE_TOO_LARGE', `a compressed block claims ${len} bytes; at most ${BLOCK_MAX} are allowed.`);
          this.remaining = len;
          this.frame = 'block';
          continue;
        }
        case 'tail':
          if (p.available > 0) this.fail('EENVELOPE_FORMAT', 'the bundle has sealed bytes after its end frame.');
          return NEED_PLAIN;
        case 'done':
          return { kind: 'end', header: this.header as BundleHeader };
      }
    }
  }

  /** A whole JSON frame, once it is all there. */
  private readFrame(): { type: number; body: Uint8Array } | typeof NEED_PLAIN {
    const p = this.plain;
    if (p.available < 1) return NEED_PLAIN;
    const type = p.byteAt(0);
    if (type !== FRAME_HEADER && type !== FRAME_MESSAGE && type !== FRAME_END) this.fail('EENVELOPE_FORMAT', `unknown frame type ${type}.`);
    if (p.available < FRAME_HEAD_BYTES) return NEED_PLAIN;
    const len = p.u32At(1);
    if (len > JSON_FRAME_MAX) this.fail('EENVELOPE_TOO_LARGE', `a frame claims ${len} bytes; at most ${JSON_FRAME_MAX} are allowed.`);
    if (p.available < FRAME_HEAD_BYTES + len) return NEED_PLAIN;
    p.skip(FRAME_HEAD_BYTES);
    return { type, body: p.read(len) };
  }

  private checkHeader(h: BundleHeader): void {
    const key = this.key as SealKey;
    if (this.role === 'sender') {
      // Re-sealing its own bundle: it must be from this host, under a key it shares with the destination.
      if (h.origin !== this.self) this.fail('EENVELOPE_ORIGIN', `the bundle claims origin ${h.origin}, not this host (${this.self}).`);
      if (!bindsPair(key, this.self, h.destination)) {
        this.fail('EENVELOPE_DEST', `the bundle is addressed to ${h.destination} but is sealed with key ${key.id}, which binds ${key.peers[0]} and ${key.peers[1]}.`);
      }
    } else {
      if (h.destination !== this.self) {
        this.fail('EENVELOPE_DEST', `the bundle is addressed to ${h.destination}, not to this host (${this.self}).`);
      }
      if (!bindsPair(key, h.origin, this.self)) {
        this.fail('EENVELOPE_ORIGIN', `the bundle claims origin ${h.origin} but is sealed with key ${key.id}, which binds ${key.peers[0]} and ${key.peers[1]}.`);
      }
    }
    // A gap record carries no messages, only the sequences it skips: the message limit is not about it.
    if (h.kind !== 'gap' && h.count > this.limits.maxMessages) {
      this.fail('EENVELOPE_TOO_LARGE', `the bundle holds ${h.count} messages; the limit is ${this.limits.maxMessages}.`);
    }
  }
}

function parseJson(body: Uint8Array, what: string): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch (err) {
    throw new FerryError('EENVELOPE_FORMAT', `${what} is not valid UTF-8.`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new FerryError('EENVELOPE_FORMAT', `${what} is not valid JSON.`, { cause: err });
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
