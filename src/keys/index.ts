// Public API of the keys area: pair key files, loading a key directory, the key ring, live reload.

/** A pair key and the rules its fields follow. */
export type { PairKey, PairKeyFields } from './pair-key.js';
export {
  /** Length in bytes of a pair key's secret: 32. */
  SECRET_BYTES,
  /** Pattern every key id matches. */
  KEY_ID_PATTERN,
  /** Pattern every host name in a key matches. */
  HOST_NAME_PATTERN,
  /** True when a string is a well-formed key id. */
  isKeyId,
  /** True when a string is a well-formed host name. */
  isHostName,
  /** True when a key binds exactly the two given hosts. */
  bindsPair,
  /** True when a key is expired at a given time. */
  isExpired,
  /** `SHA256:…` name of a key that never reveals the secret. */
  fingerprint,
  /** Validate fields and build a frozen, log-safe PairKey. */
  makePairKey,
} from './pair-key.js';

/** Making a key. */
export type { GenerateOptions } from './generate.js';
export {
  /** Make a new random key for two hosts. */
  generatePairKey,
} from './generate.js';

/** The key file format. */
export {
  /** The text of a key file (contains the secret). */
  formatKeyFile,
  /** Parse and strictly validate a key file's text. */
  parseKeyFile,
  /** Default file name of a key: `<id>.key`. */
  keyFileName,
  /** Largest key file the loader reads. */
  MAX_KEY_FILE_BYTES,
} from './key-file.js';
export {
  /** Create a key file, mode 0600, never overwriting, fsynced with its directory. */
  writeKeyFile,
} from './write-key-file.js';

/** Loading keys from disk. */
export type { ReadKeyFileOptions } from './read-key-file.js';
export {
  /** Read one key file, refusing links, special files, loose modes and foreign owners. */
  readKeyFile,
} from './read-key-file.js';
export type { LoadKeyDirOptions, KeyDirResult } from './load-key-dir.js';
export {
  /** Load every `*.key` file of a directory, reporting each refusal. */
  loadKeyDir,
  /** True for the file names the loader reads. */
  isKeyFileName,
} from './load-key-dir.js';

/** Choosing keys. */
export type { KeyStatus, KeyRingOptions } from './key-ring.js';
export {
  /** An immutable set of keys: the newest seals, any unexpired one opens. */
  KeyRing,
} from './key-ring.js';

/** Keeping keys current. */
export type { KeyStoreOptions, ReloadResult } from './key-store.js';
export {
  /** The live ring of a key directory, reloaded on change. */
  KeyStore,
} from './key-store.js';

/** Listing keys. */
export type { KeyRow } from './key-rows.js';
export {
  /** Rows for `ferry keys list`, never holding a secret. */
  keyRows,
} from './key-rows.js';
