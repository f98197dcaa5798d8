// The live key ring of a directory: loaded at start, reloaded when the directory changes, no restart needed.

import { lstat, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { FerryError } from '../errors.js';
import { KeyRing } from './key-ring.js';
import { isKeyFileName, scanKeyDir } from './load-key-dir.js';

/** Options of {@link KeyStore}. */
export interface KeyStoreOptions {
  /** The uid key files must be owned by. Default: `process.getuid()`. */
  uid?: number;
  /**
   * Called after every reload, including the first, with the ring now in force and the files
   * refused (or why the directory could not be read). Default: none. Should not throw; if it
   * does, the error goes to `onError` (or rejects an explicit {@link KeyStore.reload}).
   */
  onReload?: (ring: KeyRing, errors: readonly FerryError[]) => void;
  /** Errors of background work: watcher failures, a throwing `onReload`. Default: ignored (the periodic re-check still runs). */
  onError?: (err: unknown) => void;
  /** Wait this long after the first change event before reloading, to take a burst of changes at once. Default: 100 ms. */
  debounceMs?: number;
  /** Re-check the directory this often even without events (missed events, NFS, chmod). Default: 30 000 ms. */
  recheckMs?: number;
  /** Poll the directory instead of using inotify, e.g. on NFS. Default: false. */
  usePolling?: boolean;
}

/** What one reload produced. */
export interface ReloadResult {
  /** The ring in force after the reload. */
  ring: KeyRing;
  /** Files refused, or why the directory could not be read. */
  errors: FerryError[];
}

/**
 * Holds the current {@link KeyRing} of a key directory and keeps it up to date.
 *
 * `start()` loads the directory, then watches it (chokidar, depth 0) and reloads shortly after
 * any change; every `recheckMs` it also compares a cheap signature of the directory (entries,
 * sizes, times, modes, owners) with the one at the last load, which catches missed events, NFS,
 * and in-place chmod. If the directory vanishes the previous ring stays in force (a deploy may be
 * replacing it); if it becomes unsafe (group/other-writable) the ring is emptied: fail closed.
 */
export class KeyStore {
  /** The key directory, as given. */
  readonly dir: string;
  readonly #abs: string;
  readonly #uid: number | undefined;
  readonly #onReload: KeyStoreOptions['onReload'];
  readonly #onError: (err: unknown) => void;
  readonly #debounceMs: number;
  readonly #recheckMs: number;
  readonly #usePolling: boolean;

  #ring: KeyRing;
  #errors: FerryError[] = [];
  #signature: string | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #queued: Promise<ReloadResult> | undefined;
  #started = false;
  #stopped = false;
  #watcher: FSWatcher | undefined;
  #watchedIdentity: string | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #interval: NodeJS.Timeout | undefined;
  #rechecking = false;

  constructor(dir: string, opts: KeyStoreOptions = {}) {
    this.dir = dir;
    this.#abs = resolve(dir);
    this.#uid = opts.uid;
    this.#onReload = opts.onReload;
    this.#onError = opts.onError ?? (() => undefined);
    this.#debounceMs = opts.debounceMs ?? 100;
    this.#recheckMs = opts.recheckMs ?? 30_000;
    this.#usePolling = opts.usePolling ?? false;
    this.#ring = new KeyRing([], { dir });
  }

  /** The ring in force: empty until the first load. */
  get ring(): KeyRing {
    return this.#ring;
  }

  /** What the last reload refused. */
  get errors(): readonly FerryError[] {
    return this.#errors;
  }

  /**
   * Reload the directory now. Reloads never overlap: a call made while one runs gets a fresh
   * reload that starts after it (so it sees every change made before the call).
   */
  reload(): Promise<ReloadResult> {
    if (this.#queued !== undefined) return this.#queued;
    const next = this.#chain.then(() => {
      this.#queued = undefined;
      return this.#load();
    });
    this.#queued = next;
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** Load the directory, then watch it and re-check it periodically. Resolves once the watcher is ready. */
  async start(): Promise<ReloadResult> {
    if (this.#started) return { ring: this.#ring, errors: this.#errors };
    this.#started = true;
    const result = await this.reload();
    if (this.#watcher === undefined) await this.#rewatch(this.#watchedIdentity);
    this.#interval = setInterval(() => void this.#recheck(), this.#recheckMs);
    this.#interval.unref();
    return result;
  }

  /** Stop watching and re-checking; waits for a reload in progress. The last ring stays readable. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#interval);
    this.#debounce = undefined;
    this.#interval = undefined;
    await this.#chain;
    const w = this.#watcher;
    this.#watcher = undefined;
    await w?.close();
  }

  async #load(): Promise<ReloadResult> {
    // Signature first: a change landing during the scan then shows up at the next re-check.
    const signature = await dirSignature(this.#abs);
    const scan = await scanKeyDir(this.dir, this.#uid === undefined ? {} : { uid: this.#uid });
    let errors = scan.errors;
    if (scan.state === 'missing' && this.#ring.size > 0) {
      errors = [
        new FerryError('ECONFIG', `key directory ${this.dir} has vanished; keeping the ${this.#ring.size} keys loaded before.`, { path: this.dir, cause: scan.errors[0] }),
      ];
    } else if (scan.state !== 'missing') {
      this.#ring = new KeyRing(scan.keys, { dir: this.dir });
    }
    this.#errors = errors;
    this.#signature = signature;
    // A directory replaced wholesale (rename of a fresh copy) is a new inode: watch the new one.
    if (this.#started && !this.#stopped && scan.identity !== undefined && scan.identity !== this.#watchedIdentity) {
      await this.#rewatch(scan.identity);
    }
    const result = { ring: this.#ring, errors };
    this.#onReload?.(result.ring, errors);
    return result;
  }

  async #rewatch(identity: string | undefined): Promise<void> {
    const old = this.#watcher;
    this.#watcher = undefined;
    await old?.close();
    if (this.#stopped) return;
    this.#watchedIdentity = identity;
    const w = watch(this.#abs, {
      depth: 0,
      ignoreInitial: true,
      // atomic would merge unlink+add and delay events; an rsync rename must wake us at once.
      atomic: false,
      persistent: true,
      usePolling: this.#usePolling,
      interval: 500,
      // rsync writes `.name.XXXXXX` and renames it; the rename shows up as the real name.
      ignored: (p: string) => resolve(p) !== this.#abs && basename(p).startsWith('.'),
    });
    w.on('all', () => this.#schedule());
    w.on('error', (err) => this.#onError(err));
    this.#watcher = w;
    await new Promise<void>((res) => w.once('ready', () => res()));
    if (this.#stopped && this.#watcher === w) {
      this.#watcher = undefined;
      await w.close();
    }
  }

  #schedule(): void {
    if (this.#stopped || this.#debounce !== undefined) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.reload().catch((err: unknown) => this.#onError(err));
    }, this.#debounceMs);
  }

  async #recheck(): Promise<void> {
    if (this.#rechecking || this.#stopped) return;
    this.#rechecking = true;
    try {
      if ((await dirSignature(this.#abs)) !== this.#signature) await this.reload();
    } catch (err) {
      this.#onError(err);
    } finally {
      this.#rechecking = false;
    }
  }
}

/**
 * A string that changes whenever anything the loader looks at changes: the directory's identity,
 * mode and owner, and each `*.key` entry's inode, size, times (ctime covers chmod/chown), mode, owner.
 */
async function dirSignature(dir: string): Promise<string> {
  try {
    const st = await stat(dir);
    const parts = [`${st.dev}:${st.ino}:${st.mode}:${st.uid}:${st.mtimeMs}:${st.ctimeMs}`];
    for (const name of (await readdir(dir)).filter(isKeyFileName).sort()) {
      try {
        const f = await lstat(join(dir, name));
        parts.push(`${name}:${f.ino}:${f.size}:${f.mode}:${f.uid}:${f.mtimeMs}:${f.ctimeMs}`);
      } catch {
        parts.push(`${name}:gone`);
      }
    }
    return parts.join('\n');
  } catch {
    return 'unreadable';
  }
}
