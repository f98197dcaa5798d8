// Durable, symlink-refusing file system steps: every write the spool makes goes through here.
import { spawn } from 'node:child_process';
import { closeSync, constants, fsync, lstatSync, openSync, promises as fsp, renameSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { FerryError, errno } from '../errors.js';

/** Mode of every directory ferry creates. */
export const DIR_MODE = 0o700;
/** Mode of every file ferry creates. */
export const FILE_MODE = 0o600;

const O_NOFOLLOW = constants.O_NOFOLLOW;

/** Opens a file without following a symlink in its last component (ELOOP becomes `ESPOOL_SYMLINK`). */
export async function openNoFollow(path: string, flags: number, mode = FILE_MODE): Promise<FileHandle> {
  try {
    return await fsp.open(path, flags | O_NOFOLLOW, mode);
  } catch (err) {
    if (errno(err) === 'ELOOP') {
      throw new FerryError('ESPOOL_SYMLINK', `refusing to follow the symlink ${path} inside the spool`, { path, cause: err, syscall: 'open' });
    }
    throw err;
  }
}

/** Opens an existing file for reading, refusing symlinks and anything that is not a regular file. */
export async function openRegularForRead(path: string): Promise<FileHandle> {
  const fh = await openNoFollow(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new FerryError('ESPOOL_NOT_FILE', `${path} is not a regular file`, { path });
    }
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Creates a new file exclusively (`O_EXCL`, mode 0600, no symlink follow). */
export async function createExclusive(path: string): Promise<FileHandle> {
  return openNoFollow(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
}

/** fsyncs a directory so that renames and creations inside it survive a crash. */
export async function fsyncDir(path: string): Promise<void> {
  const fh = await fsp.open(path, constants.O_RDONLY | constants.O_DIRECTORY | O_NOFOLLOW);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync of an open descriptor, on libuv's thread pool: the one step of a small commit worth sending
 * there (it waits on the disk), while the cheap steps around it run on the calling thread.
 */
export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** {@link fsyncDir} with the open and close on the calling thread (two ~5 µs calls instead of two thread-pool round trips). */
export async function fsyncDirFast(path: string): Promise<void> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | O_NOFOLLOW);
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** {@link createExclusive} with a direct call: returns the descriptor (ELOOP becomes `ESPOOL_SYMLINK`). */
export function createExclusiveSync(path: string): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, FILE_MODE);
  } catch (err) {
    if (errno(err) === 'ELOOP') throw new FerryError('ESPOOL_SYMLINK', `refusing to follow the symlink ${path} inside the spool`, { path, cause: err, syscall: 'open' });
    throw err;
  }
}

/** Writes a whole buffer to a descriptor with direct calls, looping over short writes. */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
}

/**
 * Creates `path` exclusively (0600, no symlink follow) and writes `chunks` with direct calls, then
 * fsyncs it unless `sync` is false; only the fsync leaves the calling thread. For small files, where
 * thread-pool round trips (~160 µs each here, against ~27 µs for open/write/close called directly)
 * would cost more than the writes themselves.
 */
