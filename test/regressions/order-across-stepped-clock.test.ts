// Regression (I9, found by the short chaos runs: ~80 reordered per run): a commit file is named after the wall
// clock, and names were increasing only within one process. A `ferry send` run after the clock stepped back named
// its commit below the commits of the sends before it, and the acceptor, which ships in name order, shipped it
// first. Now every order-deciding name is made above a host-wide floor (state/name-floor), which survives the
// process; after a power cut (a new boot) the floor is found again from the names still waiting to be shipped.

import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { NameFloor } from '../../src/maildir/name-floor.js';
import { nameTime } from '../../src/maildir/unique.js';
import { childEnv, FIXTURES, openSpool, readOutbox, runNode, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const TXN = join(FIXTURES, 'txn-child.mjs');
const HOUR = 3600_000;

/** Runs `transactions` send transactions tagged `tag` in a new process whose clock is `offsetMs` off, in boot `boot`. */
async function sendIn(root: string, tag: string, transactions: number, offsetMs: number, boot: string): Promise<void> {
  const clock = join(tmp.path, `clock-${tag}`);
  const bootFile = join(tmp.path, `boot-${tag}`);
  writeFileSync(clock, String(offsetMs));
  writeFileSync(bootFile, `${boot}\n`);
  const r = await runNode([TXN, 'send', root, tag, String(transactions)], { env: childEnv({ FERRY_CLOCK_FILE: clock, FERRY_BOOT_ID_FILE: bootFile }) });
  expect(r.code, r.stderr).toBe(0);
}

/** The tags of queue `orders`, in the order the acceptor will ship them. */
async function shipOrder(root: string): Promise<string[]> {
  const spool = await Spool.open(root, { host: 'alpha' });
  return (await readOutbox(spool)).filter((m) => m.queue === 'orders').map((m) => m.payload.toString().split(':t')[0] as string);
}

const BOOT_A = '0b7c4a10-0000-4000-8000-00000000000a';
const BOOT_B = '0b7c4a10-0000-4000-8000-00000000000b';

describe('sends in successive processes, the clock stepped back between them', () => {
  it('are shipped in the order they committed', async () => {
    const spool = await openSpool(tmp.path);
    await sendIn(spool.root, 'first', 3, 0, BOOT_A);
    await sendIn(spool.root, 'second', 3, -2 * HOUR, BOOT_A);
    await sendIn(spool.root, 'third', 3, -1 * HOUR, BOOT_A);
    expect(await shipOrder(spool.root)).toEqual([...Array(6).fill('first'), ...Array(6).fill('second'), ...Array(6).fill('third')]);
  });

  it('are shipped in commit order after a power cut lost the floor (a new boot), found again from the waiting commits', async () => {
    const spool = await openSpool(tmp.path);
    await sendIn(spool.root, 'early', 1, 0, BOOT_A);
    const floorFile = join(spool.root, 'state', 'name-floor');
    const early = readFileSync(floorFile);
    await sendIn(spool.root, 'late', 2, 0, BOOT_A);
    // The power cut: the last writes to the (never fsynced) floor file are gone; the commits were fsynced.
    writeFileSync(floorFile, early);
    await sendIn(spool.root, 'after', 2, -2 * HOUR, BOOT_B);
    expect(await shipOrder(spool.root)).toEqual([...Array(2).fill('early'), ...Array(4).fill('late'), ...Array(4).fill('after')]);
  });

  it('are shipped in commit order when the floor file is missing', async () => {
    const spool = await openSpool(tmp.path);
    await sendIn(spool.root, 'first', 2, 0, BOOT_A);
    rmSync(join(spool.root, 'state', 'name-floor'));
    await sendIn(spool.root, 'second', 2, -2 * HOUR, BOOT_A);
    expect(await shipOrder(spool.root)).toEqual([...Array(4).fill('first'), ...Array(4).fill('second')]);
  });
});

describe('the name floor', () => {
  const microsOf = (name: string) => { const [s, u] = nameTime(name); return s * 1_000_000 + u; };

  it('makes names above a floor written by another process, and raises it to each name before returning', () => {
    const file = join(tmp.path, 'floor');
    const ahead = (Date.now() + 5 * HOUR) * 1000;
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    writeFileSync(file, `v1 ${boot} ${ahead} ${ahead}\n`);
    const floor = new NameFloor(file, () => []);
    const a = floor.next('alpha');
    const b = floor.next('alpha');
    expect(microsOf(a)).toBeGreaterThan(ahead);
    expect(microsOf(b)).toBeGreaterThan(microsOf(a));
    expect(readFileSync(file, 'utf8')).toMatch(new RegExp(`^v1 ${boot} ${microsOf(b)} ${microsOf(b)} *\\n$`));
  });

  it('ignores a torn or foreign record and starts from the waiting names instead', () => {
    const file = join(tmp.path, 'floor');
    const waiting = join(tmp.path, 'new');
    const ahead = Math.floor((Date.now() + 3 * HOUR) / 1000);
    mkdirSync(waiting);
    writeFileSync(join(waiting, `${ahead}.M000123P1Q1R0123abcd.alpha`), '');
    for (const junk of ['v1 ', 'garbage\n', `v1 not-this-boot 99999999999999999 99999999999999999\n`, `v1 ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} 99999999999999999 11111111111111111\n`]) {
      writeFileSync(file, junk);
      const name = new NameFloor(file, () => [waiting]).next('alpha');
      expect(microsOf(name)).toBeGreaterThan(ahead * 1_000_000 + 123);
    }
  });
});
