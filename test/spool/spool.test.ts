// Opening a spool: refuse a missing one, create the layout private (0700 directories, 0600 files), clean tmp/ debris.

import { chmodSync, existsSync, mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { SpoolLayout } from '../../src/spool/layout.js';
import { Spool } from '../../src/spool/spool.js';
import { deliver, openSpool, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

describe('Spool.open', () => {
  it('refuses a spool that does not exist with ENOT_INIT and creates nothing', async () => {
    const root = join(tmp.path, 'nowhere');
    const err = await Spool.open(root, { host: 'alpha' }).catch((e: unknown) => e);
    expect(isFerryError(err, 'ENOT_INIT')).toBe(true);
    expect(existsSync(root)).toBe(false);
  });

  it('refuses an empty directory that was never initialised with ENOT_INIT and leaves it empty', async () => {
    const root = join(tmp.path, 'empty');
    mkdirSync(root);
    const err = await Spool.open(root, { host: 'alpha' }).catch((e: unknown) => e);
    expect(isFerryError(err, 'ENOT_INIT')).toBe(true);
    expect(existsSync(join(root, 'state'))).toBe(false);
  });

  it('refuses an invalid host name before touching the disk', async () => {
    const root = join(tmp.path, 'spool');
    const err = await Spool.open(root, { host: '../evil', create: true }).catch((e: unknown) => e);
    expect(isFerryError(err, 'EHOST_NAME')).toBe(true);
    expect(existsSync(root)).toBe(false);
  });

  it('creates every fixed directory with mode 0700 when asked to', async () => {
    const spool = await openSpool(tmp.path);
    const layout = new SpoolLayout(spool.root);
    expect(layout.fixedDirs.length).toBeGreaterThan(10);
    for (const dir of layout.fixedDirs) {
      expect({ dir, mode: modeOf(dir).toString(8) }).toEqual({ dir, mode: '700' });
    }
  });

  it('opens an existing spool without create', async () => {
    const first = await openSpool(tmp.path);
    const again = await Spool.open(first.root, { host: 'alpha' });
    expect(again.root).toBe(first.root);
  });

  it('tightens a spool directory left with group/other access back to 0700', async () => {
    const spool = await openSpool(tmp.path);
    chmodSync(spool.layout.outbox, 0o755);
    chmodSync(spool.layout.commitsNew, 0o777);
    await Spool.open(spool.root, { host: 'alpha' });
    expect(modeOf(spool.layout.outbox)).toBe(0o700);
    expect(modeOf(spool.layout.commitsNew)).toBe(0o700);
  });

  it('creates queue directories 0700 and message files 0600 on send and delivery', async () => {
    const spool = await openSpool(tmp.path);
    await spool.send('orders', 'payload');
    const [name] = await deliver(spool, 'work', ['hello']);
    const queueDir = spool.layout.inboxQueue('work');
    for (const sub of ['', 'tmp', 'new', 'cur', 'lease', 'meta', 'dead']) expect(modeOf(join(queueDir, sub))).toBe(0o700);
    expect(modeOf(join(queueDir, 'new', name as string))).toBe(0o600);
    expect(modeOf(join(queueDir, 'meta', `${name as string}.json`))).toBe(0o600);
    const [entry] = await spool.outbox.entries();
    expect(modeOf(entry?.path as string)).toBe(0o600);
  });
});

describe('Spool.recover', () => {
  it('removes tmp/ files older than tmpMaxAgeMs and keeps fresh ones', async () => {
    const spool = await openSpool(tmp.path, { tmpMaxAgeMs: 60_000 });
    await spool.outbox.ensureQueue('orders');
    await spool.inbox.ensureQueue('work');
    const dirs = [spool.layout.commitsTmp, spool.layout.outboxTmp('orders'), spool.layout.inboxDir('work', 'tmp')];
    const old = new Date(Date.now() - 3_600_000);
    for (const dir of dirs) {
      writeFileSync(join(dir, 'stale'), 'half-written');
      utimesSync(join(dir, 'stale'), old, old);
      writeFileSync(join(dir, 'fresh'), 'being written');
    }
    const report = await spool.recover();
    expect(report.tmpRemoved).toBe(3);
    for (const dir of dirs) {
      expect(existsSync(join(dir, 'stale'))).toBe(false);
      expect(existsSync(join(dir, 'fresh'))).toBe(true);
    }
  });

  it('leaves an old directory found in a tmp/ alone instead of failing recovery', async () => {
    const spool = await openSpool(tmp.path, { tmpMaxAgeMs: 60_000 });
    await spool.outbox.ensureQueue('orders');
    const dir = join(spool.layout.outboxTmp('orders'), 'a-directory');
    mkdirSync(dir);
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(dir, old, old);
    await expect(Spool.open(spool.root, { host: 'alpha', tmpMaxAgeMs: 60_000 })).resolves.toBeInstanceOf(Spool);
    expect(existsSync(dir)).toBe(true);
  });

  it('ignores a directory in inbox/ or outbox/ whose name is not a queue name (lost+found)', async () => {
    const spool = await openSpool(tmp.path);
    mkdirSync(join(spool.layout.inbox, 'lost+found'));
    mkdirSync(join(spool.layout.outbox, 'lost+found'));
    await expect(Spool.open(spool.root, { host: 'alpha' })).resolves.toBeInstanceOf(Spool);
    expect(await spool.inbox.queues()).toEqual([]);
    expect(await spool.outbox.queues()).toEqual([]);
  });

  it('keeps old tmp/ files under the default 36-hour age', async () => {
    const spool = await openSpool(tmp.path);
    const path = join(spool.layout.commitsTmp, 'yesterday');
    writeFileSync(path, 'x');
    const yesterday = new Date(Date.now() - 24 * 3_600_000);
    utimesSync(path, yesterday, yesterday);
    expect((await spool.recover()).tmpRemoved).toBe(0);
    expect(existsSync(path)).toBe(true);
  });

  it('cleans stale debris when the spool is opened', async () => {
    const spool = await openSpool(tmp.path, { tmpMaxAgeMs: 60_000 });
    const path = join(spool.layout.commitsTmp, 'debris');
    writeFileSync(path, 'x');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path, old, old);
    await Spool.open(spool.root, { host: 'alpha', tmpMaxAgeMs: 60_000 });
    expect(existsSync(path)).toBe(false);
  });
});
