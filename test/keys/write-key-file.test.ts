import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { generatePairKey, keyFileName, loadKeyDir, writeKeyFile } from '../../src/keys/index.js';
import { useTempDir } from './fixtures.js';

const tmp = useTempDir();

describe('writeKeyFile', () => {
  it('writes a generated key that the loader reads back identically', async () => {
    const key = await generatePairKey('alpha', 'beta', { expires: new Date(Date.now() + 86_400_000) });
    const path = join(tmp.path, keyFileName(key));
    await writeKeyFile(path, key);
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(errors).toEqual([]);
    expect(keys).toHaveLength(1);
    const [back] = keys;
    expect(back?.id).toBe(key.id);
    expect(back?.peers).toEqual(key.peers);
    expect(back?.created.getTime()).toBe(key.created.getTime());
    expect(back?.expires?.getTime()).toBe(key.expires?.getTime());
    expect(Buffer.from(back?.secret ?? []).equals(Buffer.from(key.secret))).toBe(true);
    expect(back?.path).toBe(path);
  });

  it('leaves the file with mode 0600 whatever the umask', async () => {
    const old = process.umask(0);
    try {
      const key = await generatePairKey('alpha', 'beta');
      const path = join(tmp.path, keyFileName(key));
      await writeKeyFile(path, key);
      expect((await stat(path)).mode & 0o7777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });

  it('refuses to overwrite an existing file and leaves it untouched', async () => {
    const key = await generatePairKey('alpha', 'beta');
    const path = join(tmp.path, 'x.key');
    await writeFile(path, 'precious\n', { mode: 0o600 });
    const err = await writeKeyFile(path, key).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isFerryError(err, 'EKEYPERM')).toBe(true);
    expect((err as Error).message).toBe(`key file ${path} already exists; ferry never overwrites a key file (remove it first or choose another name).`);
    expect(await readFile(path, 'utf8')).toBe('precious\n');
  });

  it('reports a missing directory as a FerryError and creates nothing', async () => {
    const key = await generatePairKey('alpha', 'beta');
    const err = await writeKeyFile(join(tmp.path, 'nope', 'x.key'), key).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isFerryError(err, 'EKEYPERM')).toBe(true);
  });
});
