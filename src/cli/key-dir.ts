// Creating the key directory: private itself (0700), while the parents it needs stay traversable (0755).
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Creates `dir` with mode 0700, and any missing parent with 0755. A recursive mkdir with 0700 would
 * make /etc/ferry private too, and the daemon's user could then not read the config file beside the keys.
 */
export async function makeKeyDir(dir: string): Promise<void> {
  await fsp.mkdir(dirname(dir), { recursive: true, mode: 0o755 });
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
}
