// The key that seals messages a host routes to itself: random, local, never deployed anywhere.
//
// A queue routed to this host takes the same path as any other (sealed bundle → landing →
// verified delivery), so local delivery gets the same dedupe, journal and quarantine. The key is
// 32 random bytes in state/self.key (0600), made on first use.
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { FerryError, errno } from '../errors.js';
import { writeNewFile, fsyncDir } from '../maildir/fsx.js';

/** A key binding a host to itself. */
export interface SelfKey {
  id: string;
  secret: Uint8Array;
  peers: readonly [string, string];
}

/** Loads state/self.key, creating it when absent. */
export async function loadSelfKey(stateDir: string, host: string): Promise<SelfKey> {
  const path = join(stateDir, 'self.key');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const st = await fh.stat();
        if ((st.mode & 0o077) !== 0) throw new FerryError('EKEYPERM', `self key ${path} has mode 0${(st.mode & 0o777).toString(8)}; expected 0600 (no group/other access)`, { path });
        const text = (await fh.readFile('utf8')).trim();
        const m = /^([A-Za-z0-9._-]{1,64}) ([0-9a-f]{64})$/.exec(text);
        if (!m) throw new FerryError('EKEYFORMAT', `self key ${path} is malformed; remove it to make a new one`, { path });
        return { id: m[1] as string, secret: Buffer.from(m[2] as string, 'hex'), peers: [host, host] };
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
    const id = `self.${randomBytes(6).toString('hex')}`;
    try {
      await writeNewFile(path, `${id} ${randomBytes(32).toString('hex')}\n`);
      await fsyncDir(stateDir);
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
  }
  throw new FerryError('EKEYFORMAT', `self key ${path} could not be created`, { path });
}
