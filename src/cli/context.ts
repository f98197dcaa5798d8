// Turning global flags (--config, --root, --keys) into a config and an open spool.
import { loadConfig, type FerryConfig } from '../config/config.js';
import { Spool } from '../spool/spool.js';

/** Flags every command accepts. */
export interface GlobalFlags {
  config?: string;
  root?: string;
  keys?: string;
  debug?: boolean;
}

/** Loads the config with the command-line overrides applied. */
export function configFrom(flags: GlobalFlags, host?: string, allowMissing = false): Promise<FerryConfig> {
  return loadConfig(flags.config, { root: flags.root, keys: flags.keys, host }, allowMissing);
}

/** How a command opens the spool. */
export interface OpenMode {
  /** Create the layout when missing (`ferry init`). Default false. */
  create?: boolean;
  /** Only look (status, flush, doctor): no chmod, no recovery, any reader may. Default false: a writer, which must be the spool's owner. */
  inspect?: boolean;
}

/** Opens the configured spool (it must exist: `ferry init` creates it). */
export async function openSpool(config: FerryConfig, mode: OpenMode = {}): Promise<Spool> {
  return Spool.open(config.root, { host: config.host, create: mode.create ?? false, inspect: mode.inspect ?? false, leaseMs: config.leaseMs, maxAttempts: config.maxAttempts });
}
