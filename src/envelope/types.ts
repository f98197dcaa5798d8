// The public shapes of sealed bundles: keys, headers, per-message metadata, and the sinks and handlers the streaming API talks to.

/** A symmetric pair key: 32 secret bytes that exactly two hosts share. */
export interface SealKey {
  /** Key id, `[A-Za-z0-9._-]{1,64}`; travels in the clear so the receiver can pick the key. */
  id: string;
  /** The 32-byte secret. Never logged, never in the clear on the wire. */
  secret: Uint8Array;
  /** The two hosts the key binds (order does not matter). */
  peers: readonly [string, string];
}

/** Finds a key by its id, or `undefined` when this host holds no such key. May throw a `FerryError` (e.g. `EKEY_EXPIRED`). */
export type KeyLookup = (keyId: string) => SealKey | undefined;

/** What a bundle says about itself; sealed, never in the clear. */
export interface BundleHeader {
  /** Sending host. */
  origin: string;
  /** Receiving host. */
  destination: string;
  /** Channel epoch id, `[A-Za-z0-9._-]{1,64}`. */
  channel: string;
  /** Sequence number of the first message; the others follow without gaps. */
  firstSeq: number;
  /** Number of messages in the bundle, at least 1. */
  count: number;
  /** When the bundle was sealed, ms since the epoch. */
  created: number;
}

/** Metadata of one message, sealed next to its payload. */
export interface MessageMeta {
  /** Channel sequence number. */
  seq: number;
  /** Destination queue, `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. */
  queue: string;
  /** Message id, 1–128 characters of `[A-Za-z0-9._:-]`. */
  id: string;
  /** At most 64 headers; keys like queue names, values at most 4096 UTF-8 bytes. */
  headers: Record<string, string>;
  /** When the send committed, ms since the epoch. */
  committed: number;
  /** Payload length in bytes, before compression. */
  size: number;
  /** How the payload travels; absent when it travels as is. */
  compression?: 'gzip' | 'br';
}

/** A message handed to the bundle writer. */
export interface OutgoingMessage {
  /** Metadata; `size` is the exact number of bytes `payload()` yields. */
  meta: Omit<MessageMeta, 'compression' | 'size'> & { size: number };
  /** Compress before sealing. Default `'none'`. Small payloads that do not shrink travel as is. */
  compression?: 'gzip' | 'br' | 'none';
  /**
   * Yields exactly `meta.size` bytes; the writer checks and throws `EENVELOPE_FORMAT` otherwise. Called once.
   * Yield fresh chunks: the writer may still hold one after asking for the next.
   */
  payload(): AsyncIterable<Uint8Array>;
}

/** Where sealed bytes go. The writer never reuses a chunk after passing it here. */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** Where one message's verified payload goes. The reader never reuses a chunk after passing it here. */
export interface PayloadSink {
  write(chunk: Uint8Array): Promise<void>;
  /** All `size` bytes were written. The bundle may still fail afterwards (see `readSealedBundle`). */
  end(): Promise<void>;
  /** Optional: the bundle failed while this payload was open; discard what was written. Errors it throws are ignored. */
  abort?(reason: unknown): void | Promise<void>;
}

/** Receives the content of a bundle as it is verified. */
export interface BundleHandler {
  /** The sealed header, checked against the key and this host, before any message. */
  onHeader?(header: BundleHeader, key: SealKey): void | Promise<void>;
  /** A message begins; return where its payload goes. */
  onMessage(meta: MessageMeta): Promise<PayloadSink>;
}

/** Resource limits the reader enforces; exceeding one is `EENVELOPE_TOO_LARGE`. */
export interface Limits {
  /** Most messages one bundle may hold. Default 100 000. */
  maxMessages: number;
  /** Largest payload one message may declare, in bytes before compression. Default `Number.MAX_SAFE_INTEGER`. */
  maxMessageBytes: number;
  /** Largest sealed bundle, in bytes read from the input. Default `Infinity`. */
  maxBundleBytes: number;
}

/** The default {@link Limits}. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxMessages: 100_000,
  maxMessageBytes: Number.MAX_SAFE_INTEGER,
  maxBundleBytes: Number.POSITIVE_INFINITY,
});
