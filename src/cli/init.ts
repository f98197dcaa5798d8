// `ferry init`: create the spool layout (0700) and, when none exists, a starter config.
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_CONFIG_PATH, starterConfig } from '../config/config.js';
import { errno } from '../errors.js';
import { validateHostName } from '../spool/names.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { makeKeyDir } from './key-dir.js';
import { out, type CliIO } from './io.js';

/** Flags of `ferry init`. */
export interface InitFlags extends GlobalFlags {
  host?: string;
}

/** Creates the spool; writes a starter config at --config (or $FERRY_CONFIG, or the default path) if absent. */
export async function initCommand(flags: InitFlags, io: CliIO): Promise<number> {
  if (flags.host !== undefined) validateHostName(flags.host);
  const config = await configFrom(flags, flags.host, true);
  const spool = await openSpool(config, { create: true });
  out(io, `spool ready at ${spool.root} (host ${config.host})`);
  if (config.path === undefined) {
    const path = flags.config ?? process.env.FERRY_CONFIG ?? DEFAULT_CONFIG_PATH;
    try {
      await fsp.mkdir(dirname(path), { recursive: true, mode: 0o755 });
      await fsp.writeFile(path, starterConfig(config.host, config.root, config.keys), { flag: 'wx', mode: 0o644 });
      out(io, `wrote a starter config to ${path}`);
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
  }
  await makeKeyDir(config.keys).catch(() => undefined);
  const owner = (await fsp.lstat(spool.root)).uid;
  if (owner === 0) {
    out(io, `note: the spool belongs to root; a daemon running as another user (the systemd unit's User=ferry) cannot use it: \`chown -R ferry:ferry ${spool.root}\`, then run every ferry command as that user (\`sudo -u ferry ferry …\`)`);
  }
  return 0;
}
