// A directory held by descriptor: every entry is reached through /proc/self/fd/N, never through a path a peer could swap.
//
// Node has no openat(2). A descriptor plus procfs gives the same effect: `/proc/self/fd/N/name` resolves `name`
// inside the directory the descriptor holds, even after someone renamed that directory away and put a symlink
// in its place (NODE-NOTES, "Pinned directories without openat"). The directory is pinned once (device and inode
// recorded) and re-verified on every use: if its path no longer leads to the same real directory, it is refused.
// Entry names are checked before they are joined (no `/`, no `.` or `..`, at most 255 bytes), since
// `/proc/self/fd/N/..` would resolve to the parent.
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, opendirSync, renameSync, rmdirSync, unlinkSync, writeSync, fsyncSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { FerryError, errno } from '../errors.js';

const NAME_MAX = 255;

/** True when `name` is one path component that can be joined safely (no `/`, not `.` or `..`, no NUL). */
export function isSafeEntryName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && Buffer.byteLength(name) <= NAME_MAX;
}

/** What the pinned directory must be: its owner, and which permission bits it may have. */
export interface PinnedDirExpect {
  /** The owner it must have (the daemon's uid). Default: not checked. */
  uid?: number;
  /** Permission bits it may have beyond 0700 (e.g. 0o2070 for a peer's group). Bits for "other" are always refused. Default 0o2070. */
  allow?: number;
}

/** An entry opened for reading, with what its descriptor says it is. */
export interface OpenedEntry {
  fd: number;
  stat: Stats;
}

/** A directory pinned by descriptor. One per landing directory; `close()` when done. */
export class PinnedDir {
  private fd: number;
  readonly dev: number;
  readonly ino: number;

  private constructor(readonly path: string, fd: number, st: Stats, private readonly expect: PinnedDirExpect) {
    this.fd = fd;
    this.dev = st.dev;
    this.ino = st.ino;
  }

