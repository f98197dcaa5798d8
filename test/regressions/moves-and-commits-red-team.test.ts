// Regressions from a cold red-team review of the two-step moves (src/inbox/move.ts) and of the parked commit point
// (src/outbox/commit-point.ts), each shown by a proof of concept on the power-cut simulator before its fix:
// 1. a take of a message whose return was half done unlinked the return's parked name (and synced lease/) before its
//    own step 1 was durable: a cut then found the message in no directory;
// 2. a take's parked name made durable by another process's fsync of new/, with its unlink not yet durable when the
//    transaction marked the lease and committed: after a cut, recovery linked it in again as an unmarked lease and
//    the message was taken a second time;
// 3. a committer that unlinked its parked name and died before syncing commits/tmp/, its commit file then shipped by
//    the acceptor (one link, so no tmp/ sync): after a cut, tmp/<txid> was back, read as undecided, and the takes
//    returned although the sends had been shipped.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';
import { openSpoolScript as pre, spoolChild as child, usePowercutSpools } from '../fixtures/powercut-spool.js';
import { childEnv, deliver, REPO } from '../fixtures/spool.js';

const boot = usePowercutSpools('rt3');

/** After the reboot and recovery with every lease expired: what can be taken from `q`, and the commit files waiting. */
function afterReboot(root: string): { taken: string[]; waiting: number } {
  const r = child(root, `await spool.recover(Date.now() + 3600_000 * 24); const got = [];
    for (;;) { const m = await spool.take('q', { leaseMs: 60_000 }); if (!m) break; got.push((await m.read()).toString()); await m.commit(); }
    console.log(JSON.stringify({ taken: got, waiting: (await spool.outbox.entries()).length }));`);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as { taken: string[]; waiting: number };
}

/** A consume-transform-produce child that fsyncs new/ (as a concurrent delivery would) while its take is parked. */
const CTP_WITH_RACING_FSYNC = (root: string) => `
  const fs = await import('node:fs');
  const newDir = ${JSON.stringify(join(root, 'inbox', 'q', 'new'))};
  const fd = fs.openSync(newDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  let on = true;
  const spin = () => { if (!on) return; if (fs.readdirSync(newDir).some((n) => n.startsWith('.mv-'))) { fs.fsyncSync(fd); on = false; return; } setImmediate(spin); };
  spin();
  const tx = spool.transaction();
  const m = await tx.take('q', { leaseMs: 60_000 });
  on = false;
  await tx.send('out', 'derived-' + (await m.read()).toString());
  await tx.commit();`;

describe('moves and commits against a concurrent process and a power cut', () => {
  it('a take racing a half-done return: the message is taken exactly once after the reboot', async () => {
    const { pc, root, dir } = await boot();
    const spool = await Spool.open(root, { host: 'alpha', create: true });
    await deliver(spool, 'q', ['m1']);
    expect(child(root, `await spool.take('q', { leaseMs: 60_000 });`).status).toBe(0);
    await pc.sync();
    const go = join(dir, 'go');
    const taker = spawn(process.execPath, ['--input-type=module', '-e', pre(root) + `
      const { existsSync } = await import('node:fs');
      console.log('ready');
      while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 20));
      await spool.take('q', { leaseMs: 60_000 });`], { cwd: REPO, env: childEnv({ FERRY_CRASH_AT: 'move.after-link' }), stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => taker.stdout.on('data', (s: Buffer) => { if (String(s).includes('ready')) resolve(); }));
    // The return of the expired lease, killed after linking into new/ (before its fsync of new/).
    expect(child(root, `await spool.recover(Date.now() + 3600_000);`, { FERRY_CRASH_AT: 'move.after-link' }).signal).toBe('SIGKILL');
    writeFileSync(go, '');
    expect(await new Promise((resolve) => taker.on('close', (_c, s) => resolve(s)))).toBe('SIGKILL');
    await pc.cut();
    await pc.remount();
    expect(afterReboot(root).taken).toEqual(['m1']);
    await pc.unmount();
  }, 90_000);

  it('a committed consume-transform-produce whose parked take a delivery made durable: never taken again', async () => {
    const { pc, root } = await boot();
    const spool = await Spool.open(root, { host: 'alpha', create: true });
    await deliver(spool, 'q', ['m1']);
    await pc.sync();
    expect(child(root, CTP_WITH_RACING_FSYNC(root), { FERRY_CRASH_AT: 'txn.after-link' }).signal).toBe('SIGKILL');
    await pc.cut();
    await pc.remount();
    expect(afterReboot(root)).toEqual({ taken: [], waiting: 1 });
    await pc.unmount();
  }, 90_000);

  it('a commit file shipped after its committer unparked it but died before syncing commits/tmp/: the takes stay taken', async () => {
    await sodiumReady();
    const { pc, root } = await boot();
    const spool = await Spool.open(root, { host: 'alpha', create: true });
    await deliver(spool, 'q', ['m1']);
    await pc.sync();
    expect(child(root, CTP_WITH_RACING_FSYNC(root), { FERRY_CRASH_AT: 'txn.after-unpark' }).signal).toBe('SIGKILL');
    const key: SealKey = { id: 'kb', secret: randomBytes(32), peers: ['alpha', 'beta'] };
    const acceptor = new Acceptor(spool, { destinations: () => ['beta'], compression: () => 'none', sealingKey: () => key, lifetimeMs: 60_000 },
      { info() {}, warn() {}, error() {}, debug() {} });
    await acceptor.acceptOnce();
    expect(readdirSync(join(root, 'state', 'channels', 'beta', 'out')).length).toBe(1); // shipped
    await pc.cut();
    await pc.remount();
    expect(existsSync(join(root, 'state', 'channels', 'beta', 'out'))).toBe(true);
    expect(afterReboot(root)).toEqual({ taken: [], waiting: 0 });
    await pc.unmount();
  }, 90_000);
});
