// Regression (trust boundary, attack 5): after 8 re-provisionings of a sender (each a new epoch; the receiver kept 8
// per origin) a captured old bundle was delivered a second time; and a missing dedupe.json counted as "nothing
// delivered", so a captured current bundle was delivered twice.
//
// Now epochs are numbered and only grow: every epoch below the current one is closed without being remembered, so
// any number of re-provisionings cannot reopen one. And a receiver whose state went missing notices it, from the
// receipt it last wrote (it sits in the peer's landing directory, sealed by the receiver): the channel stops with
// EDEDUPE_ROLLBACK instead of delivering the replay, until an operator runs `ferry receive resync`.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ferry, landingNames, plant, quarantined, startDaemon, startDaemons, statusJson, until, useClusters, waitQuarantined } from '../e2e/fixtures.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();

/** Starts alpha, sends `payload`, and captures the sealed bundle alpha published in beta's landing directory (beta is down). */
async function capture(cluster: Parameters<typeof landingNames>[0], payload: string): Promise<{ name: string; bytes: Buffer }> {
  await (await cluster.spool('alpha')).send('q', payload);
  const published = () => landingNames(cluster, 'beta', 'alpha').filter((n) => !n.endsWith('.part'));
  await until('alpha published', () => published().length === 1);
  const name = published()[0] as string;
  return { name, bytes: readFileSync(join(cluster.host('beta').root, 'landing', 'alpha', name)) };
}

describe('replays across re-provisionings and a lost receive state', () => {
  it('a bundle of the first epoch replayed after nine re-provisionings of the sender is refused as EEPOCH_CLOSED', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemon(cluster, 'alpha');
    const old = await capture(cluster, 'epoch-0');
    await startDaemon(cluster, 'beta');
    const delivered = ['epoch-0'];
    await expectExactly(cluster, 'beta', 'q', delivered, 'alpha');
    for (let i = 1; i <= 9; i++) {
      // Re-provisioned: alpha's channel state is gone, so its daemon starts a new epoch.
      await cluster.stopDaemon('alpha');
      rmSync(join(cluster.host('alpha').root, 'state', 'channels', 'beta'), { recursive: true, force: true });
      await startDaemon(cluster, 'alpha');
      await (await cluster.spool('alpha')).send('q', `epoch-${i}`);
      await expectExactly(cluster, 'beta', 'q', [`epoch-${i}`], 'alpha');
    }
    await plant(cluster, 'beta', old.name, old.bytes);
    const q = await waitQuarantined(cluster, 'beta', old.name);
    expect(q.code).toBe('EEPOCH_CLOSED');
    await expectExactly(cluster, 'beta', 'q', [], 'alpha');
    // Genuine traffic goes on.
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 3, 'after'), 'alpha');
  });

  it('with its receive state gone, the receiver stops the channel (EDEDUPE_ROLLBACK) instead of delivering a replay, and resync clears it', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemon(cluster, 'alpha');
    const first = await capture(cluster, 'first'); // the epoch's first bundle: it carries no acked mark
    await startDaemon(cluster, 'beta');
    await expectExactly(cluster, 'beta', 'q', ['first'], 'alpha');
    await until('beta\'s receipt covers it', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);

    // The receive state is lost (a restore from an old backup, a careless rm): instance, records, id window.
    await cluster.stopDaemon('beta');
    rmSync(join(cluster.host('beta').root, 'state', 'receive'), { recursive: true, force: true });
    await startDaemon(cluster, 'beta');
    await plant(cluster, 'beta', first.name, first.bytes);
    await until('beta reports the channel stopped', async () => (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha')?.blocked?.code === 'EDEDUPE_ROLLBACK');
    // New messages wait too: nothing from alpha is delivered while beta cannot tell what it delivered.
    const later = await sendHonest(cluster, 'alpha', 'q', 2, 'later');
    await new Promise((r) => setTimeout(r, 1500));
    expect(cluster.inboxNames('beta', 'q')).toEqual([]);

    // The operator looks, then takes alpha's word for what was delivered: the replay is dropped, the rest flows.
    const r = await ferry(cluster, 'beta', ['receive', 'resync', 'alpha']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cleared EDEDUPE_ROLLBACK/);
    await expectExactly(cluster, 'beta', 'q', later, 'alpha');
    await until('the replay gone from the landing directory', () => landingNames(cluster, 'beta', 'alpha').length === 0);
    expect(quarantined(cluster, 'beta').map((x) => x.code).filter((c) => c !== 'EENVELOPE_REPLAY' && c !== 'EEPOCH_CLOSED')).toEqual([]);
  });

  it('a receiver whose state rolled back to an older copy stops the channel when the sender proves more was delivered', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 2, 'a'), 'alpha');
    await cluster.stopDaemon('beta');
    const records = join(cluster.host('beta').root, 'state', 'receive', 'origins', 'alpha.json');
    const snapshot = readFileSync(records);
    await startDaemon(cluster, 'beta');
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 3, 'b'), 'alpha');
    await until('alpha proved the second batch delivered', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);
    await cluster.stopDaemon('beta');
    // Only the record goes back (a partial restore); the receipt in alpha's directory still says 5.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(records, snapshot);
    await startDaemon(cluster, 'beta');
    const more = await sendHonest(cluster, 'alpha', 'q', 1, 'c');
    await until('beta reports the rollback', async () => (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha')?.blocked?.code === 'EDEDUPE_ROLLBACK');
    expect(cluster.inboxNames('beta', 'q')).toEqual([]);
    const r = await ferry(cluster, 'beta', ['receive', 'resync', 'alpha']);
    expect(r.code, r.stderr).toBe(0);
    await expectExactly(cluster, 'beta', 'q', more, 'alpha');
  });
});
