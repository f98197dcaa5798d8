// A receiver whose disk fills up: beta's whole spool sits on a 24 MiB tmpfs and alpha sends 40 × 1 MiB. While the disk
// is full nothing is lost — every message is in beta's inbox, or waits in alpha's channel or in beta's landing area —
// nothing is quarantined, and both daemons keep running. Once a consumer takes (and commits) what beta's inbox holds,
// the rest arrives, and in the end every message was delivered exactly once (I2 across a full disk, I3).
//
// Needs root (mount -t tmpfs); the mount is removed in afterEach even when the test fails.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cluster } from '../../src/devtools/cluster.js';
import {
  QUEUE, alive, bundleMessages, channelBacklog, landingBacklog, logLines, logTails, makeCluster, outboxBacklog, payload, readInbox, report, sendAll,
  settle, sleep, tally, useClusterDir, } from '../fixtures/daemon-harness.js';

const tmp = useClusterDir();

const MiB = 1024 * 1024;
const COUNT = 40;
const DISK = '24m';

function mountTmpfs(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK},mode=0700`, 'tmpfs', dir]);
  tmp.cleanup.push(() => {
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]); // something still holds it open: detach it anyway
    }
  });
}

describe('receiver disk full', () => {
  it(`keeps every message while beta's ${DISK} spool is full, and delivers all ${COUNT} × 1 MiB exactly once once a consumer frees it`, async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it as root');
    const betaRoot = join(tmp.path, 'beta', 'spool');
    mountTmpfs(betaRoot);
    const cluster = tmp.track(await makeCluster(tmp.path));
    expect(cluster.host('beta').root).toBe(betaRoot);

    // 1 MiB of incompressible text each, unique by its head.
    const all = Array.from({ length: COUNT }, (_, i) => {
      const head = `d:${i}:`;
      return head + randomBytes(MiB).toString('base64').slice(0, MiB - head.length);
    });
    await sendAll(cluster, 'alpha', all.slice(0, COUNT / 2), 4);
    await Promise.all([cluster.startDaemon('alpha'), cluster.startDaemon('beta')]);
    for (let i = COUNT / 2; i < COUNT; i += 2) {
      await sendAll(cluster, 'alpha', all.slice(i, i + 2), 2);
      await sleep(50);
    }

    // Full: the inbox stops growing short of everything, and a side has reported the disk as full.
    const fullSignal = () =>
      logLines(cluster, 'alpha', /EREMOTE_FULL/).length + logLines(cluster, 'beta', /ENOSPC|no space/i).length;
    let lastCount = -1;
    let since = Date.now();
    await Cluster.until('beta\'s disk to fill up and its inbox to stop growing', () => {
      const n = cluster.inboxNames('beta', QUEUE).length;
      if (n !== lastCount) {
        lastCount = n;
        since = Date.now();
      }
      return fullSignal() > 0 && outboxBacklog(cluster, 'alpha') === 0 && Date.now() - since > 1_500;
    }, 60_000, 50);

    // While full, for a few seconds: nothing lost, nothing doubled, nothing quarantined, daemons up.
    const quarantine = join(betaRoot, 'state', 'quarantine');
    let fullInbox = 0;
    let pendingSeen = 0;
    for (let look = 0; look < 3; look++) {
      // Look in the order messages move (alpha's channel, beta's landing area, beta's inbox): each step removes its
      // copy only once the next holds it, so a message moving meanwhile is counted twice, never missed.
      const onAlpha = channelBacklog(cluster, 'alpha', 'beta');
      const inLanding = landingBacklog(cluster, 'beta');
      const delivered = readInbox(cluster, 'beta');
      const pending = bundleMessages([...new Set([...onAlpha, ...inLanding])]);
      const t = tally(all, delivered);
      fullInbox = delivered.length;
      pendingSeen = pending;
      expect(alive(cluster.host('alpha').daemon) && alive(cluster.host('beta').daemon), 'both daemons keep running').toBe(true);
      expect(t.dup, 'no duplicate while full').toBe(0);
      expect(t.ok, 'the disk is really full: not everything got in').toBeLessThan(COUNT);
      expect(t.ok + pending, `every message is delivered or waiting (delivered ${t.ok}, waiting ${pending})`).toBeGreaterThanOrEqual(COUNT);
      expect(readdirSync(quarantine), 'nothing quarantined').toEqual([]);
      await sleep(1_000);
    }
    const st = statfsSync(betaRoot);
    const freeMiB = (st.bavail * st.bsize) / MiB;

    // A consumer frees the disk: take + commit everything that arrives, until all of it did (or time runs out).
    const consumed: string[] = [];
    const spool = await cluster.spool('beta');
    const t0 = Date.now();
    while (new Set(consumed).size < COUNT && Date.now() - t0 < 75_000) {
      const msg = await spool.take(QUEUE, { waitMs: 500 });
      if (!msg) continue;
      consumed.push((await msg.read()).toString('utf8'));
      await msg.commit();
    }
    await settle(cluster, { timeoutMs: 30_000 });

    const t = tally(all, [...consumed, ...readInbox(cluster, 'beta')]);
    report('disk-full', 0, t, `whileFull: inbox=${fullInbox} waiting=${pendingSeen} free=${freeMiB.toFixed(1)}MiB; consumed=${consumed.length}`);
    expect({ lost: t.lost, dup: t.dup, unknown: t.unknown, lostSample: t.lostSample, dupSample: t.dupSample }, logTails(cluster)).toEqual({
      lost: 0, dup: 0, unknown: 0, lostSample: [], dupSample: [],
    });
    expect(readdirSync(quarantine)).toEqual([]);
    // No space leaked by failed deliveries: nothing left behind in the inbox's tmp/.
    expect(readdirSync(join(betaRoot, 'inbox', QUEUE, 'tmp'))).toEqual([]);
  }, 180_000);

  it('a delivery whose journal cannot be written leaves no files behind in the inbox, and is delivered once later', async () => {
    // The write of the delivery journal (the commit point) fails — as it does with ENOSPC on a full disk, simulated
    // here by putting a plain file where the journal directory is. The messages already written to inbox tmp/ must
    // be thrown away (or they hold the very space a full disk needs, for 36 h), and nothing is delivered twice.
    const cluster = tmp.track(await makeCluster(tmp.path));
    const betaRoot = cluster.host('beta').root;
    const journalDir = join(betaRoot, 'state', 'receive', 'journal');
    const sent = Array.from({ length: 30 }, (_, i) => payload('j', i, 200));
    await sendAll(cluster, 'alpha', sent.slice(0, 10), 5);
    await Promise.all([cluster.startDaemon('alpha'), cluster.startDaemon('beta')]);
    await Cluster.until('the first messages to arrive', () => cluster.inboxNames('beta', QUEUE).length === 10, 30_000);
    rmSync(journalDir, { recursive: true });
    writeFileSync(journalDir, 'not a directory');
    await sendAll(cluster, 'alpha', sent.slice(10), 5);
    await Cluster.until('alpha to upload everything and beta to fail writing a delivery journal twice', () =>
      outboxBacklog(cluster, 'alpha') === 0 && landingBacklog(cluster, 'beta').length > 0 && logLines(cluster, 'beta', /delivering into the inbox failed/).length >= 2, 30_000);
    // Uploaded is not delivered: alpha keeps its copies until beta's receipt covers them.
    expect(channelBacklog(cluster, 'alpha', 'beta').length).toBeGreaterThan(0);
    // Left behind = still there 1.5 s later (a retry in progress has files there too, but fresh names each time).
    const inboxTmp = join(betaRoot, 'inbox', QUEUE, 'tmp');
    const first = readdirSync(inboxTmp);
    await sleep(1_500);
    const leaked = readdirSync(inboxTmp).filter((n) => first.includes(n));
    rmSync(journalDir);
    mkdirSync(journalDir, { mode: 0o700 });
    await settle(cluster);

    const t = tally(sent, readInbox(cluster, 'beta'));
    report('journal-write-fails', 0, t, `inboxTmpWhileFailing=${leaked.length}`);
    expect({ lost: t.lost, dup: t.dup, unknown: t.unknown }, logTails(cluster)).toEqual({ lost: 0, dup: 0, unknown: 0 });
    expect(leaked, 'failed deliveries leave nothing in inbox tmp/').toEqual([]);
    expect(readdirSync(join(betaRoot, 'inbox', QUEUE, 'tmp'))).toEqual([]);
  }, 90_000);
});
