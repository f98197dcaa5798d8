// Regression (power loss, I2; found by a cold review of the power-cut work, not by the single-process round): a take
// renamed new/<m> into lease/ and then fsynced lease/; a return renamed it back and fsynced new/. Each directory is
// durable only when fsynced, and another process may fsync the source first — every delivery fsyncs new/, every take
// fsyncs lease/. A power cut then found the message's leaving durable and its arrival not: in neither directory.
//
// Now a move decides by a rename inside the source directory (to `.mv-<dst>-<name>`), links the file into the
// destination, fsyncs it, and only then unlinks the parked name; recovery finishes a move left half done. Here the
// mover is killed at each step, the other process fsyncs the source, the power goes, and after the reboot the
// message must be taken exactly once.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { fsyncDirAt, spoolChild as child, takeAllAfterReboot, usePowercutSpools } from '../fixtures/powercut-spool.js';
import { deliver } from '../fixtures/spool.js';

const boot = usePowercutSpools('move-cut');

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
      expect(takeAllAfterReboot(root)).toEqual(['m1']);
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
      expect(takeAllAfterReboot(root)).toEqual(['m1']);
      await pc.unmount();
    }, 60_000);
  }
});
