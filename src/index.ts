// ferry's public library API, export by export. Everything else is internal.

/** Errors: one class, a literal code per failure (see the README's table). */
export { FerryError, isFerryError, ERROR_CODES } from './errors.js';
export type { FerryErrorCode, FerryErrorContext } from './errors.js';

/** A host's spool: open it, send, take, run transactions. */
export { Spool } from './spool/spool.js';
export type { RecoveryReport } from './spool/spool.js';
export type { SpoolOptions } from './spool/options.js';
/** The on-disk layout of a spool. */
export { SpoolLayout } from './spool/layout.js';
/** Name rules for queues, hosts and headers. */
export { validateQueueName, validateHostName, validateHeaders, isQueueName, isHostName } from './spool/names.js';

/** Sending: transactions over one or several queues, consume-transform-produce included. */
export { Transaction } from './outbox/transaction.js';
export type { PayloadInput, SendOptions } from './outbox/transaction.js';
export { Outbox } from './outbox/outbox.js';
export type { OutboxEntry } from './outbox/outbox.js';

/** Taking: leased, oldest first, returned on abort or expiry, dead-lettered after too many attempts. */
export { Inbox } from './inbox/inbox.js';
export type { TakeOptions, InboxCounts } from './inbox/inbox.js';
export { TakenMessage } from './inbox/taken-message.js';
export type { InboxMeta } from './inbox/meta.js';
export { InboxDelivery } from './inbox/delivery.js';
export type { DeliveryItem, PayloadWriter } from './inbox/delivery.js';

/** Maildir names. */
export { uniqueName, compareNames } from './maildir/unique.js';

/** Configuration. */
export { loadConfig, validateConfig, routeFor, queueConfig } from './config/config.js';
export type { FerryConfig, PeerConfig, QueueConfig } from './config/config.js';

/** Pair keys: generate, write, load, choose. */
export {
  generatePairKey, writeKeyFile, formatKeyFile, parseKeyFile, loadKeyDir, fingerprint, KeyRing, KeyStore, keyRows,
} from './keys/index.js';
export type { PairKey, KeyRow } from './keys/index.js';

/** The command line, callable in-process. */
export { main } from './cli/main.js';

/** Envelopes: sealed bundles (secretbox / secretstream) and single sealed messages. */
export * from './envelope/index.js';

/** Transports to a peer's landing area. */
export { SftpTransport, LocalTransport } from './transport/index.js';
export type { Transport, PublishResult, ProgressFn, SftpTransportOptions } from './transport/index.js';

/** The daemon, as a library (the CLI's `ferry daemon` runs exactly this). */
export { Daemon } from './daemon/daemon.js';
export type { DaemonOptions, DaemonStatus } from './daemon/daemon.js';
