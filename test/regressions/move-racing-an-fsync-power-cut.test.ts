// Regression (power loss, I2; found by a cold review of the power-cut work, not by the single-process round): a take
// renamed new/<m> into lease/ and then fsynced lease/; a return renamed it back and fsynced new/. Each directory is
// durable only when fsynced, and another process may fsync the source first — every delivery fsyncs new/, every take
// fsyncs lease/. A power cut then found the message's leaving durable and its arrival not: in neither directory.
//
// Now a move decides by a rename inside the source directory (to `.mv-<dst>-<name>`), links the file into the
// destination, fsyncs it, and only then unlinks the parked name; recovery finishes a move left half done. Here the
// mover is killed at each step, the other process fsyncs the source, the power goes, and after the reboot the
// message must be taken exactly once.

import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, constants } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forceUnmountPowercut, mountPowercut, type PowercutMount } from '../../src/devtools/powercut.js';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, deliver, REPO } from '../fixtures/spool.js';

const work = mkdtempSync(join('/dev/shm', 'ferry-move-cut-'));
const mounts: string[] = [];
afterAll(async () => {
  for (const m of mounts) await forceUnmountPowercut(m);
  rmSync(work, { recursive: true, force: true });
});

let count = 0;
async function boot(): Promise<{ pc: PowercutMount; root: string }> {
  const dir = join(work, `t${++count}`);
  mkdirSync(join(dir, 'backing'), { recursive: true });
  const mount = join(dir, 'mnt');
  mounts.push(mount);
  const pc = await mountPowercut({ backing: join(dir, 'backing'), mount });
  return { pc, root: join(mount, 'spool') };
}

/** Runs a spool script in a child (so that only children use the mount when the power goes). */
function child(root: string, body: string, env: Record<string, string> = {}): { status: number | null; signal: string | null; stdout: string } {
  const script = `import { Spool } from './dist/spool/spool.js'; const spool = await Spool.open(${JSON.stringify(root)}, { host: 'alpha' }); ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, env: childEnv(env), encoding: 'utf8' });
  return { status: r.status, signal: r.signal, stdout: r.stdout };
}

function fsyncDirAt(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** After the reboot: every take of `q` (all leases expired), as payloads. */
function takeAll(root: string): string[] {
  const r = child(root, `
    await spool.recover(Date.now() + 3600_000 * 24);
    const got = [];
    for (;;) { const m = await spool.take('q', { leaseMs: 60_000 }); if (!m) break; got.push((await m.read()).toString()); await m.commit(); }
    console.log(JSON.stringify(got));`);
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout.trim()) as string[];
}

const steps = ['move.after-decide', 'move.after-link', 'move.after-sync'] as const;

describe('a message moving between new/ and lease/ while another process fsyncs the source, then the power goes', () => {
  for (const step of steps) {
    it(`survives a take killed at ${step}: taken exactly once after the reboot`, async () => {
      const { pc, root } = await boot();
      const spool = await Spool.open(root, { host: 'alpha', create: true });
      await deliver(spool, 'q', ['m1']);
      await pc.sync();
      const killed = child(root, `await spool.take('q', { leaseMs: 1000 });`, { FERRY_CRASH_AT: step });
      expect(killed.signal ?? killed.status).not.toBe(0);
      fsyncDirAt(join(root, 'inbox', 'q', 'new')); // what any delivery into q does
      await pc.cut();
      await pc.remount();
      expect(takeAll(root)).toEqual(['m1']);
      await pc.unmount();
    }, 60_000);

    it(`survives a return killed at ${step}: taken exactly once after the reboot`, async () => {
      const { pc, root } = await boot();
      const spool = await Spool.open(root, { host: 'alpha', create: true });
      await deliver(spool, 'q', ['m1']);
      const taken = child(root, `const m = await spool.take('q', { leaseMs: 60_000 }); console.log(m ? 'took' : 'none');`);
      expect(taken.stdout.trim()).toBe('took');
      await pc.sync();
      expect(readdirSync(join(root, 'inbox', 'q', 'lease')).length).toBe(1);
      const killed = child(root, `await spool.recover(Date.now() + 3600_000);`, { FERRY_CRASH_AT: step });
      expect(killed.signal ?? killed.status).not.toBe(0);
      fsyncDirAt(join(root, 'inbox', 'q', 'lease')); // what any take from q does
      await pc.cut();
      await pc.remount();
      expect(takeAll(root)).toEqual(['m1']);
      await pc.unmount();
    }, 60_000);
  }
});
