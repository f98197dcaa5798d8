// kill -9 of either daemon at each named instant of the accept → ship → receive path (FERRY_CRASH_AT), over a real
// private sshd: after a plain restart every message sent reaches beta's inbox exactly once (I2 no loss, I3 no duplicates).
//
// Messages are sent before the daemons start, while the crashing daemon runs (one small transaction every ~120 ms, so
// each becomes its own accept pass and bundle, and FERRY_CRASH_SKIP can reach a later one), while it is dead, and after
// its restart.

import { describe, expect, it } from 'vitest';
import type { Cluster } from '../../src/devtools/cluster.js';
import {
  alive, exited, logTails, makeCluster, payload, readInbox, receiveJournals, report, sendAll, settle, sleep, tally, useClusterDir, } from '../fixtures/daemon-harness.js';

const tmp = useClusterDir();

interface Case {
  point: string;
  /** The daemon that dies there. */
  victim: 'alpha' | 'beta';
  /** Pass the point this many times first (FERRY_CRASH_SKIP). */
  skip: number;
}

const CASES: Case[] = [
  { point: 'accept.before-journal', victim: 'alpha', skip: 0 },
  { point: 'accept.after-journal', victim: 'alpha', skip: 0 },
  { point: 'accept.before-unlink', victim: 'alpha', skip: 0 },
  { point: 'accept.after-journal', victim: 'alpha', skip: 2 },
  { point: 'ship.after-upload', victim: 'alpha', skip: 0 },
  { point: 'ship.after-publish', victim: 'alpha', skip: 0 },
  { point: 'ship.after-upload', victim: 'alpha', skip: 2 },
  { point: 'ship.after-publish', victim: 'alpha', skip: 2 },
  { point: 'receive.after-journal', victim: 'beta', skip: 0 },
  { point: 'receive.after-publish', victim: 'beta', skip: 0 },
  { point: 'receive.after-journal', victim: 'beta', skip: 2 },
  { point: 'receive.after-publish', victim: 'beta', skip: 2 },
];

async function runCase(c: Case): Promise<void> {
  const t0 = Date.now();
  const laps: string[] = [];
  const lap = (what: string) => laps.push(`${what}+${((Date.now() - t0) / 1000).toFixed(1)}s`);
  const cluster: Cluster = tmp.track(await makeCluster(tmp.path));
  const other = c.victim === 'alpha' ? 'beta' : 'alpha';
  const sent: string[] = [];
  let n = 0;
  const send = async (count: number, perTx: number) => {
    const batch = Array.from({ length: count }, () => payload('m', n++, 48 + (n % 7) * 9));
    await sendAll(cluster, 'alpha', batch, perTx);
    sent.push(...batch);
  };

  // 1. Before any daemon runs: one accept pass, one bundle.
  await send(30, 10);
  // 2. The victim starts with the crash point armed; the other daemon runs normally.
  const env: Record<string, string> = { FERRY_CRASH_AT: c.point, ...(c.skip > 0 ? { FERRY_CRASH_SKIP: String(c.skip) } : {}) };
  const [, victim] = await Promise.all([cluster.startDaemon(other), cluster.startDaemon(c.victim, env)]);
  // 3. While it runs: a small transaction every ~120 ms (each its own bundle) until the point kills it.
  lap('up');
  while (alive(victim)) {
    if (Date.now() - t0 > 45_000) throw new Error(`${c.victim} never reached ${c.point} (skip ${c.skip})\n${logTails(cluster)}`);
    await send(3, 3);
    await sleep(120);
  }
  const signal = await exited(victim);
  lap('died');
  expect(signal, `${c.victim} should have died at ${c.point}\n${logTails(cluster)}`).toBe('SIGKILL');
  await cluster.stopDaemon(c.victim);
  if (c.victim === 'beta') {
    // Proof the point was reached where it matters: a delivery journal is left for the restart to finish.
    if (c.point === 'receive.after-journal' || c.point === 'receive.after-publish') expect(receiveJournals(cluster, 'beta').length).toBeGreaterThan(0);
  }
  // 4. While it is dead.
  await send(20, 10);
  // 5. Restarted without the crash point, and more while it runs.
  await cluster.startDaemon(c.victim);
  lap('restarted');
  for (let i = 0; i < 3; i++) {
    await send(10, 5);
    await sleep(100);
  }
  await settle(cluster);
  lap('settled');

  const t = tally(sent, readInbox(cluster, 'beta'));
  report(`${c.point}${c.skip ? ` skip=${c.skip}` : ''} ${c.victim}`, 1, t, laps.join(' '));
  expect({ lost: t.lost, dup: t.dup, unknown: t.unknown, lostSample: t.lostSample, dupSample: t.dupSample }, logTails(cluster)).toEqual({
    lost: 0, dup: 0, unknown: 0, lostSample: [], dupSample: [],
  });
}

describe('daemon killed at a named crash point, then restarted', () => {
  for (const c of CASES) {
    it(`${c.victim} at ${c.point}${c.skip ? ` (after passing it ${c.skip} times)` : ''}: nothing lost, nothing duplicated`, () => runCase(c), 90_000);
  }
});
