// SSH connections cut while a large bundle is being uploaded: sshd's per-connection processes are SIGKILLed (a dead
// network path, not a polite close) while beta's landing/tmp/ holds a partial upload, three times. The daemons keep
// running; alpha reconnects, resumes or restarts the upload, and every message — 200 small ones and one 96 MiB
// payload — reaches beta's inbox exactly once, the big one byte-identical (sha256).

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  QUEUE, logLines, logTails, makeCluster, payload, report, sendAll, settle, sizes, sleep, tally, useClusterDir, } from '../fixtures/daemon-harness.js';
import { Cluster } from '../../src/devtools/cluster.js';

const tmp = useClusterDir();

const MiB = 1024 * 1024;
const BIG = 96 * MiB;
const SMALL = 200;
const CUTS = 3;

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('SSH connections cut in the middle of a bundle upload', () => {
  it(`delivers ${SMALL} small messages and a 96 MiB payload exactly once across ${CUTS} cuts`, async () => {
    const cluster = tmp.track(await makeCluster(tmp.path));
    const small = Array.from({ length: SMALL }, (_, i) => payload('s', i, 80 + (i % 5) * 20));
    const big = randomBytes(BIG);
    const bigSha = createHash('sha256').update(big).digest('hex');

    // Half the small messages, then the big one (a bundle of its own), before the daemons start.
    await sendAll(cluster, 'alpha', small.slice(0, SMALL / 2), 20);
    await (await cluster.spool('alpha')).send(QUEUE, big);
    await Promise.all([cluster.startDaemon('alpha'), cluster.startDaemon('beta')]);
    // The other half while the daemons run (and the cuts happen).
    const producer = (async () => {
      for (let i = SMALL / 2; i < SMALL; i += 10) {
        await sendAll(cluster, 'alpha', small.slice(i, i + 10), 10);
        await sleep(60);
      }
    })();

    // Cut every connection whenever alpha's landing directory on beta holds a partial upload (<name>.part) of the big
    // bundle that moved on by 4 MiB since the last cut (grew past it after a resume, or was restarted and got 4 MiB in).
    const landing = join(cluster.host('beta').root, 'landing', 'alpha');
    const uploads = () => [...sizes(landing).entries()].filter(([n]) => n.endsWith('.part')).map(([, size]) => size);
    const cutsAt: number[] = [];
    let last = 0;
    const partial = () => uploads().find((s) => s >= 4 * MiB && s < BIG && (s >= last + 4 * MiB || s < last));
    try {
      while (cutsAt.length < CUTS) {
        await Cluster.until(`a partial upload in alpha's landing directory on beta that moved 4 MiB since the last cut (cut ${cutsAt.length + 1})`, () => partial() !== undefined, 60_000, 2);
        const killed = await cluster.killConnections();
        if (killed === 0) {
          await sleep(5); // between two connections: nothing was cut, try again
          continue;
        }
        // The upload ran on while the processes were found and killed: measure where it really stopped.
        await sleep(100);
        last = Math.max(0, ...uploads().filter((s) => s < BIG));
        cutsAt.push(last);
      }
    } finally {
      await producer;
    }

    await settle(cluster, { timeoutMs: 120_000 });

    // Read beta's inbox: the small payloads as text, the big one by hash.
    const newDir = join(cluster.host('beta').root, 'inbox', QUEUE, 'new');
    const delivered: string[] = [];
    const bigHashes: string[] = [];
    for (const name of readdirSync(newDir)) {
      const path = join(newDir, name);
      if (statSync(path).size > MiB) bigHashes.push(await sha256File(path));
      else delivered.push(readFileSync(path, 'utf8'));
    }
    const t = tally([...small, `big:${bigSha}`], [...delivered, ...bigHashes.map((h) => `big:${h}`)]);
    const resumes = logLines(cluster, 'alpha', /resuming upload/).filter((l) => Number(/"size":(\d+)/.exec(l)?.[1] ?? 0) >= BIG).length;
    report('ssh-cut', `${cutsAt.length} cuts`, t, `cutAt=${cutsAt.map((s) => `${(s / MiB).toFixed(1)}MiB`).join(',')} bigResumes=${resumes} bigSha=${bigHashes.length === 1 && bigHashes[0] === bigSha ? 'match' : 'MISMATCH'}`);
    expect(cutsAt.length).toBe(CUTS);
    expect(bigHashes, 'the 96 MiB payload arrives once, byte-identical').toEqual([bigSha]);
    expect({ lost: t.lost, dup: t.dup, unknown: t.unknown, lostSample: t.lostSample, dupSample: t.dupSample }, logTails(cluster)).toEqual({
      lost: 0, dup: 0, unknown: 0, lostSample: [], dupSample: [],
    });
  }, 180_000);
});
