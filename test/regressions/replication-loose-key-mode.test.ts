// Regression: a pair key file that group or others can read is refused, like ssh refuses a loose private key — even
// when it loosens while the daemon runs. While beta holds no usable alpha–beta key nothing from alpha is delivered:
// bundles that arrive meanwhile wait in alpha's landing directory, reported as EKEY_UNKNOWN, and alpha keeps its
// copies (no receipt covers them). Once the file is 0600 again the key reloads by itself (no restart, no signal) and
// they are delivered — exactly once, in order, before the later messages — so a late or fixed key loses nothing (I2).

import { chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  daemonAlive, daemonLogLines, inboxFiles, landingNames, quarantined, sleep, startDaemons, statusJson, takeAll, until,
  useClusters, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

describe('a pair key file chmod 0644 on the receiver', () => {
  it('is refused with EKEYPERM, nothing is delivered meanwhile, and after chmod 0600 every message is delivered once', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const keyDir = cluster.host('beta').keys;
    const [keyFile] = readdirSync(keyDir).filter((n) => n.endsWith('.key'));
    const keyPath = join(keyDir, keyFile as string);

    chmodSync(keyPath, 0o644);
    await until('beta refuses its loose key file', () => daemonLogLines(cluster, 'beta').some((l) => l.code === 'EKEYPERM' && l.path === keyPath), 15_000);
    const refusedAt = daemonLogLines(cluster, 'beta').length;

    const alpha = await cluster.spool('alpha');
    const early = [await alpha.send('q', 'early-1'), await alpha.send('q', 'early-2'), await alpha.send('q', 'early-3')];
    await until('beta reports alpha\'s bundles waiting for a usable key', async () => {
      const l = (await statusJson(cluster, 'beta')).landing.find((x) => x.peer === 'alpha');
      return l?.blocked?.code === 'EKEY_UNKNOWN' && l.waiting >= 1;
    });
    // Published, never proven delivered: alpha keeps every one of them.
    const peer = (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta');
    expect(peer?.backlog).toBe(early.length);
    expect(peer?.published).toBeGreaterThanOrEqual(1);
    expect(inboxFiles(cluster, 'beta', 'q')).toEqual([]);
    expect((await statusJson(cluster, 'beta')).quarantine).toBe(0);
    expect(daemonAlive(cluster, 'beta')).toBe(true);

    chmodSync(keyPath, 0o600);
    await until('beta reloads the key by itself', () => daemonLogLines(cluster, 'beta').slice(refusedAt).some((l) => l.msg === 'keys loaded' && l.keys === 1), 15_000);
    const late = [await alpha.send('q', 'late-1'), await alpha.send('q', 'late-2')];
    await until('every message delivered', () => cluster.inboxNames('beta', 'q').length === early.length + late.length, 30_000);
    await sleep(300);
    const got = await takeAll(await cluster.spool('beta'), 'q');
    expect(got.map((m) => m.id)).toEqual([...early, ...late]);
    // Nothing was quarantined, nothing came twice, and alpha forgets them only now that a receipt covers them.
    expect(quarantined(cluster, 'beta')).toEqual([]);
    expect(cluster.inboxNames('beta', 'q')).toEqual([]);
    await until('alpha\'s backlog proven delivered', async () => (await statusJson(cluster, 'alpha')).peers.find((p) => p.peer === 'beta')?.backlog === 0);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
  });
});
