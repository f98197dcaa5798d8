import { chmod, mkdir, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { FerryError } from '../../src/errors.js';
import { formatKeyFile, generatePairKey, KeyRing, KeyStore, type KeyStoreOptions } from '../../src/keys/index.js';
import { deployKey, useTempDir, writeRaw } from './fixtures.js';

const tmp = useTempDir();
const stores: KeyStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop()));
});

interface Watched {
  store: KeyStore;
  reloads: Array<{ ring: KeyRing; errors: readonly FerryError[] }>;
}

async function started(dir: string, opts: KeyStoreOptions = {}): Promise<Watched> {
  const reloads: Watched['reloads'] = [];
  const store = new KeyStore(dir, { ...opts, onReload: (ring, errors) => reloads.push({ ring, errors }) });
  stores.push(store);
  await store.start();
  return { store, reloads };
}

/** Wait until `check` passes (the store reloads in the background), failing after `ms`. */
async function eventually(check: () => void, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const ids = (ring: KeyRing): string[] => ring.list().map((k) => k.id);

describe('KeyStore', () => {
  it('loads the directory on start and reports the result to onReload', async () => {
    const key = await deployKey(tmp.path);
    await writeRaw(tmp.path, 'bad.key', 'nonsense = \n');
    const { store, reloads } = await started(tmp.path);
    expect(ids(store.ring)).toEqual([key.id]);
    expect(reloads).toHaveLength(1);
    expect(reloads[0]?.errors.map((e) => e.code)).toEqual(['EKEYFORMAT']);
    expect(store.errors).toBe(reloads[0]?.errors);
  });

  it('picks up a key deployed rsync-style: a dot temp file renamed into place', async () => {
    const first = await deployKey(tmp.path);
    const { store } = await started(tmp.path, { recheckMs: 600_000 });
    const key = await generatePairKey('alpha', 'beta');
    const temp = await writeRaw(tmp.path, `.${key.id}.key.Ab12Cd`, formatKeyFile(key));
    // The temp file alone is not a key: nothing changes.
    await new Promise((r) => setTimeout(r, 300));
    expect(ids(store.ring)).toEqual([first.id]);
    await rename(temp, join(tmp.path, `${key.id}.key`));
    await eventually(() => expect(ids(store.ring).sort()).toEqual([first.id, key.id].sort()));
    expect(store.ring.sealingKey('alpha', 'beta').id).toBe([first.id, key.id].sort().at(-1));
  });

  it('drops a key whose file is removed', async () => {
    const a = await deployKey(tmp.path);
    const b = await deployKey(tmp.path, 'alpha', 'gamma');
    const { store } = await started(tmp.path, { recheckMs: 600_000 });
    await unlink(b.path);
    await eventually(() => expect(ids(store.ring)).toEqual([a.id]));
  });

  it('takes a burst of changes in few reloads', async () => {
    const { store, reloads } = await started(tmp.path, { recheckMs: 600_000, debounceMs: 200 });
    const deployed = await Promise.all(Array.from({ length: 10 }, (_, i) => deployKey(tmp.path, 'alpha', `peer${i}`)));
    await eventually(() => expect(store.ring.size).toBe(10));
    expect(reloads.length).toBeLessThan(1 + deployed.length);
  });

  it('keeps the previous ring when the directory vanishes, and reports it', async () => {
    const parent = await mkdtemp(join(tmp.path, 'p-'));
    const dir = join(parent, 'keys');
    await mkdir(dir, { mode: 0o700 });
    const key = await deployKey(dir);
    const { store } = await started(dir, { recheckMs: 100 });
    await rm(dir, { recursive: true });
    await eventually(() => expect(store.errors.map((e) => e.message)).toEqual([`key directory ${dir} has vanished; keeping the 1 keys loaded before.`]));
    expect(ids(store.ring)).toEqual([key.id]);
  });

  it('follows a directory replaced wholesale by a rename', async () => {
    const parent = await mkdtemp(join(tmp.path, 'p-'));
    const dir = join(parent, 'keys');
    await mkdir(dir, { mode: 0o700 });
    await deployKey(dir);
    const { store } = await started(dir, { recheckMs: 100 });
    const next = join(parent, 'keys.new');
    await mkdir(next, { mode: 0o700 });
    const fresh = await deployKey(next, 'alpha', 'gamma');
    await rename(dir, join(parent, 'keys.old'));
    await rename(next, dir);
    await eventually(() => expect(ids(store.ring)).toEqual([fresh.id]));
    // And it watches the new directory: a later deploy shows up too.
    const later = await deployKey(dir, 'alpha', 'delta');
    await eventually(() => expect(ids(store.ring).sort()).toEqual([fresh.id, later.id].sort()));
  });

  it('moves its watcher to a replacement directory found by a reload', async () => {
    const parent = await mkdtemp(join(tmp.path, 'p-'));
    const dir = join(parent, 'keys');
    await mkdir(dir, { mode: 0o700 });
    const { store } = await started(dir, { recheckMs: 600_000 });
    const next = join(parent, 'keys.new');
    await mkdir(next, { mode: 0o700 });
    await rename(dir, join(parent, 'keys.old'));
    await rename(next, dir);
    await store.reload();
    // No periodic re-check will run: only a watcher on the new directory can see this.
    const key = await deployKey(dir);
    await eventually(() => expect(ids(store.ring)).toEqual([key.id]));
  });

  it('empties the ring when the directory becomes writable by others (fail closed)', async () => {
    await deployKey(tmp.path);
    const { store } = await started(tmp.path, { recheckMs: 100 });
    await chmod(tmp.path, 0o777);
    await eventually(() => expect(store.ring.size).toBe(0));
    expect(store.errors.map((e) => e.code)).toEqual(['EKEYPERM']);
  });

  it('drops a key whose mode is loosened in place', async () => {
    const key = await deployKey(tmp.path);
    const { store } = await started(tmp.path, { recheckMs: 100 });
    await chmod(key.path, 0o644);
    await eventually(() => expect(store.ring.size).toBe(0));
    expect(store.errors[0]?.message).toBe(`key file ${key.path} has mode 0644; expected 0600 (no group/other access).`);
  });

  it('starts on a missing directory and loads it once it appears', async () => {
    const dir = join(tmp.path, 'later');
    const { store } = await started(dir, { recheckMs: 100 });
    expect(store.ring.size).toBe(0);
    expect(store.errors.map((e) => e.code)).toEqual(['ECONFIG']);
    const staging = join(tmp.path, 'staging');
    await mkdir(staging, { mode: 0o700 });
    const key = await deployKey(staging);
    await rename(staging, dir);
    await eventually(() => expect(ids(store.ring)).toEqual([key.id]));
  });

  it('stops reloading after stop()', async () => {
    const { store, reloads } = await started(tmp.path, { recheckMs: 50 });
    await store.stop();
    await deployKey(tmp.path);
    await new Promise((r) => setTimeout(r, 300));
    expect(store.ring.size).toBe(0);
    expect(reloads).toHaveLength(1);
  });

  it('reloads on demand without overlapping reloads', async () => {
    const { store, reloads } = await started(tmp.path, { recheckMs: 600_000 });
    const key = await deployKey(tmp.path);
    const [a, b, c] = await Promise.all([store.reload(), store.reload(), store.reload()]);
    expect(ids(a.ring)).toEqual([key.id]);
    expect(b).toBe(c); // calls made while one reload is queued share it
    expect(reloads.length).toBeGreaterThanOrEqual(2);
  });
});
