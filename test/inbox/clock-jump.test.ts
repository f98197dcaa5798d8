// Clock jumps (FERRY_CLOCK_FILE, src/clock.ts) against leases: a lease's expiry is an absolute wall-clock
// time stamped by its taker and judged by every other process with its own clock. Whatever the clocks say,
// a message is committed at most once: a jump can only make a lease end early (its holder's commit is then
// refused with ELEASE_LOST) or late (by at most the jump).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { CLAIM_GRACE_MS } from '../../src/inbox/lease-name.js';
import { childEnv, collect, deliver, FIXTURES, names, openSpool, runNode, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'clock-consumer.mjs');
const HOUR = 3600_000;
const clockDir = mkdtempSync(join(tmpdir(), 'ferry-clock-jump-'));
afterAll(() => rmSync(clockDir, { recursive: true, force: true }));

/** The environment of a child whose wall clock is off by `offsetMs`. */
function clockEnv(offsetMs: number): NodeJS.ProcessEnv {
  const file = join(clockDir, `offset-${offsetMs}`);
  writeFileSync(file, String(offsetMs));
  return childEnv({ FERRY_CLOCK_FILE: file });
}

/** Starts a child that takes one message and holds it until told to commit. */
async function holder(root: string, offsetMs: number) {
  const child = spawn(process.execPath, [CHILD, 'hold', root, 'jobs', '60000'], { env: clockEnv(offsetMs), stdio: ['pipe', 'pipe', 'pipe'] });
  const done = collect(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (s: string) => { out += s; if (out.includes('\n')) resolve(); });
    child.once('exit', () => reject(new Error(`holder exited early: ${out}`)));
  });
  return { child, done };
}

describe('a consumer whose clock jumps', () => {
  it('2 h ahead returns and takes a message another consumer still holds; the holder\'s commit is refused, so it is committed once', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['job-a']);
    const held = await spool.take('jobs', { leaseMs: 60_000 });
    expect(held).not.toBeNull();

    const ahead = await runNode([CHILD, 'take', spool.root, 'jobs', '60000'], { env: clockEnv(2 * HOUR) });
    expect(ahead.stdout.trim()).toBe('committed job-a');
    await expect(held?.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });

    for (const sub of ['new', 'lease', 'meta'] as const) expect(names(spool.layout.inboxDir('jobs', sub))).toEqual([]);
    expect(await spool.take('jobs')).toBeNull();
  });

  it('2 h back stamps leases that others read as unstamped claims: the message returns after the claim grace and the late commit is refused', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['job-b']);
    const behind = await holder(spool.root, -2 * HOUR);

    // Its expiry (true time − 2 h + 60 s) is older than the claim itself: the claim's grace counts.
    expect((await spool.recover()).leasesReturned).toBe(0);
    expect((await spool.recover(Date.now() + CLAIM_GRACE_MS + 1000)).leasesReturned).toBe(1);
    const again = await spool.take('jobs');
    expect(again?.meta.attempts).toBe(1);
    await again?.commit();

    behind.child.stdin.write('commit\n');
    expect((await behind.done).stdout).toContain('refused ELEASE_LOST');
    expect(names(spool.layout.inboxDir('jobs', 'lease'))).toEqual([]);
  });

  it('2 h ahead and then dies keeps its message leased until true time reaches the stamped expiry: late by the jump, not forever', async () => {
    const spool = await openSpool(tmp.path);
    await deliver(spool, 'jobs', ['job-c']);
    const ahead = await holder(spool.root, 2 * HOUR);
    ahead.child.kill('SIGKILL');
    await ahead.done;

    expect((await spool.recover(Date.now() + 61_000)).leasesReturned).toBe(0);
    expect((await spool.recover(Date.now() + 2 * HOUR + 61_000)).leasesReturned).toBe(1);
    expect((await spool.take('jobs'))?.meta.attempts).toBe(1);
  });
});

describe('maildir unique names across a clock stepped back 2 h', () => {
  it('stay distinct and keep one process\'s creation order', async () => {
    const file = join(clockDir, 'unique-offset');
    writeFileSync(file, '0');
    vi.stubEnv('FERRY_CLOCK_FILE', file);
    vi.resetModules();
    try {
      const { uniqueName, compareNames } = await import('../../src/maildir/unique.js');
      const before = uniqueName('alpha');
      writeFileSync(file, String(-2 * HOUR));
      await new Promise((r) => setTimeout(r, 150)); // past the clock's re-read interval
      const after1 = uniqueName('alpha');
      const after2 = uniqueName('alpha');
      expect(new Set([before, after1, after2]).size).toBe(3);
      expect([after2, after1, before].sort(compareNames)).toEqual([before, after1, after2]);
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});
