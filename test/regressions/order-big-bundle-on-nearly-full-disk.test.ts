// Regression (trust boundary, attack 7): order was a 5-second heuristic. The shipper published up to 4 bundles of a
// channel in any order and the receiver delivered a bundle ahead of a gap after holding it 5 s; with the receiver's
// disk nearly full a 36 MiB bundle got EREMOTE_FULL while the small ones behind it fit: committed BIG, s1, s2; taken
// s1, s2, BIG.
//
// Now bundles are published in sequence order and the receiver never delivers past a missing sequence: s1 and s2
// wait behind BIG, both sides' status says why and since when, and once there is room BIG, s1, s2 arrive in that
// order. The only way past BIG is the sender giving it up: after its lifetime it becomes a dead letter and an
// authenticated gap record, and s1, s2 follow it.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../../src/devtools/cluster.js';
import { ferry, startDaemons, statusJson, until, useClusters } from '../e2e/fixtures.js';
import { expectExactly } from '../helpers/traffic.js';

const makeCluster = useClusters();
const MiB = 1024 * 1024;
const mounts: string[] = [];
afterEach(() => {
  for (const m of mounts.splice(0)) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]); // a bind mount of the deployment still holds it: detach it
    }
  }
});

/**
 * A cluster whose beta spool sits on a 160 MiB tmpfs (needs root, as the suite does), about 50 MiB of it free: room
 * for small bundles, not for a 36 MiB one (it needs room twice: in the landing directory and in the inbox).
 */
async function smallBeta(opts: { extraConfig?: string[]; receive?: Record<string, number> } = {}): Promise<{ cluster: Cluster; ballast: string }> {
  const dir = join('/tmp', `ferry-order-${randomBytes(4).toString('hex')}`);
  const betaRoot = join(dir, 'beta', 'spool');
  mkdirSync(betaRoot, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=160m,mode=0700', 'tmpfs', betaRoot]);
  mounts.push(betaRoot);
  const cluster = await makeCluster({ hosts: ['alpha', 'beta'], dir, ...opts });
  const ballast = join(betaRoot, 'ballast');
  writeFileSync(ballast, Buffer.alloc(110 * MiB, 1));
  return { cluster, ballast };
}

async function sendBigThenSmall(cluster: Cluster): Promise<string[]> {
  const spool = await cluster.spool('alpha');
  const big = `BIG:${randomBytes(18 * MiB).toString('hex')}`; // 36 MiB, incompressible
  await spool.send('q', big);
  await spool.send('q', 's1');
  await spool.send('q', 's2');
  return [big, 's1', 's2'];
}

describe('order with a bundle too big for the receiver\'s free disk', () => {
  it('s1 and s2 wait behind BIG, both sides say why, and once there is room they arrive in commit order', async () => {
    const { cluster, ballast } = await smallBeta();
    await startDaemons(cluster, 'alpha', 'beta');
    const sent = await sendBigThenSmall(cluster);
    await until('alpha reports the channel blocked on the full peer', async () => {
      const p = (await statusJson(cluster, 'alpha')).peers.find((x) => x.peer === 'beta');
      return p?.blocked?.code === 'EREMOTE_FULL' || /EREMOTE_FULL|too full/.test(p?.lastError ?? '');
    }, 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(cluster.inboxNames('beta', 'q')).toEqual([]); // s1 and s2 never overtake BIG
    const p = (await statusJson(cluster, 'alpha')).peers.find((x) => x.peer === 'beta');
    expect(p?.backlog).toBe(3);

    rmSync(ballast); // a consumer frees room
    await expectExactly(cluster, 'beta', 'q', sent, 'alpha', 90_000);
  }, 150_000);

  it('BIG refused for good by the receiver\'s limit becomes a dead letter and a gap record, and s1, s2 follow it', async () => {
    // Plenty of disk here: the receiver's own limit, not its free space, refuses BIG.
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'], receive: { max_bundle_bytes: 8 * MiB } });
    await startDaemons(cluster, 'alpha', 'beta');
    await sendBigThenSmall(cluster);
    // A flush waiting meanwhile sees BIG drain as a dead letter, not a delivery: it says so and exits non-zero.
    const flush = ferry(cluster, 'alpha', ['flush', '--timeout', '60']);
    await expectExactly(cluster, 'beta', 'q', ['s1', 's2'], 'alpha', 60_000);
    await expectGapAndDeadLetter(cluster, /EENVELOPE_TOO_LARGE/);
    const flushed = await flush;
    expect(flushed.code).toBe(1);
    expect(flushed.stderr).toMatch(/EDEAD_LETTER|dead letter/);
  }, 120_000);

  it('BIG given up after its lifetime becomes a dead letter and a gap record, and s1, s2 sealed after it follow it', async () => {
    const { cluster } = await smallBeta({ extraConfig: ['lifetime = 5'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const spool = await cluster.spool('alpha');
    await spool.send('q', `BIG:${randomBytes(18 * MiB).toString('hex')}`);
    const dead = join(cluster.host('alpha').root, 'state', 'dead', 'beta');
    await until('BIG dead-lettered on alpha', () => existsSync(dead) && readdirSync(dead).some((n) => n.endsWith('.reason.json')), 60_000);
    // s1 and s2 take the sequences after BIG's: the receiver passes BIG's only through the gap record.
    await spool.send('q', 's1');
    await spool.send('q', 's2');
    await expectExactly(cluster, 'beta', 'q', ['s1', 's2'], 'alpha', 60_000);
    await expectGapAndDeadLetter(cluster, /within its lifetime/);
  }, 120_000);
});

/** BIG is a dead letter on alpha with `reason`, and beta counted the gap its record told of. */
async function expectGapAndDeadLetter(cluster: Cluster, reason: RegExp): Promise<void> {
  const dead = join(cluster.host('alpha').root, 'state', 'dead', 'beta');
  const reasons = readdirSync(dead).filter((n) => n.endsWith('.reason.json'));
  expect(reasons).toHaveLength(1);
  expect(readFileSync(join(dead, reasons[0] as string), 'utf8')).toMatch(reason);
  await until('beta counts the gap', async () => (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha')?.gaps === 1);
}
