// Crash tests at random instants: a child committing transactions in a loop is SIGKILLed after a random 5–200 ms,
// round after round on one spool. Every transaction is all-or-nothing, every commit that returned survives, and a
// consume-transform-produce loop never loses or doubles a job.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, collect, deliver, FIXTURES, names, openSpool, readOutbox, useTempDir, type ChildResult } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'txn-child.mjs');

/** Runs the child in `mode` until it prints "ready", then SIGKILLs it after a random 5–200 ms. */
async function runAndKill(mode: string, root: string, tag: string): Promise<ChildResult> {
  const child = spawn(process.execPath, [CHILD, mode, root, tag], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const done = collect(child);
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('ready\n')) resolve();
    });
    child.on('close', () => reject(new Error(`child exited before it was ready: ${seen}`)));
  });
  const delay = 5 + Math.floor(Math.random() * 196);
  const timer = setTimeout(() => child.kill('SIGKILL'), delay);
  const result = await done;
  clearTimeout(timer);
  return result;
}

/** The lines the child printed after "ready": one per commit that returned. */
function reported(result: ChildResult): string[] {
  const lines = result.stdout.split('\n');
  // A line cut by the kill has no newline yet: only whole lines count.
  return lines.slice(lines.indexOf('ready') + 1, -1);
}

describe('transactions killed at random instants', () => {
  it('leave every send transaction all-or-nothing and keep every commit that returned (20 rounds)', async () => {
    const spool = await openSpool(tmp.path);
    const rounds: { tag: string; committed: number[] }[] = [];
    for (let round = 0; round < 20; round++) {
      const tag = `r${round}`;
      const result = await runAndKill('loop', spool.root, tag);
      expect(result.signal).toBe('SIGKILL');
      rounds.push({ tag, committed: reported(result).map(Number) });
    }

    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    const messages = await readOutbox(reopened);
    const payloads = messages.map((m) => m.payload.toString());
    expect(payloads.length - new Set(payloads).size).toBe(0); // no duplicates
    let total = 0;
    for (const { tag, committed } of rounds) {
      const perTx = new Map<number, number>();
      for (const m of messages) {
        if (m.headers.tag === tag) perTx.set(Number(m.headers.tx), (perTx.get(Number(m.headers.tx)) ?? 0) + 1);
      }
      // All-or-nothing: each transaction present has its 3 messages.
      for (const [tx, count] of perTx) expect({ tag, tx, count }).toEqual({ tag, tx, count: 3 });
      // No loss: every commit the child saw return is there, and transactions form a gap-free prefix.
      const present = [...perTx.keys()].sort((a, b) => a - b);
      for (const tx of committed) expect(present).toContain(tx);
      expect(present).toEqual(present.map((_, i) => i));
      expect(present.length - committed.length).toBeLessThanOrEqual(1);
      total += present.length;
    }
    expect(total).toBeGreaterThan(0);
  });

  it('leave every consume-transform-produce job either done once or back in the queue (8 rounds)', async () => {
    const spool = await openSpool(tmp.path);
    const jobs = Array.from({ length: 300 }, (_, i) => `job-${i}`);
    for (let i = 0; i < jobs.length; i += 50) await deliver(spool, 'jobs', jobs.slice(i, i + 50));
    const reportedDone: string[] = [];
    for (let round = 0; round < 8; round++) {
      const result = await runAndKill('ctp-loop', spool.root, `c${round}`);
      reportedDone.push(...reported(result));
    }

    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    await reopened.recover(Date.now() + 120_000);
    expect(names(reopened.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    expect(names(reopened.layout.inboxDir('jobs', 'dead'))).toEqual([]);
    const results = (await readOutbox(reopened)).map((m) => m.payload.toString().replace(/^done:/, ''));
    const waiting: string[] = [];
    for (const name of names(reopened.layout.inboxDir('jobs', 'new'))) {
      waiting.push(readFileSync(join(reopened.layout.inboxDir('jobs', 'new'), name), 'utf8'));
    }
    const done = new Set(results);
    expect(results.length - done.size).toBe(0); // no job done twice
    const both = waiting.filter((j) => done.has(j));
    const neither = jobs.filter((j) => !done.has(j) && !waiting.includes(j));
    expect({ both, neither }).toEqual({ both: [], neither: [] });
    for (const job of reportedDone) expect(done.has(job)).toBe(true);
    expect(done.size).toBeGreaterThan(0);
  });
});
