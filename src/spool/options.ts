// Options of a spool, with their defaults in one place.

/** How a spool behaves. Every field has a default. */
export interface SpoolOptions {
  /** This host's name, as peers know it. Required. */
  host: string;
  /** Create the layout when it is missing (what `ferry init` does). Default: false — a missing spool is an error. */
  create?: boolean;
  /**
   * Open only to look (`ferry status`, `ferry doctor`, `ferry flush`): create nothing, change no mode, run no
   * recovery, and allow any user who can read the spool (root included). Default: false — a writer, which
   * must be the spool's owner (`ESPOOL_OWNER` otherwise) and recovers what a crash left behind.
   */
  inspect?: boolean;
  /** How long a take holds a message before it returns to the queue, in ms. Default: 300 000 (5 min). */
  leaseMs?: number;
  /** Failed attempts (aborts, expired leases) before a message moves to its queue's dead-letter directory. Default: 5. */
  maxAttempts?: number;
  /** Files in any `tmp/` older than this are removed as debris of a dead writer, in ms. Default: 36 h (the maildir rule). */
  tmpMaxAgeMs?: number;
  /** Poll interval while `take` waits, in ms (filesystem events wake it sooner). Default: 200. */
  pollMs?: number;
}

/** {@link SpoolOptions} with every default filled in. */
export type ResolvedSpoolOptions = Required<Omit<SpoolOptions, 'create' | 'inspect'>> & { create: boolean; inspect: boolean };

/** Fills in the defaults of {@link SpoolOptions}. */
export function resolveSpoolOptions(opts: SpoolOptions): ResolvedSpoolOptions {
  return {
    host: opts.host,
    create: opts.create ?? false,
    inspect: opts.inspect ?? false,
    leaseMs: opts.leaseMs ?? 300_000,
    maxAttempts: opts.maxAttempts ?? 5,
    tmpMaxAgeMs: opts.tmpMaxAgeMs ?? 36 * 3600_000,
    pollMs: opts.pollMs ?? 200,
  };
}

/** What the outbox and inbox need to know about the spool they work in. */
export interface SpoolContext {
  readonly layout: import('./layout.js').SpoolLayout;
  readonly host: string;
  readonly options: ResolvedSpoolOptions;
  /** Makes the names that decide shipping order (commits, drop ingest): increasing across this host's processes. */
  readonly names: import('../maildir/name-floor.js').NameFloor;
}
