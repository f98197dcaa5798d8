// Regression: a consume-transform-produce commit racing a lease reclaim. A transaction marks its taken messages
// `~T<txid>` and then commits by renaming state/commits/tmp/<txid> away. A reclaimer in another process that saw a
// marked lease expired (the committer paused past its 60 s grace, or the reclaimer's clock ahead) read "commit file
// still in tmp/" as "not committed" and returned the message to its queue, while the committer's rename then
// succeeded: its sends committed AND the message was processed again (I3, I4).
//
// Now both sides decide by one rename of the same file: the reclaimer aborts the transaction by renaming
// tmp/<txid> to tmp/<txid>.aborted before it returns anything; the committer whose rename (or unlink) then finds
// nothing throws ELEASE_LOST, commits nothing and returns every message it took. Exactly one of them wins.

import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fsp, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, collect, deliver, FIXTURES, names, openSpool, readOutbox, runNode, useTempDir, type ChildResult } from '../fixtures/spool.js';

const tmp = useTempDir();
const PAUSED = join(FIXTURES, 'ctp-paused-child.mjs');
const CONSUMER = join(FIXTURES, 'clock-consumer.mjs');
const TXN = join(FIXTURES, 'txn-child.mjs');
const HOUR = 3600_000;
const clockDir = mkdtempSync(join(tmpdir(), 'ferry-commit-race-'));
afterAll(() => rmSync(clockDir, { recursive: true, force: true }));

/** The environment of a child whose wall clock runs `offsetMs` ahead, plus `extra`. */
function aheadEnv(offsetMs: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const file = join(clockDir, `offset-${offsetMs}`);
  writeFileSync(file, String(offsetMs));
  return childEnv({ FERRY_CLOCK_FILE: file, ...extra });
}

/** A reclaimer in its own process: opening the spool runs recovery, with a clock `offsetMs` ahead. */
function reclaimer(root: string, offsetMs: number, extra: Record<string, string> = {}): Promise<ChildResult> {
  const script = `import { Spool } from './dist/spool/spool.js'; await Spool.open(${JSON.stringify(root)}, { host: 'alpha' });`;
  return runNode(['--input-type=module', '-e', script], { env: aheadEnv(offsetMs, extra) });
}

/** Starts a committer that pauses inside its commit after marking taken message `pauseAfter`; resolves once it is paused. */
async function pausedCommitter(root: string, takes: number, pauseAfter: number) {
  const child = spawn(process.execPath, [PAUSED, root, String(takes), String(pauseAfter)], { env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  const done = collect(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (s: Buffer | string) => { out += String(s); if (out.includes('marked\n')) resolve(); });
    child.once('exit', () => reject(new Error(`committer exited before pausing: ${out}`)));
  });
  return {
    /** Lets it go on to its commit point; resolves to what it printed last. */
    resume: async (): Promise<string> => {
      child.stdin.end('go\n');
      const r = await done;
      return r.stdout.trim().split('\n').at(-1) ?? '';
    },
  };
}

/** Results the outbox holds, as `queue:payload`. */
async function sent(spool: Spool): Promise<string[]> {
  return (await readOutbox(spool)).map((m) => `${m.queue}:${m.payload.toString()}`);
}

