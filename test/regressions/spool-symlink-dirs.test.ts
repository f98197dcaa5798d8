// Security regression: a symlink planted in place of a spool directory is refused (ESPOOL_SYMLINK), and nothing is
// written into, or read from, the directory it points to.

import { existsSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { Spool } from '../../src/spool/spool.js';
import { deliver, filesBelow, openSpool, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

/** A directory the attacker wants ferry to write into (or read from), holding one file of its own. */
function decoy(): string {
  const dir = join(tmp.path, 'decoy');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'victim'), 'not for ferry');
  return dir;
}

/** Replaces `<root>/<rel>` (a directory) with a symlink to `target`. */
function plant(root: string, rel: string, target: string): void {
  rmSync(join(root, rel), { recursive: true, force: true });
  symlinkSync(target, join(root, rel));
}

async function refusal(op: Promise<unknown>): Promise<unknown> {
  try {
    await op;
  } catch (err) {
    return err;
  }
  throw new Error('the operation went through the symlink');
}

describe('a symlink planted in place of a fixed spool directory', () => {
  it.each([
    ['outbox'],
    ['inbox'],
    ['drop'],
    ['state'],
    ['state/commits'],
    ['state/commits/tmp'],
    ['state/commits/new'],
    ['state/channels'],
    ['state/receive'],
    ['state/quarantine'],
    ['state/dead'],
    ['landing'],
  ])('at %s is refused by Spool.open (with and without create) and nothing is written through it', async (rel) => {
    const first = await openSpool(tmp.path);
    const target = decoy();
    plant(first.root, rel, target);
    for (const create of [false, true]) {
      const err = await refusal(Spool.open(first.root, { host: 'alpha', create }));
      expect(isFerryError(err, 'ESPOOL_SYMLINK')).toBe(true);
    }
    expect(filesBelow(target)).toEqual(['victim']);
  });

  it('at the spool root itself is refused and nothing is created through it', async () => {
    const target = decoy();
    const root = join(tmp.path, 'spool');
    symlinkSync(target, root);
    const err = await refusal(Spool.open(root, { host: 'alpha', create: true }));
    expect(isFerryError(err, 'ESPOOL_SYMLINK')).toBe(true);
    expect(filesBelow(target)).toEqual(['victim']);
  });
});

describe('a symlink planted after the spool was opened', () => {
  it.each<[string, string, (spool: Spool) => Promise<unknown>]>([
    ['state', 'send', (spool) => spool.send('orders', 'secret payload')],
    ['state/commits', 'send', (spool) => spool.send('orders', 'secret payload')],
    ['state/commits/tmp', 'send', (spool) => spool.send('orders', 'secret payload')],
    ['state/commits/new', 'send', (spool) => spool.send('orders', 'secret payload')],
    ['inbox', 'delivery', (spool) => deliver(spool, 'work', ['secret payload'])],
    ['inbox', 'take', (spool) => spool.take('work')],
  ])('at %s makes %s refuse with ESPOOL_SYMLINK and nothing is written through it', async (rel, _op, op) => {
    const spool = await openSpool(tmp.path);
    const target = decoy();
    plant(spool.root, rel, target);
    const err = await refusal(op(spool));
    expect(isFerryError(err, 'ESPOOL_SYMLINK')).toBe(true);
    expect(filesBelow(target)).toEqual(['victim']);
  });
});

type Op = (spool: Spool) => Promise<unknown>;
const deliverOne: Op = (spool) => deliver(spool, 'work', ['secret payload']);
const takeOne: Op = (spool) => spool.take('work');
const listOutbox: Op = (spool) => spool.outbox.entries();

describe('a symlink planted in place of a queue directory', () => {
  it.each<[string, string, Op]>([
    ['inbox/work', 'delivery', deliverOne],
    ['inbox/work', 'take', takeOne],
    ['inbox/work/new', 'delivery', deliverOne],
    ['inbox/work/new', 'take', takeOne],
    ['inbox/work/tmp', 'delivery', deliverOne],
    ['inbox/work/meta', 'delivery', deliverOne],
    ['inbox/work/lease', 'take', takeOne],
    ['inbox/work/dead', 'take', takeOne],
    ['inbox/work/cur', 'take', takeOne],
    ['outbox/work', 'listing the outbox', listOutbox],
    ['outbox/work/new', 'listing the outbox', listOutbox],
  ])('at %s is refused by %s with ESPOOL_SYMLINK and nothing is written or read through it', async (rel, _op, op) => {
    const spool = await openSpool(tmp.path);
    await spool.inbox.ensureQueue('work');
    await spool.outbox.ensureQueue('work');
    const target = decoy();
    plant(spool.root, rel, target);
    const err = await refusal(op(spool));
    expect(isFerryError(err, 'ESPOOL_SYMLINK')).toBe(true);
    expect(filesBelow(target)).toEqual(['victim']);
  });
});

describe('a symlink planted in place of a queue directory during recovery', () => {
  it.each([
    ['outbox/work'],
    ['outbox/work/tmp'],
    ['inbox/work'],
    ['inbox/work/tmp'],
    ['inbox/work/lease'],
  ])('at %s is refused with ESPOOL_SYMLINK and no old file of its target is removed as tmp debris', async (rel) => {
    const spool = await openSpool(tmp.path, { tmpMaxAgeMs: 1000 });
    await spool.inbox.ensureQueue('work');
    await spool.outbox.ensureQueue('work');
    const target = decoy();
    // Old enough to pass for a dead writer's debris, and named like an expired lease.
    const old = new Date(Date.now() - 3_600_000);
    writeFileSync(join(target, '1.M1P1.h~P1'), 'lease-looking');
    for (const f of ['victim', '1.M1P1.h~P1']) utimesSync(join(target, f), old, old);
    plant(spool.root, rel, target);
    const err = await refusal(spool.recover(Date.now() + 3_600_000));
    expect(isFerryError(err, 'ESPOOL_SYMLINK')).toBe(true);
    expect(existsSync(join(target, 'victim'))).toBe(true);
    expect(filesBelow(target)).toEqual(['1.M1P1.h~P1', 'victim']);
  });
});
