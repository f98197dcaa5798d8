// Loading every key file of a directory, refusing (and reporting) each one that is not safe to use.

import { stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { errno, FerryError } from '../errors.js';
import type { PairKey } from './pair-key.js';
import { describeUser, sudoUser } from '../spool/owner.js';
import { octalMode, readKeyFile } from './read-key-file.js';

/** Options of {@link loadKeyDir}. */
export interface LoadKeyDirOptions {
  /**
   * The uid every key file must be owned by (the directory may also be owned by root).
   * Default: `process.getuid()`; on a platform without uids, no owner check.
   */
  uid?: number;
}

/** What {@link loadKeyDir} found: the keys it accepted and one error per file (or directory) it refused. */
export interface KeyDirResult {
  /** Accepted keys, in file-name order. */
  keys: PairKey[];
  /** Refusals, each naming its file: `EKEYPERM`, `EKEYOWNER`, `EKEYFORMAT`, `ECONFIG`… */
  errors: FerryError[];
}

/** @internal {@link KeyDirResult} plus what the key store needs to tell a vanished directory apart. */
export interface KeyDirScan extends KeyDirResult {
  /** `missing`: the directory does not exist (or is not one); `refused`: unsafe, nothing loaded. */
  state: 'ok' | 'missing' | 'refused';
  /** Identity of the directory scanned, to notice it being replaced. */
  identity?: string;
}

/** True for the names the loader reads: `*.key`, never dotfiles (rsync's `.name.XXXXXX` temp files). */
export function isKeyFileName(name: string): boolean {
  return !name.startsWith('.') && name.endsWith('.key');
}

/**
 * Load every `*.key` file in `dir`. Never throws for a bad file or directory: each refusal is a
 * FerryError in `errors` and the file is left out. Refused: symlinks, non-regular files, modes
 * with any group/other bit (`EKEYPERM`), files not owned by `opts.uid` (`EKEYOWNER`), malformed
 * files and every file sharing an id with another (`EKEYFORMAT`). A directory writable by
 * group/other (`EKEYPERM`) or owned by someone else than `uid` or root (`EKEYOWNER`) loads nothing.
 */
export async function loadKeyDir(dir: string, opts: LoadKeyDirOptions = {}): Promise<KeyDirResult> {
  const { keys, errors } = await scanKeyDir(dir, opts);
  return { keys, errors };
}

/** @internal {@link loadKeyDir}, also reporting the directory's state and identity. */
export async function scanKeyDir(dir: string, opts: LoadKeyDirOptions = {}): Promise<KeyDirScan> {
  const uid = opts.uid ?? process.getuid?.();
  let names: string[];
  let identity: string;
  try {
    const st = await stat(dir);
    identity = `${st.dev}:${st.ino}`;
    if (!st.isDirectory()) {
      return { keys: [], errors: [new FerryError('ECONFIG', `key directory ${dir} is not a directory.`, { path: dir })], state: 'missing' };
    }
    // Anyone who can write the directory can swap key files: trust nothing in it.
    if ((st.mode & 0o022) !== 0) {
      const err = new FerryError('EKEYPERM', `key directory ${dir} has mode ${octalMode(st.mode)}; expected no group/other write access (e.g. 0700); no key loaded.`, { path: dir });
      return { keys: [], errors: [err], state: 'refused', identity };
    }
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
      const err = new FerryError('EKEYOWNER', `key directory ${dir} is owned by ${describeUser(st.uid)}, ${uid === 0 ? 'not root' : `neither root nor ${describeUser(uid)}`}, the user ferry runs as: run ferry as the directory's owner (\`sudo -u ${sudoUser(st.uid)} ferry …\`); no key loaded.`, { path: dir });
      return { keys: [], errors: [err], state: 'refused', identity };
    }
    names = (await readdir(dir)).filter(isKeyFileName).sort();
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return { keys: [], errors: [new FerryError('ECONFIG', `key directory ${dir} does not exist.`, { path: dir, syscall: 'stat', cause: err })], state: 'missing' };
    }
    const ferryCode = code === 'EACCES' || code === 'EPERM' ? 'EKEYPERM' : 'ECONFIG';
    return { keys: [], errors: [new FerryError(ferryCode, `cannot read key directory ${dir}: ${(err as Error).message}.`, { path: dir, cause: err })], state: 'refused' };
  }

  const loaded: PairKey[] = [];
  const errors: FerryError[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const key = await readKeyFile(path, { uid });
      if (key !== undefined) loaded.push(key);
    } catch (err) {
      errors.push(err instanceof FerryError ? err : new FerryError('EKEYFORMAT', `cannot load key file ${path}.`, { path, cause: err }));
    }
  }

  // Two files claiming one id: we cannot tell which secret is right, so neither is used.
  const byId = new Map<string, PairKey[]>();
  for (const key of loaded) byId.set(key.id, [...(byId.get(key.id) ?? []), key]);
  const keys: PairKey[] = [];
  for (const key of loaded) {
    const same = byId.get(key.id) ?? [];
    if (same.length === 1) {
      keys.push(key);
      continue;
    }
    const others = same.filter((k) => k !== key).map((k) => k.path ?? '?').join(', ');
    errors.push(new FerryError('EKEYFORMAT', `key file ${key.path ?? '?'} has id \`${key.id}\`, also used by ${others}; refusing every file with that id.`, { path: key.path }));
  }
  return { keys, errors, state: 'ok', identity };
}
