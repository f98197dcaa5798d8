// Regression: pinning one key type must not let a server authenticate with another of its host keys.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { generateKey, startSshd, type Sshd } from '../helpers/sshd.js';
import { makeLanding, randomFile, removeDir, sftpTransportFor, tempDir } from '../transport/fixtures.js';

let sshd: Sshd;
let work: string;
beforeAll(async () => {
  sshd = await startSshd();
  work = await tempDir();
  await makeLanding(path.join(work, 'spool'));
});
afterAll(async () => {
  await sshd?.stop();
  await removeDir(work);
});

it('refuses (EHOSTKEY) a server that holds none of the pinned key types instead of accepting its other key', async () => {
  // The server only has an ed25519 host key; known_hosts pins an RSA key for it.
  const rsaPub = await generateKey(path.join(work, 'rsa_host'), 'pinned-rsa', 'rsa');
  const [type, b64] = rsaPub.split(/\s+/);
  const kh = path.join(work, 'known_hosts');
  await writeFile(kh, `[127.0.0.1]:${sshd.port} ${type} ${b64}\n`);
  const t = sftpTransportFor(sshd, path.join(work, 'spool'), { knownHosts: kh });
  try {
    const err: unknown = await t.publish(await randomFile(path.join(work, 'b'), 10), 'b1').catch((e: unknown) => e);
    expect(isFerryError(err, 'EHOSTKEY')).toBe(true);
    expect((err as Error).message).toContain('beta');
    expect(t.connected).toBe(false);
  } finally {
    await t.close();
  }
});
