// Regression: a pair key file that group or others can read is refused, like ssh refuses a loose private key — even
// when it loosens while the daemon runs. While beta holds no usable alpha–beta key nothing from alpha is delivered;
// bundles that arrive meanwhile are quarantined and reported; once the file is 0600 again the key reloads by itself
// (no restart, no signal), the quarantined bundles go back to the landing area and are delivered — exactly once,
// in order, before the later messages — so a late or fixed key deployment loses nothing (I2).

import { chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBundleName } from '../../src/envelope/bundle-name.js';
import {
  daemonAlive, daemonLogLines, inboxFiles, landingNames, quarantined, sleep, startDaemons, statusJson, takeAll, until,
  useClusters, usePrivateSshd,
} from '../e2e/fixtures.js';

const sshd = usePrivateSshd();
const makeCluster = useClusters();

describe('a pair key file chmod 0644 on the receiver', () => {
  it('is refused with EKEYPERM, nothing is delivered meanwhile, and after chmod 0600 every message is delivered once', async () => {
    const cluster = await makeCluster(sshd(), { hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const keyDir = cluster.host('beta').keys;
    const [keyFile] = readdirSync(keyDir).filter((n) => n.endsWith('.key'));
    const keyPath = join(keyDir, keyFile as string);

    chmodSync(keyPath, 0o644);
    await until('beta refuses its loose key file', () => daemonLogLines(cluster, 'beta').some((l) => l.code === 'EKEYPERM' && l.path === keyPath), 15_000);
    const refusedAt = daemonLogLines(cluster, 'beta').length;

    const alpha = await cluster.spool('alpha');
    const early = [await alpha.send('q', 'early-1'), await alpha.send('q', 'early-2'), await alpha.send('q', 'early-3')];
    await until('alpha shipped the early messages', async () => {
      const peer = (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta');
      return peer?.backlog === 0 && peer.lastSuccess !== null;
    });
    // beta cannot open them: each such bundle is quarantined with a reason, none waits half-done, none is delivered.
    await until('beta dealt with every early bundle', () => {
      const count = quarantined(cluster, 'beta').reduce((n, q) => n + (parseBundleName(q.landing)?.count ?? 0), 0);
      return count === early.length && landingNames(cluster, 'beta').length === 0;
    });
    const held = quarantined(cluster, 'beta');
    expect(held.map((q) => q.code)).toEqual(held.map(() => 'EKEY_UNKNOWN'));
    expect(inboxFiles(cluster, 'beta', 'q')).toEqual([]);
    expect((await statusJson(cluster, 'beta')).quarantine).toBe(held.length);
    expect(daemonAlive(cluster, 'beta')).toBe(true);

    chmodSync(keyPath, 0o600);
    await until('beta reloads the key by itself', () => daemonLogLines(cluster, 'beta').slice(refusedAt).some((l) => l.msg === 'keys loaded' && l.keys === 1), 15_000);
    const late = [await alpha.send('q', 'late-1'), await alpha.send('q', 'late-2')];
    await until('every message delivered', () => cluster.inboxNames('beta', 'q').length === early.length + late.length, 30_000);
    await sleep(300);
    const got = await takeAll(await cluster.spool('beta'), 'q');
    expect(got.map((m) => m.id)).toEqual([...early, ...late]);
    // Quarantine kept them only while the key was unusable; nothing is left there, nothing came twice.
    expect(quarantined(cluster, 'beta')).toEqual([]);
    expect(cluster.inboxNames('beta', 'q')).toEqual([]);
  });
});