  /**
   * Pins the real directory at `path`: opened O_DIRECTORY|O_NOFOLLOW, so a symlink there is refused (`ELANDING`), and
   * checked against `expect`. Throws ENOENT as Node does when there is nothing at `path`.
   */
  static open(path: string, expect: PinnedDirExpect = {}): PinnedDir {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    } catch (err) {
      if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') {
        throw new FerryError('ELANDING', `${path} is not a real directory (${errno(err) === 'ELOOP' ? 'a symlink' : 'not a directory'}); refusing to use it`, { path, cause: err });
      }
      throw err;
    }
    try {
      const st = fstatSync(fd);
      checkMode(path, st, expect);
      return new PinnedDir(path, fd, st, expect);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** `/proc/self/fd/N`: the pinned directory, whatever its path leads to now. */
  get handle(): string {
    if (this.fd < 0) throw new Error(`PinnedDir ${this.path} is closed`);
    return `/proc/self/fd/${this.fd}`;
  }

  /**
   * Throws `ELANDING` unless the directory's path still leads to the pinned directory (same device and inode, not a
   * symlink) and its owner and mode are still as expected. Run before every pass over it.
   */
  verify(): void {
    let st: Stats;
    try {
      st = lstatSync(this.path);
    } catch (err) {
      throw new FerryError('ELANDING', `${this.path} is gone (${errno(err) ?? String(err)}); it was replaced or removed since it was pinned`, { path: this.path, cause: err });
    }
    if (st.isSymbolicLink() || !st.isDirectory() || st.dev !== this.dev || st.ino !== this.ino) {
      throw new FerryError('ELANDING', `${this.path} is no longer the directory pinned at start (it was ${st.isSymbolicLink() ? 'replaced by a symlink' : 'replaced'}); refusing to use it until the daemon is reloaded`, { path: this.path });
    }
    checkMode(this.path, fstatSync(this.fd), this.expect);
  }

  /** The path of an entry through the descriptor. Throws `ELANDING` for a name that is not one safe component. */
  entry(name: string): string {
    if (!isSafeEntryName(name)) throw new FerryError('ELANDING', `refusing the entry name ${JSON.stringify(name.slice(0, 80))} in ${this.path}`, { path: this.path });
    return `${this.handle}/${name}`;
  }

  /** Calls `fn` for each entry name, at most `max` of them (a peer can create millions); returns how many it saw. */
  each(max: number, fn: (name: string) => void): number {
    const dir = opendirSync(this.handle, { bufferSize: 256 });
    let seen = 0;
    try {
      for (;;) {
        const d = dir.readSync();
        if (d === null || seen >= max) break;
        seen += 1;
        fn(d.name);
      }
    } finally {
      dir.closeSync();
    }
    return seen;
  }

  /** lstat of an entry (never follows it), or undefined when it is gone. */
  lstat(name: string): Stats | undefined {
    try {
      return lstatSync(this.entry(name));
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Opens an entry for reading: never through a symlink (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK), and
   * returns the descriptor's own fstat for the caller to judge (regular file, one link, same device). Undefined when
   * gone; a symlink, or a file its owner made unreadable, comes back unopened (`fd` -1, its lstat).
   */
  openRead(name: string): OpenedEntry | undefined {
    let fd: number;
    try {
      fd = openSync(this.entry(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      // Swapped for a symlink since it was listed, or made unreadable by its owner: report it, never follow it.
      if (errno(err) === 'ELOOP' || errno(err) === 'EACCES' || errno(err) === 'EPERM') {
        const st = this.lstat(name);
        return st === undefined ? undefined : { fd: -1, stat: st };
      }
      throw err;
    }
    try {
      return { fd, stat: fstatSync(fd) };
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Cuts a regular file to length 0 (opened without following links, never blocking); false when it is gone or not a regular file. */
  truncate(name: string): boolean {
    let fd: number;
    try {
      fd = openSync(this.entry(name), constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      if (!fstatSync(fd).isFile()) return false;
      ftruncateSync(fd, 0);
      return true;
    } finally {
      closeSync(fd);
    }
  }

  /** Removes an entry (the name only: a symlink itself, never its target); false when it was gone. */
  unlink(name: string): boolean {
    try {
      unlinkSync(this.entry(name));
      return true;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Removes a directory a peer made, and what it holds, down to `depth` levels and at most `budget` entries, each
   * level pinned in turn (a peer renaming things meanwhile only makes the removal stop early). Returns whether it is gone.
   */
  removeTree(name: string, depth = 4, budget = { left: 10_000 }): boolean {
    let sub: PinnedDir;
    try {
      sub = PinnedDir.open(this.entry(name), { allow: 0o7777 });
    } catch {
      return this.unlink(name); // not a directory any more: just the name
    }
    try {
      if (depth > 0) {
        sub.each(budget.left, (child) => {
          if (budget.left-- <= 0 || !isSafeEntryName(child)) return;
          const st = sub.lstat(child);
          if (st?.isDirectory()) sub.removeTree(child, depth - 1, budget);
          else sub.unlink(child);
        });
      }
    } finally {
      sub.close();
    }
    try {
      rmdirSync(this.entry(name));
      return true;
    } catch (err) {
      if (errno(err) === 'ENOENT') return true;
      return false;
    }
  }

  /**
   * Replaces the entry `name` with `data` (mode `mode`): written under a fresh random dot-name created exclusively
   * (O_EXCL never follows a symlink a peer planted), then renamed over `name` inside the pinned directory (rename
   * replaces a symlink or file there, never follows it). `sync`: fsync the file first. Throws on failure, leaving no temp.
   */
  replace(name: string, data: Uint8Array, mode = 0o640, sync = false): void {
    const tmp = `.ferry-${randomBytes(6).toString('hex')}.tmp`;
    const tmpPath = this.entry(tmp);
    const fd = openSync(tmpPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      let off = 0;
      while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
      if (sync) fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      this.unlink(tmp);
      throw err;
    }
    closeSync(fd);
    try {
      renameSync(tmpPath, this.entry(name));
    } catch (err) {
      this.unlink(tmp);
      throw err;
    }
  }

  /** fsyncs the pinned directory (its entries: what was removed from it stays removed after a power cut). */
  sync(): void {
    if (this.fd < 0) throw new Error(`PinnedDir ${this.path} is closed`);
    fsyncSync(this.fd);
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function checkMode(path: string, st: Stats, expect: PinnedDirExpect): void {
  if (!st.isDirectory()) throw new FerryError('ELANDING', `${path} is not a directory`, { path });
  if (expect.uid !== undefined && st.uid !== expect.uid) {
    throw new FerryError('ELANDING', `${path} belongs to uid ${st.uid}, not to the daemon's user (uid ${expect.uid}); a peer must never own its landing directory: \`chown ${expect.uid} ${path}\``, { path });
  }
  const allow = (expect.allow ?? 0o2070) | 0o700;
  const bad = st.mode & 0o7777 & ~allow;
  if ((st.mode & 0o007) !== 0 || bad !== 0) {
    throw new FerryError('ELANDING', `${path} has mode 0${(st.mode & 0o7777).toString(8)}; a landing directory must give nothing to others (2770 for a peer's login, 0700 for this host): \`chmod o-rwx ${path}\``, { path });
  }
}
