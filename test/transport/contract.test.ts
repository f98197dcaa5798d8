// The Transport contract, run against every implementation: same publish semantics over SFTP and on the local filesystem.
import { readdir, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { LocalTransport, type Transport } from '../../src/transport/index.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeLanding, randomFile, removeDir, sameBytes, sftpTransportFor, sha256File, tempDir } from './fixtures.js';

/** How a backend under test is made: `make(root)` returns a transport publishing into `<root>/landing`. */
interface Backend {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  make(root: string): Transport;
}

let sshd: Sshd | undefined;

const backends: Backend[] = [
  {
    name: 'LocalTransport',
    setup: async () => {},
    teardown: async () => {},
    make: (root) => new LocalTransport({ peer: 'self', root }),
  },
  {
    name: 'SftpTransport',
    setup: async () => {
      sshd = await startSshd();
    },
    teardown: async () => {
      await sshd?.stop();
    },
    make: (root) => {
      if (sshd === undefined) throw new Error('sshd not started');
      return sftpTransportFor(sshd, root);
    },
  },
];

describe.each(backends)('$name honours the Transport contract', (backend) => {
  let work: string;
  let root: string;
  let transport: Transport;

  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());
  beforeEach(async () => {
    work = await tempDir();
    root = path.join(work, 'spool');
    await makeLanding(root);
    transport = backend.make(root);
  });
  afterEach(async () => {
    await transport.close();
    await removeDir(work);
  });

  const landed = (name: string) => path.join(root, 'landing', 'new', name);

  it('publishes a file into landing/new byte-identical, mode 0600, leaving nothing in landing/tmp', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 100_000);
    await expect(transport.publish(src, 'b-0001', undefined)).resolves.toBe('published');
    expect(await sameBytes(landed('b-0001'), src)).toBe(true);
    expect((await stat(landed('b-0001'))).mode & 0o777).toBe(0o600);
    expect(await readdir(path.join(root, 'landing', 'tmp'))).toEqual([]);
  });

  it('answers already for a name published before and leaves the published file as it was', async () => {
    const first = await randomFile(path.join(work, 'first'), 5000);
    const second = await randomFile(path.join(work, 'second'), 7000);
    await expect(transport.publish(first, 'b-0002')).resolves.toBe('published');
    const before = await stat(landed('b-0002'));
    await expect(transport.publish(first, 'b-0002')).resolves.toBe('already');
    await expect(transport.publish(second, 'b-0002')).resolves.toBe('already');
    const after = await stat(landed('b-0002'));
    expect(await sameBytes(landed('b-0002'), first)).toBe(true);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await readdir(path.join(root, 'landing', 'tmp'))).toEqual([]);
  });

  it('round-trips a 20 MiB file and reports progress up to the total', async () => {
    const size = 20 * 1024 * 1024;
    const src = await randomFile(path.join(work, 'big'), size);
    const seen: Array<[number, number]> = [];
    await expect(transport.publish(src, 'big-1', (sent, total) => seen.push([sent, total]))).resolves.toBe('published');
    expect(await sha256File(landed('big-1'))).toBe(await sha256File(src));
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.every(([, total]) => total === size)).toBe(true);
    expect(seen.at(-1)).toEqual([size, size]);
    for (let i = 1; i < seen.length; i++) expect(seen[i]![0]).toBeGreaterThanOrEqual(seen[i - 1]![0]);
  });

  it('publishes an empty file', async () => {
    const src = await randomFile(path.join(work, 'empty'), 0);
    await expect(transport.publish(src, 'empty')).resolves.toBe('published');
    expect((await stat(landed('empty'))).size).toBe(0);
  });

  it('publishes different names concurrently, and one name twice at once exactly once', async () => {
    const files = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => randomFile(path.join(work, `c${i}`), 300_000 + i)));
    const results = await Promise.all(files.map((f, i) => transport.publish(f, `c-${i}`)));
    expect(results).toEqual(Array(6).fill('published'));
    for (const [i, f] of files.entries()) expect(await sameBytes(landed(`c-${i}`), f)).toBe(true);
    const twice = await Promise.all([transport.publish(files[0]!, 'same'), transport.publish(files[0]!, 'same')]);
    expect(twice.sort()).toEqual(['already', 'published']);
  });

  it.each([
    ['an empty name', ''],
    ['a dot-file', '.hidden'],
    ['a parent reference', '..'],
    ['a path', 'a/b'],
    ['a traversal', '../../etc/passwd'],
    ['a space', 'a b'],
    ['a leading dash', '-rf'],
    ['a non-ASCII letter', 'bündel'],
    ['a newline', 'a\nb'],
    ['202 characters', 'x'.repeat(202)],
  ])('refuses %s as a landing name (EUSAGE) and writes nothing', async (_what, name) => {
    const src = await randomFile(path.join(work, 'bundle'), 10);
    const err: unknown = await transport.publish(src, name).catch((e: unknown) => e);
    expect(isFerryError(err, 'EUSAGE')).toBe(true);
    expect(await readdir(path.join(root, 'landing', 'new'))).toEqual([]);
    expect(await readdir(path.join(root, 'landing', 'tmp'))).toEqual([]);
  });

  it('accepts a name of 201 characters from the allowed set', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 10);
    const name = `A${'a._-9'.repeat(40)}`;
    expect(name).toHaveLength(201);
    await expect(transport.publish(src, name)).resolves.toBe('published');
  });

  it('never modifies the local file', async () => {
    const src = await randomFile(path.join(work, 'keep'), 3 * 1024 * 1024 + 17);
    const hash = await sha256File(src);
    const before = await stat(src);
    await transport.publish(src, 'keep-1');
    await transport.publish(src, 'keep-1');
    const after = await stat(src);
    expect(await sha256File(src)).toBe(hash);
    expect([after.size, after.mtimeMs, after.ctimeMs, after.mode, after.ino, after.nlink]).toEqual([
      before.size,
      before.mtimeMs,
      before.ctimeMs,
      before.mode,
      before.ino,
      before.nlink,
    ]);
  });

  it('refuses a local symlink (ESPOOL_SYMLINK) and a missing local file (ESPOOL)', async () => {
    const src = await randomFile(path.join(work, 'real'), 10);
    await symlink(src, path.join(work, 'link'));
    const viaLink: unknown = await transport.publish(path.join(work, 'link'), 'l-1').catch((e: unknown) => e);
    expect(isFerryError(viaLink, 'ESPOOL_SYMLINK')).toBe(true);
    const missing: unknown = await transport.publish(path.join(work, 'nope'), 'l-2').catch((e: unknown) => e);
    expect(isFerryError(missing, 'ESPOOL')).toBe(true);
  });

  it('fails recoverably (ETRANSPORT) when the landing area does not exist', async () => {
    await removeDir(path.join(root, 'landing'));
    const src = await randomFile(path.join(work, 'bundle'), 10);
    const err: unknown = await transport.publish(src, 'nolanding').catch((e: unknown) => e);
    expect(isFerryError(err, 'ETRANSPORT')).toBe(true);
    expect((err as { recoverable: boolean }).recoverable).toBe(true);
  });

  it('rejects publishes after close(), and close() is idempotent', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 10);
    await transport.close();
    await transport.close();
    const err: unknown = await transport.publish(src, 'late').catch((e: unknown) => e);
    expect(isFerryError(err, 'ETRANSPORT')).toBe(true);
  });
});
