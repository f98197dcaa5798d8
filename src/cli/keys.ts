// `ferry keys generate|list`: make pair keys and show them — ids, peers, age, fingerprints, never secrets.
import { join } from 'node:path';
import { FerryError } from '../errors.js';
import { fingerprint, generatePairKey, keyFileName, keyRows, KeyRing, loadKeyDir, writeKeyFile } from '../keys/index.js';
import { validateHostName } from '../spool/names.js';
import { configFrom, type GlobalFlags } from './context.js';
import { makeKeyDir } from './key-dir.js';
import { out, type CliIO } from './io.js';
import { now } from '../clock.js';

/** Flags of `ferry keys generate`. */
export interface GenerateFlags extends GlobalFlags {
  peers?: string;
  out?: string;
  expires?: string;
}

/** Flags of `ferry keys list`. */
export interface ListFlags extends GlobalFlags {
  json?: boolean;
}

/** Writes a new key for the pair; prints its path and fingerprint. */
export async function keysGenerateCommand(flags: GenerateFlags, io: CliIO): Promise<number> {
  const peers = (flags.peers ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (peers.length !== 2) throw new FerryError('EUSAGE', `--peers expects two host names separated by a comma, got ${JSON.stringify(flags.peers ?? '')}`);
  const [a, b] = peers as [string, string];
  validateHostName(a, 'peer');
  validateHostName(b, 'peer');
  if (a === b) throw new FerryError('EUSAGE', `--peers names ${a} twice; a key binds two different hosts`);
  let expires: Date | undefined;
  if (flags.expires !== undefined) {
    const days = Number(flags.expires);
    if (!Number.isFinite(days) || days <= 0) throw new FerryError('EUSAGE', `--expires expects a positive number of days, got ${JSON.stringify(flags.expires)}`);
    expires = new Date(now() + days * 86_400_000);
  }
  const key = await generatePairKey(a, b, expires === undefined ? {} : { expires });
  let path = flags.out;
  if (path === undefined) {
    const config = await configFrom(flags);
    await makeKeyDir(config.keys);
    path = join(config.keys, keyFileName(key));
  }
  await writeKeyFile(path, key);
  out(io, `${path}  ${key.id}  ${fingerprint(key)}`);
  return 0;
}

/** Lists the keys of the key directory; refused files are named on stderr and make the exit non-zero. */
export async function keysListCommand(flags: ListFlags, io: CliIO): Promise<number> {
  const config = await configFrom(flags);
  const { keys, errors } = await loadKeyDir(config.keys);
  const rows = keyRows(new KeyRing(keys, { dir: config.keys }));
  if (flags.json) {
    out(io, JSON.stringify({ dir: config.keys, keys: rows, refused: errors.map((e) => ({ code: e.code, path: e.path, message: e.message })) }));
  } else {
    out(io, ['ID', 'PEERS', 'AGE', 'EXPIRES', 'FINGERPRINT'].join('\t'));
    for (const r of rows) {
      const age = r.ageSeconds < 86_400 ? `${Math.floor(r.ageSeconds / 3600)}h` : `${Math.floor(r.ageSeconds / 86_400)}d`;
      const exp = r.expires === undefined ? 'never' : r.expired ? `expired ${r.expires.toISOString()}` : r.expires.toISOString();
      out(io, [r.id, r.peers.join(','), age, exp, r.fingerprint].join('\t'));
    }
  }
  for (const e of errors) io.stderr.write(`ferry: ${e.message}\n`);
  return errors.length > 0 ? 1 : 0;
}
