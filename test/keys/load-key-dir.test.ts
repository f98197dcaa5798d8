import { chmod, chown, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { loadKeyDir, MAX_KEY_FILE_BYTES, readKeyFile } from '../../src/keys/index.js';
import { base64Of, deployKey, keyText, useTempDir, writeRaw } from './fixtures.js';

const tmp = useTempDir();

describe('loadKeyDir', () => {
  it('loads every *.key file and nothing else', async () => {
    const a = await deployKey(tmp.path, 'alpha', 'beta');
    const b = await deployKey(tmp.path, 'alpha', 'gamma');
    await writeRaw(tmp.path, '.alpha-beta.key.Xy12Ab', await keyText({ id: '"rsync-temp"' }));
    await writeRaw(tmp.path, '.hidden.key', await keyText({ id: '"hidden"' }));
    await writeRaw(tmp.path, 'notes.txt', 'not a key\n', 0o644);
    await writeRaw(tmp.path, 'old.key~', await keyText({ id: '"backup"' }));
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(errors).toEqual([]);
    expect(keys.map((k) => k.id).sort()).toEqual([a.id, b.id].sort());
  });

  it('loads an empty directory as no keys and no errors', async () => {
    expect(await loadKeyDir(tmp.path)).toEqual({ keys: [], errors: [] });
  });

  const malformed: Array<[string, () => Promise<string>, string]> = [
    ['malformed TOML', async () => 'id = "x\n', 'not valid TOML'],
    ['a missing secret', () => keyText({ secret: undefined }), 'missing `secret`'],
    ['a missing peers field', () => keyText({ peers: undefined }), 'missing `peers`'],
    ['a secret of the wrong length', () => keyText({ secret: `"${base64Of(16)}"` }), 'bad `secret`'],
    ['an unknown field', () => keyText({}, ['owner = "root"']), 'unknown field `owner`'],
    ['the same peer twice', () => keyText({ peers: '["beta", "beta"]' }), 'bad `peers`'],
    ['binary garbage', async () => '\u0000\u00ff\u0001', 'not valid TOML'],
  ];
  it.each(malformed)('refuses a file with %s with EKEYFORMAT and still loads the others', async (_name, make, fragment) => {
    const good = await deployKey(tmp.path);
    const path = await writeRaw(tmp.path, 'bad.key', await make());
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(keys.map((k) => k.id)).toEqual([good.id]);
    expect(errors).toHaveLength(1);
    expect(isFerryError(errors[0], 'EKEYFORMAT')).toBe(true);
    expect(errors[0]?.path).toBe(path);
    expect(errors[0]?.message).toContain(`key file ${path} `);
    expect(errors[0]?.message).toContain(fragment);
  });

  it('refuses a file that is not UTF-8', async () => {
    const path = join(tmp.path, 'bin.key');
    await writeFile(path, Buffer.from([0xff, 0xfe, 0x00, 0x41]), { mode: 0o600 });
    const { errors } = await loadKeyDir(tmp.path);
    expect(errors[0]?.message).toBe(`key file ${path} is not UTF-8 text.`);
  });

  it('refuses a file larger than any key file', async () => {
    await writeRaw(tmp.path, 'big.key', '#'.repeat(MAX_KEY_FILE_BYTES + 1));
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(keys).toEqual([]);
    expect(isFerryError(errors[0], 'EKEYFORMAT')).toBe(true);
  });

  it('refuses every file sharing an id with another, naming both', async () => {
    const text = await keyText();
    const one = await writeRaw(tmp.path, 'one.key', text);
    const two = await writeRaw(tmp.path, 'two.key', await keyText({ id: /^id = (.*)$/m.exec(text)?.[1] ?? '' }));
    const other = await deployKey(tmp.path, 'alpha', 'gamma');
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(keys.map((k) => k.id)).toEqual([other.id]);
    expect(errors.map((e) => e.code)).toEqual(['EKEYFORMAT', 'EKEYFORMAT']);
    expect(errors.map((e) => e.path).sort()).toEqual([one, two].sort());
    expect(errors[0]?.message).toContain(two);
  });

  it('accepts files owned by the uid it is told to expect', async () => {
    const key = await deployKey(tmp.path);
    await chown(key.path, 65534, 65534);
    const { keys, errors } = await loadKeyDir(tmp.path, { uid: 65534 });
    expect(errors).toEqual([]);
    expect(keys.map((k) => k.id)).toEqual([key.id]);
  });

  it('accepts a read-only key file (0400)', async () => {
    const key = await deployKey(tmp.path);
    await chmod(key.path, 0o400);
    expect((await loadKeyDir(tmp.path)).keys).toHaveLength(1);
  });

  it.each([0o770, 0o707, 0o777, 0o1777])('loads nothing from a directory with mode %o (writable by group/other)', async (mode) => {
    await deployKey(tmp.path);
    await chmod(tmp.path, mode);
    const { keys, errors } = await loadKeyDir(tmp.path);
    expect(keys).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(isFerryError(errors[0], 'EKEYPERM')).toBe(true);
    expect(errors[0]?.message).toContain(`key directory ${tmp.path} has mode 0${(mode & 0o7777).toString(8)}`);
  });

  it('loads from a directory readable by others but writable only by its owner (0755)', async () => {
    await deployKey(tmp.path);
    await chmod(tmp.path, 0o755);
    expect((await loadKeyDir(tmp.path)).keys).toHaveLength(1);
  });

  it('reports a missing directory with ECONFIG', async () => {
    const dir = join(tmp.path, 'gone');
    const { keys, errors } = await loadKeyDir(dir);
    expect(keys).toEqual([]);
    expect(isFerryError(errors[0], 'ECONFIG')).toBe(true);
    expect(errors[0]?.message).toBe(`key directory ${dir} does not exist.`);
  });

  it('reports a key directory path that is a file', async () => {
    const path = await writeRaw(tmp.path, 'file', 'x');
    const { errors } = await loadKeyDir(path);
    expect(isFerryError(errors[0], 'ECONFIG')).toBe(true);
  });

  it('skips, without an error, a file removed between its lstat and its open (a deploy in progress)', async () => {
    const key = await deployKey(tmp.path);
    const got = await readKeyFile(key.path, { uid: 0, beforeOpen: () => unlink(key.path) });
    expect(got).toBeUndefined();
  });
});