export async function writeNewFileFast(path: string, chunks: readonly Uint8Array[], sync = true): Promise<void> {
  const fd = createExclusiveSync(path);
  try {
    for (const chunk of chunks) writeAllSync(fd, chunk);
    if (sync) await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to a new file at `path` (exclusive create) and fsyncs it unless `sync` is false. Does not fsync the directory. */
export async function writeNewFile(path: string, data: string | Uint8Array, sync = true): Promise<void> {
  const fh = await createExclusive(path);
  try {
    await fh.writeFile(data);
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `path` atomically with `data`: write `path.tmp-<pid>`, fsync, rename over, fsync the directory.
 * Readers see the old or the new content, never a mix.
 */
export async function replaceFileDurable(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await writeNewFile(tmp, data);
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined); // a full disk must not collect half-written temps
    throw err;
  }
  try {
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(parentOf(path));
}

/** The directory part of a path. */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/**
 * Makes sure `path` is a real directory (not a symlink) with mode 0700, creating it if asked.
 * With `create`, group/other bits beyond `allow` are removed (bits in `allow` are kept: the
 * spool root and drop/ may be 0710 so that a legacy script's group can reach drop/<queue>/).
 * A symlink planted where a spool directory belongs is refused with `ESPOOL_SYMLINK`. A directory it creates is made
 * durable (its parent fsynced) before it returns.
 */
export async function ensureDir(path: string, create = true, allow = 0): Promise<void> {
  let st;
  try {
    st = await fsp.lstat(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT' || !create) throw err;
    let made = false;
    try {
      await fsp.mkdir(path, { mode: DIR_MODE });
      made = true;
    } catch (mkErr) {
      if (errno(mkErr) !== 'EEXIST') throw mkErr;
      made = true; // another process made it a moment ago: its parent fsync may not have happened yet
    }
    // The new entry is durable only once its parent is fsynced: files later made durable inside a directory that
    // a power cut takes back are lost with it (found by the power-cut simulator: a receiver's retained journals).
    if (made) await fsyncDir(parentOf(path));
    st = await fsp.lstat(path);
  }
  if (st.isSymbolicLink()) {
    throw new FerryError('ESPOOL_SYMLINK', `${path} is a symlink; spool directories must be real directories`, { path });
  }
  if (!st.isDirectory()) {
    throw new FerryError('ESPOOL', `${path} is not a directory`, { path });
  }
  if ((st.mode & 0o077 & ~allow) !== 0 && create) {
    await fsp.chmod(path, DIR_MODE | (st.mode & allow & 0o7777));
  }
}

/**
 * Checks each path in turn is a real directory (refusing a symlink with `ESPOOL_SYMLINK`), creating nothing.
 * Run before writing below a directory that was checked when the spool was opened: a symlink planted
 * since then would otherwise be followed, as rename and open follow symlinks in every component but the last.
 */
export async function assertRealDirs(paths: readonly string[]): Promise<void> {
  for (const path of paths) await ensureDir(path, false);
}

/** {@link assertRealDirs} with synchronous lstat calls (a few microseconds each). */
export function assertRealDirsSync(paths: readonly string[]): void {
  for (const path of paths) {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) throw new FerryError('ESPOOL_SYMLINK', `${path} is a symlink; spool directories must be real directories`, { path });
    if (!st.isDirectory()) throw new FerryError('ESPOOL', `${path} is not a directory`, { path });
  }
}

/** Like {@link assertRealDirs} for one directory that may legitimately be missing: false when it is. */
export async function isRealDirIfPresent(path: string): Promise<boolean> {
  try {
    await ensureDir(path, false);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Whether anything (file, directory, link) is at `path`; only ENOENT means no. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** {@link unlinkIfExists} with a direct call. */
export function unlinkIfExistsSync(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** {@link renameIfExists} with a direct call. */
export function renameIfExistsSync(from: string, to: string): boolean {
  try {
    renameSync(from, to);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Removes a file, ignoring one that is already gone. Returns whether it was there. */
export async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await fsp.unlink(path);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** lstat, or undefined when the path is gone. */
export async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** {@link lstatIfExists}, direct. */
export function lstatIfExistsSync(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Renames, returning false instead of throwing when the source is gone (someone else took it). */
export async function renameIfExists(from: string, to: string): Promise<boolean> {
  try {
    await fsp.rename(from, to);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Lists the names in a directory, or [] when it does not exist. */
export async function listDir(path: string): Promise<string[]> {
  try {
    return await fsp.readdir(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return [];
    throw err;
  }
}

/** Writes a whole buffer at the current position, looping over short writes. */
export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await fh.write(data, off, data.byteLength - off);
    off += bytesWritten;
  }
}

/** statfs f_type of a FUSE file system. */
const FUSE_SUPER_MAGIC = 0x65735546;

/**
 * Makes everything written so far on the file system holding `path` durable with one syncfs(2)
 * (through coreutils' `sync -f`, since Node has no binding). One call replaces an fsync per file:
 * on a disk where an fsync costs milliseconds, a bundle of a thousand messages pays it once.
 * Resolves false when `sync -f` is unavailable, so the caller can fall back to per-file fsyncs.
 */
export function syncFileSystem(path: string): Promise<boolean> {
  // FUSE does not pass syncfs(2) to its file system (the power-cut simulator showed it): there, fsync each file.
  try {
    if (statfsSync(path).type === FUSE_SUPER_MAGIC) return Promise.resolve(false);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn('sync', ['-f', path], { stdio: 'ignore' });
    } catch {
      resolve(false);
      return;
    }
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}
