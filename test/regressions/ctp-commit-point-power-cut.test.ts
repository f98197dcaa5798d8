// Regression (power loss, I1/I2/I3; found by a cold review of the power-cut work): a transaction that takes and sends
// committed by renaming its file from state/commits/tmp/ into state/commits/new/ — two directories, each durable only
// when fsynced, and another transaction may fsync tmp/ first. A power cut could then keep the file in neither (the
// result lost, the taken job read as committed and removed), or in both, and once the acceptor had shipped the new/
// one, the tmp/ one read as undecided: the job returned and was processed a second time.
//
// Now the commit decides by a rename inside tmp/ (to `<txid>.committed-<name>`), links into new/, fsyncs it, and
// unlinks the parked name; recovery finishes a parked commit; the acceptor removes a commit file's tmp/ links before it.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';
import { fsyncDirAt, spoolChild as child, usePowercutSpools } from '../fixtures/powercut-spool.js';
import { deliver, readOutbox } from '../fixtures/spool.js';

const boot = usePowercutSpools('ctp-cut');
const plainDir = mkdtempSync(join(tmpdir(), 'ferry-ctp-plain-'));
afterAll(() => rmSync(plainDir, { recursive: true, force: true }));

const CTP = `const tx = spool.transaction(); const m = await tx.take('jobs', { leaseMs: 60_000 });
  await tx.send('results', 'done:' + (await m.read()).toString()); await tx.commit(); console.log('committed');`;

/** After recovery (every lease expired): the results waiting to ship and the jobs still to take. */
function outcome(root: string): { results: string[]; jobs: string[] } {
  const r = child(root, `
    await spool.recover(Date.now() + 3600_000 * 24);
    const { openCommitFile } = await import('./dist/outbox/commit-file.js');
    const results = [];
    for (const e of await spool.outbox.entries()) {
      const f = await openCommitFile(e.path);
      for (const [i, m] of f.index.messages.entries()) if (m.queue === 'results') results.push(f.data.subarray(f.offsets[i], f.offsets[i] + m.size).toString());
      await f.handle.close();
    }
    const jobs = [];
    for (;;) { const m = await spool.take('jobs'); if (!m) break; jobs.push((await m.read()).toString()); await m.commit(); }
    console.log(JSON.stringify({ results, jobs }));`);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as { results: string[]; jobs: string[] };
}

describe('a consume-transform-produce commit, killed at its commit point, another transaction syncing commits/tmp/, then the power cut', () => {
  for (const step of ['txn.after-rename', 'txn.after-link']) {
    it(`at ${step}: committed exactly once — the result kept and the job gone`, async () => {
      const { pc, root } = await boot();
      const spool = await Spool.open(root, { host: 'alpha', create: true });
      await deliver(spool, 'jobs', ['j1']);
      await pc.sync();
      const killed = child(root, CTP, { FERRY_CRASH_AT: step });
      expect(killed.signal).toBe('SIGKILL');
      fsyncDirAt(join(root, 'state', 'commits', 'tmp')); // what any other consume-transform-produce commit does
      await pc.cut();
      await pc.remount();
      expect(outcome(root)).toEqual({ results: ['done:j1'], jobs: [] });
      await pc.unmount();
    }, 60_000);
  }
});

describe('a consume-transform-produce commit file shipped while its parked name is still in commits/tmp/', () => {
  it('loses that name with it: recovery afterwards neither commits it again nor returns the job', async () => {
    await sodiumReady();
    const root = join(plainDir, 'spool');
    const spool = await Spool.open(root, { host: 'alpha', create: true });
    await deliver(spool, 'jobs', ['j1']);
    const killed = child(root, CTP, { FERRY_CRASH_AT: 'txn.after-link' });
    expect(killed.signal).toBe('SIGKILL');
    expect(readdirSync(spool.layout.commitsTmp).some((n) => n.includes('.committed-'))).toBe(true);
    const key: SealKey = { id: 'kb', secret: randomBytes(32), peers: ['alpha', 'beta'] };
    const acceptor = new Acceptor(spool, {
      destinations: () => ['beta'], compression: () => 'none', sealingKey: () => key, lifetimeMs: 60_000,
    }, { info() {}, warn() {}, error() {}, debug() {} });
    await acceptor.acceptOnce();
    expect(await readOutbox(spool)).toEqual([]);
    expect(readdirSync(spool.layout.commitsTmp)).toEqual([]);
    await spool.recover(Date.now() + 3600_000 * 24);
    expect(await readOutbox(spool)).toEqual([]); // not committed a second time
    expect(await spool.take('jobs')).toBeNull(); // the job stays taken
  });
});
