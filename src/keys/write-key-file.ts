// Writing a key file to disk: never over an existing file, mode 0600, durable before we return.

import { open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errno, FerryError } from '../errors.js';
import { formatKeyFile } from './key-file.js';
import type { PairKey } from './pair-key.js';

/**
 * Create the key file `path` for `key` with mode 0600 and fsync it and its directory.
 * Never overwrites: an existing `path` gives FerryError `EKEYPERM` (cause: the `EEXIST` error) and
 * leaves it untouched. A full disk gives `EDISK_FULL`; other failures `EKEYPERM`.
 * On any failure after creation the partial file is removed, so a retry can succeed.
 */
export async function writeKeyFile(path: string, key: PairKey): Promise<void> {
  const text = formatKeyFile(key); // validates first: nothing is created for a bad key
  let fh;
  try {
    // 'wx' = O_CREAT|O_EXCL: refuses an existing file and does not follow a planted symlink.
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    if (errno(err) === 'EEXIST') {
      throw new FerryError('EKEYPERM', `key file ${path} already exists; ferry never overwrites a key file (remove it first or choose another name).`, { path, syscall: 'open', cause: err });
    }
    throw writeError(path, err, 'create');
  }
  try {
    // The umask can only remove bits from 0600; set it exactly so the loader accepts the file.
    await fh.chmod(0o600);
    await fh.writeFile(text, 'utf8');
    // fsync the data before reporting success, then the directory so the name survives a crash.
    await fh.sync();
    await fh.close();
    fh = undefined;
    await syncDir(dirname(path));
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw writeError(path, err, 'write');
  }
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function writeError(path: string, err: unknown, what: 'create' | 'write'): FerryError {
  const code = errno(err) === 'ENOSPC' || errno(err) === 'EDQUOT' ? 'EDISK_FULL' : 'EKEYPERM';
  const syscall = typeof err === 'object' && err !== null && 'syscall' in err ? String(err.syscall) : undefined;
  return new FerryError(code, `cannot ${what} key file ${path}: ${(err as Error).message}.`, { path, syscall, cause: err });
}
