// The envelope module's public API: sealing and opening bundles of messages between two hosts.

export type {
  BundleHandler,
  BundleHeader,
  ByteSink,
  KeyLookup,
  Limits,
  MessageMeta,
  OutgoingMessage,
  PayloadSink,
  SealKey,
} from './types.js';
/** The default reader {@link Limits}. */
export { DEFAULT_LIMITS } from './types.js';
/** Resolves once libsodium is loaded; the synchronous `sealMessage`/`openMessage` need it first. */
export { sodiumReady } from './sodium.js';
/** Streams messages into one sealed bundle (see write-bundle.ts). */
export { writeSealedBundle, type WriteBundleOptions } from './write-bundle.js';
/** Verifies and parses a sealed bundle as it streams in (see read-bundle.ts). */
export { readSealedBundle } from './read-bundle.js';
/** Whether a bundle's defect concerns bytes that authenticated (the sender's own), and that bundle's header. */
export { authenticHeaderOf } from './parser.js';
/** One in-memory message sealed and opened synchronously (see single-message.ts). */
export {
  sealMessage,
  openMessage,
  OPEN_MESSAGE_MAX_BYTES,
  type MessageEnvelope,
  type OpenedMessage,
  type SealMessageOptions,
} from './single-message.js';
/** Sealing mode: `'auto'` (default), or forced `'secretbox'` / `'secretstream'`. */
export type { SealMode } from './sealer.js';
/** Compression settings shared by the writers. */
export type { CompressOptions } from './compress.js';
/** The receiver's sealed receipts: what it delivered of a sender's channel (see receipt.ts). */
export { sealReceipt, openReceipt, RECEIPT_MAX_BYTES, RECEIPT_MAX_REFUSED, type Receipt, type ReceiptEpoch, type ReceiptRefusal } from './receipt.js';
/** The protocol's file names: bundles, gap records, uploads in progress, receipts. */
export { formatBundleName, parseBundleName, compareBundleNames, lastSeq, PART_SUFFIX, RECEIPT_NAME, type BundleNameParts } from './bundle-name.js';
