// End to end, one large file: 256 MiB streamed from alpha's outbox to beta's inbox through real daemons and a real
// sshd arrives byte-identical, and neither daemon's memory grows with the file (I8): both are sampled every 100 ms.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemons, until, useClusters } from './fixtures.js';


const makeCluster = useClusters();
const MiB = 1024 * 1024;
/** The bound on each daemon's peak resident memory: 200 MB. */
const RSS_LIMIT = 200 * 1000 * 1000;

/** VmRSS of a process in bytes, or undefined once it is gone. */
function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('a large file through real daemons', () => {
  it('streams a 256 MiB file byte-identical while both daemons stay under 200 MB of RSS', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'], logLevel: 'warn' });
    const [alphaPid, betaPid] = (await startDaemons(cluster, 'alpha', 'beta')) as [number, number];
    // Written in 1 MiB chunks and hashed on the way: the test never holds the file in memory either.
    const big = join(cluster.host('alpha').dir, 'big.bin');
    const ws = createWriteStream(big);
    const hash = createHash('sha256');
    for (let i = 0; i < 256; i++) {
      const chunk = randomBytes(MiB);
      hash.update(chunk);
      if (!ws.write(chunk)) await new Promise<void>((r) => ws.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const want = hash.digest('hex');

    const peak = { alpha: rssBytes(alphaPid) ?? 0, beta: rssBytes(betaPid) ?? 0 };
    const idle = { ...peak };
    const sampler = setInterval(() => {
      peak.alpha = Math.max(peak.alpha, rssBytes(alphaPid) ?? 0);
      peak.beta = Math.max(peak.beta, rssBytes(betaPid) ?? 0);
    }, 100);
    let elapsed = 0;
    try {
      const alpha = await cluster.spool('alpha');
      const t0 = Date.now();
      const id = await alpha.send('files', createReadStream(big), { headers: { name: 'big.bin' } });
      await until('the big file in beta\'s inbox', () => cluster.inboxNames('beta', 'files').length === 1, 150_000);
      elapsed = Date.now() - t0;
      const beta = await cluster.spool('beta');
      const m = await beta.take('files');
      expect({ id: m?.id, origin: m?.origin, size: m?.size, headers: m?.headers }).toEqual({ id, origin: 'alpha', size: 256 * MiB, headers: { name: 'big.bin' } });
      expect(await sha256File(m?.path as string)).toBe(want);
      await m?.commit();
    } finally {
      clearInterval(sampler);
    }
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    console.log(`256 MiB file: send→inbox ${elapsed} ms; peak RSS alpha ${mb(peak.alpha)} (idle ${mb(idle.alpha)}), beta ${mb(peak.beta)} (idle ${mb(idle.beta)})`);
    expect(peak.alpha).toBeGreaterThan(0);
    expect(peak.beta).toBeGreaterThan(0);
    expect(peak.alpha).toBeLessThan(RSS_LIMIT);
    expect(peak.beta).toBeLessThan(RSS_LIMIT);
  });
});