describe('a consume-transform-produce commit racing a lease reclaim', () => {
  it('in one process, step by step: the reclaim between marking and the commit point makes the commit fail, and the message is processed once', async () => {
    const committer = await openSpool(tmp.path);
    const other = await Spool.open(committer.root, { host: 'alpha' });
    const [name] = await deliver(committer, 'jobs', ['job-a']);
    const tx = committer.transaction();
    const msg = await tx.take('jobs', { leaseMs: 60_000 });
    if (!msg) throw new Error('no job');
    await tx.send('results', 'done:job-a');
    // Right after the commit marked the message: another process whose clock is 2 min ahead runs recovery.
    const renameLease = msg.renameLease.bind(msg);
    let reclaimed = 0;
    msg.renameLease = async (...args: Parameters<typeof renameLease>) => {
      await renameLease(...args);
      reclaimed = (await other.recover(Date.now() + 120_000)).leasesReturned;
    };

    await expect(tx.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    expect(reclaimed).toBe(1);
    expect(await sent(committer)).toEqual([]);
    expect(names(committer.layout.inboxDir('jobs', 'new'))).toEqual([name]);
    expect(names(committer.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    expect(names(committer.layout.commitsTmp)).toEqual([]);
    const again = await committer.take('jobs');
    expect(again?.meta.attempts).toBe(1);
  });

  it('in one process, step by step: a reclaim between the mark\'s rename and its new expiry also makes the commit fail with ELEASE_LOST', async () => {
    const committer = await openSpool(tmp.path);
    const other = await Spool.open(committer.root, { host: 'alpha' });
    const [name] = await deliver(committer, 'jobs', ['job-a']);
    const tx = committer.transaction();
    await tx.take('jobs', { leaseMs: 60_000 });
    await tx.send('results', 'done:job-a');
    // Until stamped, the marked lease still carries the take's expiry: a clock 2 min ahead reads it as expired.
    const utimes = fsp.utimes.bind(fsp);
    const spy = vi.spyOn(fsp, 'utimes').mockImplementation(async (path, atime, mtime) => {
      if (String(path).includes('~T')) {
        spy.mockRestore();
        await other.recover(Date.now() + 120_000);
      }
      return utimes(path, atime, mtime);
    });

    await expect(tx.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    spy.mockRestore();
    expect(await sent(committer)).toEqual([]);
    expect(names(committer.layout.inboxDir('jobs', 'new'))).toEqual([name]);
    expect(names(committer.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    expect(names(committer.layout.commitsTmp)).toEqual([]);
  });

  it('across processes: a consumer whose clock runs 2 min ahead takes the message back; the paused committer\'s commit is then refused', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['job-a']);
    const committer = await pausedCommitter(spool.root, 1, 1);

    const ahead = await runNode([CONSUMER, 'take', spool.root, 'jobs', '60000'], { env: aheadEnv(120_000) });
    expect(ahead.stdout.trim()).toBe('committed job-a');
    expect(await committer.resume()).toBe('refused ELEASE_LOST');

    // job-a was processed once: by the consumer. Nothing of the committer's transaction is visible.
    expect(await sent(spool)).toEqual([]);
    for (const sub of ['new', 'lease', 'meta'] as const) expect(names(spool.layout.inboxDir('jobs', sub))).toEqual([]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
    expect(names(spool.layout.commitsNew)).toEqual([]);
  });

  it('across processes: aborted after marking one of two messages, the committer still marks the other, is refused, and both come back once', async () => {
    const spool = await openSpool(tmp.path);
    const jobNames = await deliver(spool, 'jobs', ['job-a', 'job-b']);
    const committer = await pausedCommitter(spool.root, 2, 1);

    // 2 min ahead: past the first message's 60 s commit grace, not past the second one's 10 min lease.
    const r = await reclaimer(spool.root, 120_000);
    expect(r.code).toBe(0);
    expect(names(spool.layout.inboxDir('jobs', 'new'))).toEqual([jobNames[0]]);
    expect(await committer.resume()).toBe('refused ELEASE_LOST');

    expect(await sent(spool)).toEqual([]);
    expect(names(spool.layout.inboxDir('jobs', 'new'))).toEqual([...jobNames].sort());
    expect(names(spool.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
    for (let i = 0; i < 2; i++) expect((await spool.take('jobs'))?.meta.attempts).toBe(1);
  });

  it('a reclaimer killed right after its abort rename: the committer is refused and every message comes back', async () => {
    const spool = await openSpool(tmp.path);
    const jobNames = await deliver(spool, 'jobs', ['job-a', 'job-b']);
    const committer = await pausedCommitter(spool.root, 2, 2);

    const r = await reclaimer(spool.root, 120_000, { FERRY_CRASH_AT: 'reclaim.after-abort' });
    expect(r.signal).toBe('SIGKILL');
    expect(readdirSync(spool.layout.commitsTmp).filter((n) => n.endsWith('.aborted'))).toHaveLength(1);
    expect(await committer.resume()).toBe('refused ELEASE_LOST');

    expect(await sent(spool)).toEqual([]);
    expect(names(spool.layout.inboxDir('jobs', 'new'))).toEqual([...jobNames].sort());
    expect(names(spool.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    expect(names(spool.layout.commitsTmp)).toEqual([]);
  });

  it('a committer and a reclaimer both killed (after marking, after the abort rename): recovery returns the messages; the abort record goes as debris later', async () => {
    const spool = await openSpool(tmp.path);
    const jobNames = await deliver(spool, 'jobs', ['job-a', 'job-b']);
    const t = await runNode([TXN, 'ctp', spool.root, 'ctp', '2'], { env: childEnv({ FERRY_CRASH_AT: 'txn.after-mark', FERRY_CRASH_SKIP: '1' }) });
    expect(t.signal).toBe('SIGKILL');
    const r = await reclaimer(spool.root, 2 * HOUR, { FERRY_CRASH_AT: 'reclaim.after-abort' });
    expect(r.signal).toBe('SIGKILL');
    const [record] = names(spool.layout.commitsTmp);
    expect(record).toMatch(/\.aborted$/);
    expect(names(spool.layout.inboxDir('jobs', 'lease'))).toHaveLength(2);

    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    await reopened.recover(Date.now() + 120_000);
    expect(await sent(reopened)).toEqual([]);
    expect(names(reopened.layout.inboxDir('jobs', 'new'))).toEqual([...jobNames].sort());
    expect(names(reopened.layout.inboxDir('jobs', 'lease'))).toEqual([]);
    // Kept while young (the committer might still be alive and marking); swept like any tmp/ debris once old.
    expect(names(reopened.layout.commitsTmp)).toEqual([record]);
    await reopened.recover(Date.now() + 37 * HOUR);
    expect(names(reopened.layout.commitsTmp)).toEqual([]);
    for (let i = 0; i < 2; i++) expect((await reopened.take('jobs'))?.meta.attempts).toBe(1);
  });
});
