// Security regressions for the key loader: every way of slipping a key file past it must be refused with its code.

import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdir, readFile, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FerryError } from '../../src/errors.js';
import { formatKeyFile, generatePairKey, loadKeyDir, readKeyFile, writeKeyFile } from '../../src/keys/index.js';
import { deployKey, keyText, useTempDir, writeRaw } from '../keys/fixtures.js';

const tmp = useTempDir();

/** Load `tmp.path` and return its single refusal, having checked nothing was loaded. */
async function onlyRefusal(): Promise<FerryError> {
  const { keys, errors } = await loadKeyDir(tmp.path);
  expect(keys).toEqual([]);
  expect(errors).toHaveLength(1);
  return errors[0] as FerryError;
}

describe('hostile key files', () => {
  it.each([
    [0o644, '0644'],
    [0o640, '0640'],
    [0o604, '0604'],
    [0o660, '0660'],
    [0o601, '0601'],
  ])('refuses a key file with mode %o (group/other access) with EKEYPERM naming the mode', async (mode, octal) => {
    const key = await deployKey(tmp.path);
    await chmod(key.path, mode);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYPERM');
    expect(err.path).toBe(key.path);
    expect(err.message).toBe(`key file ${key.path} has mode ${octal}; expected 0600 (no group/other access).`);
  });

  it('refuses a key file owned by another user with EKEYOWNER naming the owner', async () => {
    const key = await deployKey(tmp.path);
    await chown(key.path, 65534, 65534);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYOWNER');
    expect(err.message).toBe(`key file ${key.path} is owned by uid 65534 (nobody), not by uid 0 (root), the user ferry runs as: give it to that user (\`chown root: ${key.path}\`) or run ferry as its owner (\`sudo -u nobody ferry …\`).`);
  });

  it('refuses a symlink to a valid key file with EKEYPERM', async () => {
    const elsewhere = join(tmp.path, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o700 });
    const key = await deployKey(elsewhere);
    const link = join(tmp.path, 'planted.key');
    await symlink(key.path, link);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYPERM');
    expect(err.path).toBe(link);
    expect(err.message).toContain('is a symbolic link');
  });

  it('refuses a directory named x.key with EKEYPERM', async () => {
    await mkdir(join(tmp.path, 'x.key'), { mode: 0o700 });
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYPERM');
    expect(err.message).toBe(`key file ${join(tmp.path, 'x.key')} is a directory; expected a regular file.`);
  });

  it('refuses a FIFO named x.key with EKEYPERM, without blocking on it', async () => {
    const fifo = join(tmp.path, 'x.key');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYPERM');
    expect(err.message).toBe(`key file ${fifo} is a FIFO; expected a regular file.`);
  });

  it('refuses a symlink swapped in between the lstat and the open (O_NOFOLLOW) with EKEYPERM', async () => {
    const key = await deployKey(tmp.path);
    const target = await writeRaw(tmp.path, 'target.other', await keyText());
    const err = await readKeyFile(key.path, {
      uid: 0,
      beforeOpen: async () => {
        await unlink(key.path);
        await symlink(target, key.path);
      },
    }).then(
      () => undefined,
      (e: unknown) => e as FerryError,
    );
    expect(err?.code).toBe('EKEYPERM');
    expect(err?.message).toContain('is a symbolic link');
  });

  it('refuses a FIFO swapped in between the lstat and the open with EKEYPERM, without blocking', async () => {
    const key = await deployKey(tmp.path);
    const err = await readKeyFile(key.path, {
      uid: 0,
      beforeOpen: async () => {
        await unlink(key.path);
        execFileSync('mkfifo', ['-m', '600', key.path]);
      },
    }).then(
      () => undefined,
      (e: unknown) => e as FerryError,
    );
    expect(err?.code).toBe('EKEYPERM');
    expect(err?.message).toContain('is a FIFO');
  });

  it('refuses a file loosened to 0644 between the lstat and the open with EKEYPERM', async () => {
    const key = await deployKey(tmp.path);
    const err = await readKeyFile(key.path, { uid: 0, beforeOpen: () => chmod(key.path, 0o644) }).then(
      () => undefined,
      (e: unknown) => e as FerryError,
    );
    expect(err?.code).toBe('EKEYPERM');
  });

  it('loads nothing from a key directory writable by group, with EKEYPERM', async () => {
    await deployKey(tmp.path);
    await chmod(tmp.path, 0o770);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYPERM');
    expect(err.message).toContain('has mode 0770');
  });

  it('loads nothing from a key directory owned by another user, with EKEYOWNER', async () => {
    await deployKey(tmp.path);
    await chown(tmp.path, 65534, 65534);
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYOWNER');
    expect(err.message).toContain('owned by uid 65534');
  });

  it('does not load a second file that reuses an existing key id to swap its secret', async () => {
    const key = await deployKey(tmp.path);
    const forged = await generatePairKey('alpha', 'beta');
    await writeRaw(tmp.path, 'aaa-forged.key', formatKeyFile({ ...forged, id: key.id }));
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(keys).toEqual([]);
    expect(errors.map((e) => e.code)).toEqual(['EKEYFORMAT', 'EKEYFORMAT']);
  });

  it('does not write a key through a symlink planted at the target path', async () => {
    const victim = await writeRaw(tmp.path, 'victim', 'do not touch\n');
    const path = join(tmp.path, 'new.key');
    await symlink(victim, path);
    const err = await writeKeyFile(path, await generatePairKey('alpha', 'beta')).then(
      () => undefined,
      (e: unknown) => e as FerryError,
    );
    expect(err?.code).toBe('EKEYPERM');
    expect(await readFile(victim, 'utf8')).toBe('do not touch\n');
  });

  it('does not leak the secret of a malformed key file in the refusal', async () => {
    const text = await keyText();
    const secret = /^secret = "(.*)"$/m.exec(text)?.[1] ?? 'missing';
    await writeRaw(tmp.path, 'x.key', text.replace(`secret = "${secret}"`, `secret = "${secret}`));
    const err = await onlyRefusal();
    expect(err.code).toBe('EKEYFORMAT');
    expect(`${err.message} ${String(err.cause)} ${JSON.stringify(err)}`).not.toContain(secret.slice(0, 16));
  });

  it('ignores an rsync temp file even when it is a symlink or world-readable', async () => {
    await writeRaw(tmp.path, '.x.key.Ab12Cd', await keyText(), 0o644);
    await symlink('/etc/passwd', join(tmp.path, '.y.key.Zz99Zz'));
    expect(await loadKeyDir(tmp.path)).toEqual({ keys: [], errors: [] });
    // ...and picks the key up once renamed into place with a safe mode.
    await chmod(join(tmp.path, '.x.key.Ab12Cd'), 0o600);
    await rename(join(tmp.path, '.x.key.Ab12Cd'), join(tmp.path, 'x.key'));
    await writeFile(join(tmp.path, 'readme'), 'x');
    expect((await loadKeyDir(tmp.path)).keys).toHaveLength(1);
  });
});
