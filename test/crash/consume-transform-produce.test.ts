// Crash tests (I1 + I4): a consume-transform-produce transaction killed with SIGKILL at each named instant ends,
// after recovery, either fully committed (taken messages gone, results sent) or fully undone (taken messages back
// in the queue, nothing sent) — never both, never neither.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, deliver, FIXTURES, names, openSpool, readOutbox, runNode, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'txn-child.mjs');

type Outcome = 'committed' | 'undone';

/** Classifies each job (payload, inbox name) after recovery; throws on a state that is neither outcome. */
async function outcomes(spool: Spool, jobs: readonly string[], jobNames: readonly string[]): Promise<Outcome[]> {
  const waiting = names(spool.layout.inboxDir('jobs', 'new'));
  const inFlight = names(spool.layout.inboxDir('jobs', 'lease'));
  const dead = names(spool.layout.inboxDir('jobs', 'dead'));
  expect({ inFlight, dead }).toEqual({ inFlight: [], dead: [] });
  const sent = (await readOutbox(spool)).map((m) => `${m.queue}:${m.payload.toString()}`);
  return jobs.map((job, i) => {
    const back = waiting.includes(jobNames[i] as string);
    const results = sent.filter((s) => s === `results:done:${job}`).length;
    const audits = sent.filter((s) => s === `audit:seen:${job}`).length;
    if (!back && results === 1 && audits === 1) return 'committed';
    if (back && results === 0 && audits === 0) return 'undone';
    throw new Error(`job ${job}: back in queue=${back}, results sent=${results}, audits sent=${audits}`);
  });
}

describe('a consume-transform-produce transaction killed with SIGKILL', () => {
  it.each<[string, number, number, Outcome]>([
    ['txn.after-fsync', 0, 1, 'undone'],
    ['txn.after-fsync', 0, 2, 'undone'],
    ['txn.after-mark', 0, 1, 'undone'],
    ['txn.after-mark', 0, 2, 'undone'],
    ['txn.after-mark', 1, 2, 'undone'],
    ['move.after-decide', 0, 1, 'undone'],
    ['move.after-link', 1, 2, 'undone'],
    ['txn.after-rename', 0, 2, 'committed'],
    ['txn.after-link', 0, 2, 'committed'],
    ['txn.after-commit', 0, 2, 'committed'],
  ])('at %s (skipping %i, %i taken) ends %s after recovery', async (point, skip, takes, expected) => {
    const spool = await openSpool(tmp.path);
    const jobs = ['job-a', 'job-b'].slice(0, takes);
    const jobNames = await deliver(spool, 'jobs', jobs);
    const env = childEnv({ FERRY_CRASH_AT: point, FERRY_CRASH_SKIP: String(skip) });
    const child = await runNode([CHILD, 'ctp', spool.root, 'ctp', String(takes)], { env });
    expect(child.signal).toBe('SIGKILL');
    expect(child.stdout).not.toContain('committed');

    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    await reopened.recover(Date.now() + 120_000);
    expect(await outcomes(reopened, jobs, jobNames)).toEqual(jobs.map(() => expected));
    if (expected === 'undone') {
      // Returned like any consumer death: one attempt counted, and takeable again.
      const again = await reopened.take('jobs');
      expect(again?.meta.attempts).toBe(1);
      await again?.commit();
    }
  });

  it('keeps a committing transaction\'s taken messages while their grace period runs (recovery in the meantime waits)', async () => {
    const spool = await openSpool(tmp.path);
    const jobNames = await deliver(spool, 'jobs', ['job-a']);
    const child = await runNode([CHILD, 'ctp', spool.root, 'ctp', '1'], { env: childEnv({ FERRY_CRASH_AT: 'txn.after-mark' }) });
    expect(child.signal).toBe('SIGKILL');
    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    expect(await reopened.take('jobs')).toBeNull();
    expect(names(reopened.layout.inboxDir('jobs', 'lease'))).toHaveLength(1);
    await reopened.recover(Date.now() + 120_000);
    expect(await outcomes(reopened, ['job-a'], jobNames)).toEqual(['undone']);
  });
});
