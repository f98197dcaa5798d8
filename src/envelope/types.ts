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
  /** Channel epoch id, `[A-Za-z0-9._-]{1,64}` (random per epoch). */
  channel: string;
  /**
   * Channel epoch number, at least 1. Strictly increasing per (origin, destination): the receiver refuses a bundle
   * of an epoch numbered below the one it is delivering (a closed epoch), so closed epochs need no memory.
   * Optional when sealing (default 1); always present on the wire.
   */
  epoch?: number;
  /** Sequence number of the first message (or, for a gap record, of the first sequence skipped); the others follow without gaps. */
  firstSeq: number;
  /** Number of messages in the bundle (sequences skipped, for a gap record), at least 1. */
  count: number;
  /** When the bundle was sealed, ms since the epoch. */
  created: number;
  /**
   * The highest sequence of this epoch that the sender had seen the receiver's receipt cover when it sealed (0: none).
   * A receiver whose delivered mark is below it lost or rolled back its dedupe state. Optional when sealing (default 0).
   */
  acked?: number;
  /** `'gap'`: an authenticated gap record — the sender dead-lettered sequences `firstSeq…firstSeq+count-1`; no messages follow. */
  kind?: 'gap';
  /** Why the sender gave up on the sequences of a gap record (≤ 512 bytes). */
  gap?: string;
  /**
   * The first `resealed` messages were sealed before, under an earlier epoch of this channel, by a sender restored
   * from a backup: the receiver skips those whose message id it delivered recently.
   */
  resealed?: number;
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
  /**
   * Who opens: `'receiver'` (default) requires the destination to be this host and the key to bind the claimed
   * origin and this host; `'sender'` (re-sealing its own bundles) requires the origin to be this host.
   */
  role?: 'receiver' | 'sender';
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
  /** Largest sum of the payload sizes one bundle may declare (inflated). Default `Number.MAX_SAFE_INTEGER`. */
  maxTotalBytes: number;
  /**
   * Largest inflate ratio of a compressed payload once it has produced more than 1 MiB (output ÷ compressed input so
   * far): past it the payload is a bomb (`EENVELOPE_BOMB`) whatever size it declares. Default `Infinity`.
   */
  maxInflateRatio: number;
}

/** The default {@link Limits}. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxMessages: 100_000,
  maxMessageBytes: Number.MAX_SAFE_INTEGER,
  maxBundleBytes: Number.POSITIVE_INFINITY,
  maxTotalBytes: Number.MAX_SAFE_INTEGER,
  maxInflateRatio: Number.POSITIVE_INFINITY,
});
