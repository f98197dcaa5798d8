// kill -9 of alpha or beta at random instants while 2 000 messages flow over a real private sshd: 15 rounds, each
// killing a daemon (chosen by a seeded PRNG) 20–400 ms after it (re)started, then restarting it. At the end every
// message is in beta's inbox exactly once (I2 no loss, I3 no duplicates), whatever step each kill interrupted.
//
// The seed is printed; FERRY_TEST_SEED=<n> replays a schedule (the instants inside each step still vary with timing).

import { describe, expect, it } from 'vitest';
import {
  logTails, makeCluster, payload, prng, readInbox, report, sendAll, settle, sleep, tally, useClusterDir, } from '../fixtures/daemon-harness.js';

const tmp = useClusterDir();

const MESSAGES = 2_000;
const PER_TX = 50;
const BEFORE = 500; // committed before the daemons start; the rest while the kills go on
const ROUNDS = 15;

describe('daemons killed at random instants while messages flow', () => {
  it(`delivers all ${MESSAGES} messages exactly once after ${ROUNDS} SIGKILLs of alpha or beta`, async () => {
    const seed = process.env.FERRY_TEST_SEED !== undefined ? Number(process.env.FERRY_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
    const rand = prng(seed);
    const cluster = tmp.track(await makeCluster(tmp.path));
    const all = Array.from({ length: MESSAGES }, (_, i) => payload('r', i, 40 + (i % 13) * 11));

    await sendAll(cluster, 'alpha', all.slice(0, BEFORE), PER_TX);
    await Promise.all([cluster.startDaemon('alpha'), cluster.startDaemon('beta')]);

    // The rest, one transaction of 50 every ~250 ms, while the kills go on.
    let sending = true;
    const producer = (async () => {
      try {
        for (let i = BEFORE; i < MESSAGES; i += PER_TX) {
          await sendAll(cluster, 'alpha', all.slice(i, i + PER_TX), PER_TX);
          await sleep(250);
        }
      } finally {
        sending = false;
      }
    })();

    const schedule: string[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const victim = rand() < 0.5 ? 'alpha' : 'beta';
        const delay = 20 + Math.floor(rand() * 381);
        schedule.push(`${victim}@${delay}`);
        await sleep(delay);
        await cluster.stopDaemon(victim, 'SIGKILL');
        await cluster.startDaemon(victim);
      }
    } finally {
      await producer;
    }
    expect(sending).toBe(false);
    const schedText = `seed=${seed} schedule=${schedule.join(',')}`;
    console.log(schedText);

    await settle(cluster, { timeoutMs: 90_000 });
    const t = tally(all, readInbox(cluster, 'beta'));
    report('random-kill', `${ROUNDS} (alpha ${schedule.filter((s) => s.startsWith('alpha')).length}, beta ${schedule.filter((s) => s.startsWith('beta')).length}) seed=${seed}`, t);
    expect({ lost: t.lost, dup: t.dup, unknown: t.unknown, lostSample: t.lostSample, dupSample: t.dupSample }, `${schedText}\n${logTails(cluster)}`).toEqual({
      lost: 0, dup: 0, unknown: 0, lostSample: [], dupSample: [],
    });
  }, 180_000);
});
