// Regression (trust boundary, attack 8): the receiver read bundles with no limits of its own and capped decompression
// only at the size the bundle declared: a 936-byte brotli bundle made it write 256 MiB, past the sender-side room check.
//
// Now the receiver's own limits hold whatever a bundle declares: an inflate ratio past the first MiB, a largest
// payload, a largest sum per bundle, and a free-space reserve it never writes into. A compromised alpha sealing such a
// bundle with its real key gets it refused before much is written; honest traffic goes on. (Needs root: a tmpfs.)
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { inboxFiles, pairKey, plant, sealBundle, startDaemons, statusJson, until, useClusters, waitQuarantined } from '../e2e/fixtures.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';
import { formatBundleName } from '../../src/envelope/index.js';

const makeCluster = useClusters();
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
const MiB = 1024 * 1024;

/** alpha, beta and gamma, with beta's spool on a tmpfs of `mib` MiB of its own: its free space changes only by what beta writes. */
async function betaOnTmpfs(mib: number): Promise<Parameters<typeof pairKey>[0]> {
  const dir = join('/tmp', `ferry-bomb-${randomBytes(4).toString('hex')}`);
  const betaRoot = join(dir, 'beta', 'spool');
  mkdirSync(betaRoot, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', betaRoot]);
  mounts.push(betaRoot);
  return makeCluster({ hosts: ['alpha', 'beta', 'gamma'], dir });
}

/** A tiny brotli bundle from alpha, sealed with the real alpha–beta key, that declares (and inflates to) `size` bytes of zeros. */
async function bomb(cluster: Parameters<typeof pairKey>[0], size: number): Promise<{ name: string; bytes: Buffer }> {
  const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
  const channel = randomBytes(8).toString('hex');
  const bytes = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel, epoch: 1, firstSeq: 1, acked: 0 }, [{ queue: 'bomb', id: 'bomb-1', payload: Buffer.alloc(size), compression: 'br' }], {});
  return { name: formatBundleName({ epoch: 1, channel, firstSeq: 1, count: 1, gap: false }), bytes };
}

describe('a small compressed bundle that inflates enormously', () => {
  it('is refused by the inflate-ratio limit with at most a few MiB written, on a disk that could take what it declares', async () => {
    const cluster = await betaOnTmpfs(512);
    const b = await bomb(cluster, 256 * MiB);
    expect(b.bytes.length).toBeLessThan(64 * 1024); // brotli of zeros, sealed: a few KiB declaring 256 MiB
    await startDaemons(cluster, 'alpha', 'beta', 'gamma');
    const before = statfsSync(cluster.host('beta').root);
    await plant(cluster, 'beta', b.name, b.bytes);
    const q = await waitQuarantined(cluster, 'beta', b.name);
    expect(q.code).toBe('EENVELOPE_BOMB');
    const after = statfsSync(cluster.host('beta').root);
    expect((before.bavail - after.bavail) * after.bsize).toBeLessThan(8 * MiB); // the copy in quarantine is a few KiB
    expect(inboxFiles(cluster, 'beta', 'bomb')).toEqual([]);
    expect(readdirSync(join(cluster.host('beta').root, 'inbox', 'bomb', 'tmp'))).toEqual([]);
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'gamma', 'q', 3, 'honest'), 'gamma');
  });

  it('waits unwritten (EDISK_FULL) when what it declares would eat the free-space reserve, and the host goes on', async () => {
    const cluster = await betaOnTmpfs(128);
    const b = await bomb(cluster, 256 * MiB);
    await startDaemons(cluster, 'alpha', 'beta', 'gamma');
    const before = statfsSync(cluster.host('beta').root);
    await plant(cluster, 'beta', b.name, b.bytes);
    await until('beta reports the bundle waiting for room', async () => (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha')?.blocked?.code === 'EDISK_FULL');
    const after = statfsSync(cluster.host('beta').root);
    expect((before.bavail - after.bavail) * after.bsize).toBeLessThan(1 * MiB);
    expect(inboxFiles(cluster, 'beta', 'bomb')).toEqual([]);
    // Local sends and takes, and other peers, are unaffected: only alpha's own channel waits behind its bundle.
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'gamma', 'q', 3, 'honest'), 'gamma');
  });

  it('is refused by the largest-payload limit before a byte is written when the receiver sets one', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'], receive: { max_message_bytes: 16 * MiB } });
    const b = await bomb(cluster, 32 * MiB);
    await startDaemons(cluster, 'alpha', 'beta');
    await plant(cluster, 'beta', b.name, b.bytes);
    const q = await waitQuarantined(cluster, 'beta', b.name);
    expect(q.code).toBe('EENVELOPE_TOO_LARGE');
    expect(inboxFiles(cluster, 'beta', 'bomb')).toEqual([]);
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 2, 'honest'), 'alpha');
  });
});
