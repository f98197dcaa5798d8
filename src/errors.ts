// The one error type ferry throws: a literal code, a one-sentence message, Node-style context fields.

/**
 * Every error code ferry can raise. Each is listed, with its meaning, in the README.
 * `recoverable` codes are retried with backoff by the daemon; the others are fatal for the
 * thing they name (the envelope is quarantined, the command refuses, the key is ignored).
 */
export const ERROR_CODES = {
  // input and configuration
  EQUEUE_NAME: 'fatal',
  EPEER_NAME: 'fatal',
  EHOST_NAME: 'fatal',
  EHEADER: 'fatal',
  ECONFIG: 'fatal',
  EUSAGE: 'fatal',
  ENOENT_INPUT: 'fatal',
  // spool
  ESPOOL: 'fatal',
  ESPOOL_SYMLINK: 'fatal',
  ESPOOL_NOT_FILE: 'fatal',
  ESPOOL_XDEV: 'fatal',
  ESPOOL_OWNER: 'fatal',
  ENOT_INIT: 'fatal',
  ETXN_CLOSED: 'fatal',
  ELEASE_LOST: 'fatal',
  ETIMEOUT: 'recoverable',
  EDEAD_LETTER: 'fatal',
  ELOCKED: 'fatal',
  // keys
  EKEYPERM: 'fatal',
  EKEYOWNER: 'fatal',
  EKEYFORMAT: 'fatal',
  EKEY_NONE: 'fatal',
  EKEY_UNKNOWN: 'fatal',
  EKEY_PAIR: 'fatal',
  EKEY_EXPIRED: 'fatal',
  // envelopes
  EENVELOPE_MAGIC: 'fatal',
  EENVELOPE_VERSION: 'fatal',
  EENVELOPE_FORMAT: 'fatal',
  EENVELOPE_MAC: 'fatal',
  EENVELOPE_TRUNCATED: 'fatal',
  EENVELOPE_TOO_LARGE: 'fatal',
  EENVELOPE_ORIGIN: 'fatal',
  EENVELOPE_DEST: 'fatal',
  EENVELOPE_REPLAY: 'fatal',
  EENVELOPE_BOMB: 'fatal',
  EENVELOPE_QUEUE: 'fatal',
  // channels: order, epochs, receipts (the trust boundary)
  ELANDING: 'fatal',
  EEPOCH_CLOSED: 'fatal',
  EEPOCH_CONFLICT: 'fatal',
  ESEQ_REUSE: 'fatal',
  EDEDUPE_ROLLBACK: 'fatal',
  ESENDER_RESTORED: 'fatal',
  ERECEIPT: 'recoverable',
  ECOLLISION: 'recoverable',
  EGAP: 'recoverable',
  // transport
  ETRANSPORT: 'recoverable',
  ETRANSPORT_AUTH: 'recoverable',
  EHOSTKEY: 'fatal',
  EHOSTKEY_UNKNOWN: 'fatal',
  ESFTP_EXTENSION: 'fatal',
  EREMOTE_FULL: 'recoverable',
  // local resources
  EDISK_FULL: 'recoverable',
} as const;

/** A ferry error code, e.g. `'EKEYPERM'`. */
export type FerryErrorCode = keyof typeof ERROR_CODES;

/** Optional context attached to a {@link FerryError}, shaped like Node's own errors. */
export interface FerryErrorContext {
  /** The file or directory concerned. */
  path?: string;
  /** The peer host concerned. */
  peer?: string;
  /** The queue concerned. */
  queue?: string;
  /** The failing system call, when the error wraps one. */
  syscall?: string;
  /** The underlying error. */
  cause?: unknown;
}

/** The base of every error ferry throws on purpose. `message` is one sentence naming the thing and what was expected. */
export class FerryError extends Error {
  /** Stable, documented code. */
  readonly code: FerryErrorCode;
  readonly path?: string;
  readonly peer?: string;
  readonly queue?: string;
  readonly syscall?: string;

  constructor(code: FerryErrorCode, message: string, context: FerryErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = 'FerryError';
    this.code = code;
    if (context.path !== undefined) this.path = context.path;
    if (context.peer !== undefined) this.peer = context.peer;
    if (context.queue !== undefined) this.queue = context.queue;
    if (context.syscall !== undefined) this.syscall = context.syscall;
  }

  /** True when the daemon should retry the operation later rather than give up on it. */
  get recoverable(): boolean {
    return ERROR_CODES[this.code] === 'recoverable';
  }
}

/** True when `err` is a {@link FerryError}, optionally with the given code. */
export function isFerryError(err: unknown, code?: FerryErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}

/** The message of anything thrown: an Error's message, else its string form. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The `code` of a Node system error (`'ENOENT'`, `'EEXIST'`…), or undefined. */
export function errno(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}
