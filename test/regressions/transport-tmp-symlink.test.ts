// Regression: a symlink planted at <name>.part in a landing directory must never be written through — not over SFTP, not locally.
import { lstat, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LocalTransport, type Transport } from '../../src/transport/index.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeLanding, randomFile, removeDir, sameBytes, sftpTransportFor, ship, tempDir } from '../transport/fixtures.js';

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
});

describe.each([
  ['LocalTransport', (landing: string): Transport => new LocalTransport({ peer: 'self', dir: landing })],
  ['SftpTransport', (landing: string): Transport => sftpTransportFor(sshd, landing, { resume: 'always' })],
])('%s with a symlink planted where an upload goes', (_name, make) => {
  let work: string;
  let root: string;
  let t: Transport;
  beforeEach(async () => {
    work = await tempDir();
    root = path.join(work, 'landing');
    await makeLanding(root);
    t = make(root);
  });
  afterEach(async () => {
    await t.close();
    await removeDir(work);
  });

  it('leaves the symlink target untouched and publishes a regular file', async () => {
    const victim = path.join(work, 'victim');
    await writeFile(victim, 'precious\n');
    await symlink(victim, path.join(root, 'b-1.part'));
    const src = await randomFile(path.join(work, 'bundle'), 64 * 1024);
    await expect(ship(t, src, 'b-1')).resolves.toBe('published');
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    const landed = path.join(root, 'b-1');
    expect((await lstat(landed)).isFile()).toBe(true);
    expect(await sameBytes(landed, src)).toBe(true);
  });

  it('does not follow a dangling symlink to create a file elsewhere', async () => {
    const elsewhere = path.join(work, 'created-elsewhere');
    await symlink(elsewhere, path.join(root, 'b-2.part'));
    const src = await randomFile(path.join(work, 'bundle'), 1000);
    await expect(ship(t, src, 'b-2')).resolves.toBe('published');
    await expect(lstat(elsewhere)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
