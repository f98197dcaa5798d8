// Reading one key file without trusting it: no links, no special files, no loose modes, right owner.

import { constants, type Stats } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { errno, FerryError } from '../errors.js';
import { describeUser, sudoUser } from '../spool/owner.js';
import { MAX_KEY_FILE_BYTES, parseKeyFile } from './key-file.js';
import type { PairKey } from './pair-key.js';

/** Options of {@link readKeyFile}. */
export interface ReadKeyFileOptions {
  /** Required owner uid. Default: undefined, no owner check (the loader always passes one). */
  uid?: number | undefined;
  /** @internal Test seam: runs between the `lstat` and the `open`, to plant a race. */
  beforeOpen?: (() => Promise<void>) | undefined;
}

/**
 * Read and validate the key file `path`. Resolves undefined when the file vanished meanwhile
 * (a deploy in progress; the next reload sees the result). Throws FerryError: `EKEYPERM` for a
 * symlink, a non-regular file or group/other mode bits, `EKEYOWNER` for a foreign owner,
 * `EKEYFORMAT` for bad content.
 */
export async function readKeyFile(path: string, opts: ReadKeyFileOptions = {}): Promise<PairKey | undefined> {
  // lstat first only for the clearer message and to never open a FIFO or device at all;
  // the checks that count are made again on the opened descriptor, after O_NOFOLLOW.
  let st: Stats;
  try {
    st = await lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw ioError(path, err, 'lstat');
  }
  checkStats(path, st, opts.uid);
  await opts.beforeOpen?.();

  let fh: FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted after the lstat fails with ELOOP instead of being followed.
    // O_NONBLOCK: a FIFO planted after the lstat does not hang the loader waiting for a writer.
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    if (errno(err) === 'ELOOP') throw symlinkError(path, err);
    throw ioError(path, err, 'open');
  }
  try {
    const fst = await fh.stat();
    checkStats(path, fst, opts.uid);
    if (fst.size > MAX_KEY_FILE_BYTES) {
      throw new FerryError('EKEYFORMAT', `key file ${path} is ${fst.size} bytes; expected at most ${MAX_KEY_FILE_BYTES}.`, { path });
    }
    const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
    let len = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, len, buf.length - len, null);
      if (bytesRead === 0) break;
      len += bytesRead;
      if (len > MAX_KEY_FILE_BYTES) {
        buf.fill(0);
        throw new FerryError('EKEYFORMAT', `key file ${path} grew past ${MAX_KEY_FILE_BYTES} bytes while being read.`, { path });
      }
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, len));
    } catch {
      throw new FerryError('EKEYFORMAT', `key file ${path} is not UTF-8 text.`, { path });
    } finally {
      buf.fill(0);
    }
    return parseKeyFile(text, path);
  } finally {
    await fh.close();
  }
}

/** Octal permission bits as ls and ssh show them: `0644`. */
export function octalMode(mode: number): string {
  return '0' + (mode & 0o7777).toString(8).padStart(3, '0');
}

function checkStats(path: string, st: Stats, uid: number | undefined): void {
  if (st.isSymbolicLink()) throw symlinkError(path);
  if (!st.isFile()) {
    throw new FerryError('EKEYPERM', `key file ${path} is ${kind(st)}; expected a regular file.`, { path });
  }
  if (uid !== undefined && st.uid !== uid) {
    throw new FerryError('EKEYOWNER', `key file ${path} is owned by ${describeUser(st.uid)}, not by ${describeUser(uid)}, the user ferry runs as: give it to that user (\`chown ${sudoUser(uid)}: ${path}\`) or run ferry as its owner (\`sudo -u ${sudoUser(st.uid)} ferry …\`).`, { path });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new FerryError('EKEYPERM', `key file ${path} has mode ${octalMode(st.mode)}; expected 0600 (no group/other access).`, { path });
  }
}

function symlinkError(path: string, cause?: unknown): FerryError {
  return new FerryError('EKEYPERM', `key file ${path} is a symbolic link; expected a regular file (key files are never followed through links).`, { path, syscall: cause === undefined ? 'lstat' : 'open', cause });
}

function ioError(path: string, err: unknown, syscall: string): FerryError {
  const code = errno(err) === 'EACCES' || errno(err) === 'EPERM' ? 'EKEYPERM' : 'EKEYFORMAT';
  return new FerryError(code, `cannot read key file ${path}: ${(err as Error).message}.`, { path, syscall, cause: err });
}

function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}
