// The Transport contract, run against every implementation: same publish semantics over SFTP and on the local filesystem.
import { readdir, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { LocalTransport, type Transport } from '../../src/transport/index.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeLanding, randomFile, removeDir, sameBytes, sftpTransportFor, sha256File, tempDir } from './fixtures.js';

/** How a backend under test is made: `make(landing)` returns a transport publishing into the directory `landing`. */
interface Backend {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  make(landing: string): Transport;
}

let sshd: Sshd | undefined;

const backends: Backend[] = [
  {
    name: 'LocalTransport',
    setup: async () => {},
    teardown: async () => {},
    make: (landing) => new LocalTransport({ peer: 'self', dir: landing }),
  },
  {
    name: 'SftpTransport',
    setup: async () => {
      sshd = await startSshd();
    },
    teardown: async () => {
      await sshd?.stop();
    },
    make: (landing) => {
      if (sshd === undefined) throw new Error('sshd not started');
      return sftpTransportFor(sshd, landing);
    },
  },
];

/** Upload then publish: what the shipper does for one bundle. */
async function ship(t: Transport, src: string, name: string, onProgress?: (sent: number, total: number) => void): Promise<string> {
  await t.upload(src, name, onProgress);
  return t.publish(src, name);
}

describe.each(backends)('$name honours the Transport contract', (backend) => {
  let work: string;
  let landing: string;
  let transport: Transport;

  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());
  beforeEach(async () => {
    work = await tempDir();
    landing = path.join(work, 'landing');
    await makeLanding(landing);
    transport = backend.make(landing);
  });
  afterEach(async () => {
    await transport.close();
    await removeDir(work);
  });

  const landed = (name: string) => path.join(landing, name);

  it('publishes a file byte-identical, mode 0640, leaving no upload part behind', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 100_000);
    await expect(ship(transport, src, 'b-0001')).resolves.toBe('published');
    expect(await sameBytes(landed('b-0001'), src)).toBe(true);
    expect((await stat(landed('b-0001'))).mode & 0o777).toBe(0o640);
    expect(await readdir(landing)).toEqual(['b-0001']);
  });

  it('an upload alone is not published: it waits as <name>.part until publish', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 1000);
    await transport.upload(src, 'b-0009');
    expect(await readdir(landing)).toEqual(['b-0009.part']);
    await expect(transport.publish(src, 'b-0009')).resolves.toBe('published');
    expect(await readdir(landing)).toEqual(['b-0009']);
  });

  it('answers already for a name that holds the same bytes, and leaves that file as it was', async () => {
    const first = await randomFile(path.join(work, 'first'), 5000);
    await expect(ship(transport, first, 'b-0002')).resolves.toBe('published');
    const before = await stat(landed('b-0002'));
    await expect(ship(transport, first, 'b-0002')).resolves.toBe('already');
    const after = await stat(landed('b-0002'));
    expect(await sameBytes(landed('b-0002'), first)).toBe(true);
    expect(after.ino).toBe(before.ino);
    expect(await readdir(landing)).toEqual(['b-0002']);
  });

  it('a name that holds other bytes is never taken for published: they are replaced by ours', async () => {
    const planted = await randomFile(path.join(work, 'planted'), 7000);
    const mine = await randomFile(path.join(work, 'mine'), 7000);
    await ship(transport, planted, 'b-0003');
    await expect(ship(transport, mine, 'b-0003')).resolves.toBe('replaced');
    expect(await sameBytes(landed('b-0003'), mine)).toBe(true);
    const other = await randomFile(path.join(work, 'other-size'), 100);
    await expect(ship(transport, other, 'b-0003')).resolves.toBe('replaced');
    expect(await sameBytes(landed('b-0003'), other)).toBe(true);
  });

  it('round-trips a 20 MiB file and reports progress up to the total', async () => {
    const size = 20 * 1024 * 1024;
    const src = await randomFile(path.join(work, 'big'), size);
    const seen: Array<[number, number]> = [];
    await expect(ship(transport, src, 'big-1', (sent, total) => seen.push([sent, total]))).resolves.toBe('published');
    expect(await sha256File(landed('big-1'))).toBe(await sha256File(src));
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.every(([, total]) => total === size)).toBe(true);
    expect(seen.at(-1)).toEqual([size, size]);
    for (let i = 1; i < seen.length; i++) expect(seen[i]![0]).toBeGreaterThanOrEqual(seen[i - 1]![0]);
  });

  it('publishes an empty file', async () => {
    const src = await randomFile(path.join(work, 'empty'), 0);
    await expect(ship(transport, src, 'empty')).resolves.toBe('published');
    expect((await stat(landed('empty'))).size).toBe(0);
  });

  it('uploads different names concurrently, and one name twice at once exactly once', async () => {
    const files = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => randomFile(path.join(work, `c${i}`), 300_000 + i)));
    const results = await Promise.all(files.map((f, i) => ship(transport, f, `c-${i}`)));
    expect(results).toEqual(Array(6).fill('published'));
    for (const [i, f] of files.entries()) expect(await sameBytes(landed(`c-${i}`), f)).toBe(true);
    const twice = await Promise.all([ship(transport, files[0]!, 'same'), ship(transport, files[0]!, 'same')]);
    expect(twice.sort()).toEqual(['already', 'published']);
  });

  it('lists what the landing directory holds, with sizes', async () => {
    await ship(transport, await randomFile(path.join(work, 'a'), 10), 'l-a');
    await transport.upload(await randomFile(path.join(work, 'b'), 20), 'l-b');
    const list = (await transport.list()).sort((x, y) => (x.name < y.name ? -1 : 1));
    expect(list).toEqual([{ name: 'l-a', size: 10 }, { name: 'l-b.part', size: 20 }]);
  });

  it('reads the receipt file when there is one, and nothing when there is none', async () => {
    await expect(transport.readReceipt(1000)).resolves.toBeUndefined();
    await writeFile(path.join(landing, 'ferry.receipt'), Buffer.from('sealed receipt bytes'));
    expect(Buffer.from((await transport.readReceipt(1000)) ?? []).toString()).toBe('sealed receipt bytes');
    const err: unknown = await transport.readReceipt(5).catch((e: unknown) => e);
    expect(isFerryError(err, 'ERECEIPT')).toBe(true);
  });

  it('removes a file of ours, is quiet about one that is gone, and refuses a name that is not one file', async () => {
    await ship(transport, await randomFile(path.join(work, 'r'), 10), 'r-1');
    await transport.remove('r-1');
    await transport.remove('r-1');
    expect(await readdir(landing)).toEqual([]);
    for (const bad of ['../x', '.hidden', 'a/b', '']) {
      const err: unknown = await transport.remove(bad).catch((e: unknown) => e);
      expect(isFerryError(err, 'EUSAGE')).toBe(true);
    }
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
    const up: unknown = await transport.upload(src, name).catch((e: unknown) => e);
    expect(isFerryError(up, 'EUSAGE')).toBe(true);
    const pub: unknown = await transport.publish(src, name).catch((e: unknown) => e);
    expect(isFerryError(pub, 'EUSAGE')).toBe(true);
    expect(await readdir(landing)).toEqual([]);
  });

  it('accepts a name of 201 characters from the allowed set', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 10);
    const name = `A${'a._-9'.repeat(40)}`;
    expect(name).toHaveLength(201);
    await expect(ship(transport, src, name)).resolves.toBe('published');
  });

  it('never modifies the local file', async () => {
    const src = await randomFile(path.join(work, 'keep'), 3 * 1024 * 1024 + 17);
    const hash = await sha256File(src);
    const before = await stat(src);
    await ship(transport, src, 'keep-1');
    await ship(transport, src, 'keep-1');
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
    const viaLink: unknown = await transport.upload(path.join(work, 'link'), 'l-1').catch((e: unknown) => e);
    expect(isFerryError(viaLink, 'ESPOOL_SYMLINK')).toBe(true);
    const missing: unknown = await transport.upload(path.join(work, 'nope'), 'l-2').catch((e: unknown) => e);
    expect(isFerryError(missing, 'ESPOOL')).toBe(true);
  });

  it('fails recoverably (ETRANSPORT) when the landing directory does not exist', async () => {
    await removeDir(landing);
    const src = await randomFile(path.join(work, 'bundle'), 10);
    const err: unknown = await transport.upload(src, 'nolanding').catch((e: unknown) => e);
    expect(isFerryError(err, 'ETRANSPORT')).toBe(true);
    expect((err as { recoverable: boolean }).recoverable).toBe(true);
  });

  it('rejects uploads after close(), and close() is idempotent', async () => {
    const src = await randomFile(path.join(work, 'bundle'), 10);
    await transport.close();
    await transport.close();
    const err: unknown = await transport.upload(src, 'late').catch((e: unknown) => e);
    expect(isFerryError(err, 'ETRANSPORT')).toBe(true);
  });
});
