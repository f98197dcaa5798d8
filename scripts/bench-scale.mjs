#!/usr/bin/env node
// npm run bench:scale [-- --messages N] [-- --file-gib G] [-- --window S] [-- --json]
//
// Invariant I8 (bounded memory) measured on the real path, two hosts over a private loopback sshd:
//  (1) a backlog: N messages (default 10^6) committed by a maildir producer into outbox/<q>/new/ before the
//      daemons start — the worst case for listing (one file per message). Measures time to the first delivery
//      at the peer, the delivery rate over a window (default 60 s), and both daemons' peak RSS (VmHWM).
//  (2) one file of G GiB (default 4) sent while the daemons run: time until it is in the peer inbox,
//      byte-identical, and both daemons' peak RSS while it is in flight.
import { spawnSync } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd } from '../dist/devtools/private-sshd.js';
import { Cluster } from '../dist/devtools/cluster.js';

const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const json = argv.includes('--json');
const N = opt('--messages', 1_000_000);
const GIB = opt('--file-gib', 4);
const WINDOW_S = opt('--window', 60);
const log = (s = '') => { if (!json) process.stdout.write(`${s}\n`); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hwm = (pid) => { try { return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024; } catch { return 0; } };
const rss = (pid) => { try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024; } catch { return 0; } };
// Visible entries only: a message being published sits in new/ under a hidden `.in-` name (consumers skip dot-names).
const countDir = (dir) => { try { return readdirSync(dir).filter((n) => !n.startsWith('.')).length; } catch { return 0; } };

const work = mkdtempSync(join(tmpdir(), 'ferry-bench-scale-'));
const results = { messages: N, fileGiB: GIB };
let sshd;
let cluster;
const newCluster = async (name) => Cluster.create({ hosts: ['alpha', 'beta'], sshd, dir: join(work, name), logLevel: 'warn' });
try {
  sshd = await startSshd({});

  // ---- (1) backlog ----
  if (N > 0) {
    cluster = await newCluster('backlog');
    const alpha = await cluster.spool('alpha');
    await alpha.outbox.ensureQueue('scale');
    const tmp = alpha.layout.outboxTmp('scale');
    const fresh = alpha.layout.outboxNew('scale');
    log(`(1) committing ${N} messages as maildir files into outbox/scale/new …`);
    let t = performance.now();
    const payload = randomBytes(100);
    for (let i = 0; i < N; i++) {
      const name = `${1_700_000_000 + Math.floor(i / 1000)}.M${String(i % 1000).padStart(6, '0')}P1Q${i}.bench`;
      writeFileSync(join(tmp, name), payload);
      renameSync(join(tmp, name), join(fresh, name));
    }
    log(`    ${((performance.now() - t) / 1000).toFixed(0)} s`);
    const inbox = join(cluster.host('beta').root, 'inbox', 'scale', 'new');
    t = performance.now();
    await cluster.startDaemon('beta');
    await cluster.startDaemon('alpha');
    const pids = { alpha: cluster.host('alpha').daemon.pid, beta: cluster.host('beta').daemon.pid };
    const peak = { alpha: 0, beta: 0 };
    const sample = () => { for (const h of ['alpha', 'beta']) peak[h] = Math.max(peak[h], rss(pids[h])); };
    const timer = setInterval(sample, 100);
    await Cluster.until('first delivery', () => countDir(inbox) > 0, 600_000, 50);
    const firstMs = performance.now() - t;
    const t1 = performance.now();
    const c1 = countDir(inbox);
    let drained = false;
    while (performance.now() - t1 < WINDOW_S * 1000) {
      await sleep(1000);
      if (countDir(inbox) >= N) { drained = true; break; }
    }
    const delivered = countDir(inbox);
    const rate = (delivered - c1) / ((performance.now() - t1) / 1000);
    clearInterval(timer);
    sample();
    results.backlog = {
      firstDeliveryMs: firstMs, windowS: (performance.now() - t1) / 1000, delivered, drained, msgPerSec: rate,
      peakRssMB: { alpha: Math.max(peak.alpha, hwm(pids.alpha)), beta: Math.max(peak.beta, hwm(pids.beta)) },
    };
    log(`    first delivery after ${(firstMs / 1000).toFixed(1)} s; ${delivered} delivered in the window (${Math.round(rate)} msg/s); peak RSS alpha ${Math.round(results.backlog.peakRssMB.alpha)} MB, beta ${Math.round(results.backlog.peakRssMB.beta)} MB`);
    await cluster.stopAll();
    log('    cleaning up …');
    spawnSync('rm', ['-rf', join(work, 'backlog')]); // coreutils: much faster than rmSync on a million files
  }

  // ---- (2) one big file ----
  if (GIB > 0) {
    cluster = await newCluster('bigfile');
    const alpha = await cluster.spool('alpha');
    const src = join(work, 'big.bin');
    log(`(2) writing a ${GIB} GiB file of random bytes …`);
    const hash = createHash('sha256');
    const fd = openSync(src, 'w');
    const block = randomBytes(8 << 20);
    for (let i = 0; i < GIB * 128; i++) {
      block.writeUInt32BE(i, 0); // every block differs
      writeSync(fd, block);
      hash.update(block);
    }
    closeSync(fd);
    const digest = hash.digest('hex');
    await cluster.startDaemon('beta');
    await cluster.startDaemon('alpha');
    const pids = { alpha: cluster.host('alpha').daemon.pid, beta: cluster.host('beta').daemon.pid };
    const base = { alpha: hwm(pids.alpha), beta: hwm(pids.beta) };
    const peak = { alpha: 0, beta: 0 };
    const sample = () => { for (const h of ['alpha', 'beta']) peak[h] = Math.max(peak[h], rss(pids[h])); };
    const timer = setInterval(sample, 100);
    const inbox = join(cluster.host('beta').root, 'inbox', 'big', 'new');
    const t = performance.now();
    await alpha.send('big', createReadStream(src));
    const sentMs = performance.now() - t;
    await Cluster.until('big file delivered', () => countDir(inbox) > 0, 3_600_000, 200);
    const ms = performance.now() - t;
    clearInterval(timer);
    sample();
    const [name] = readdirSync(inbox).filter((n) => !n.startsWith('.'));
    const got = createHash('sha256');
    for await (const chunk of createReadStream(join(inbox, name))) got.update(chunk);
    const identical = got.digest('hex') === digest && statSync(join(inbox, name)).size === GIB * 2 ** 30;
    results.bigFile = {
      ms, sendMs: sentMs, mbps: (GIB * 1024) / (ms / 1000), identical,
      peakRssMB: { alpha: Math.max(peak.alpha, hwm(pids.alpha)), beta: Math.max(peak.beta, hwm(pids.beta)) }, startRssMB: base,
    };
    log(`    ${GIB} GiB: send ${(sentMs / 1000).toFixed(0)} s, in the peer inbox after ${(ms / 1000).toFixed(0)} s (${results.bigFile.mbps.toFixed(1)} MiB/s end to end), byte-identical: ${identical}; peak RSS alpha ${Math.round(results.bigFile.peakRssMB.alpha)} MB, beta ${Math.round(results.bigFile.peakRssMB.beta)} MB`);
    await cluster.stopAll();
    if (!identical) process.exitCode = 1;
  }
  if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
} finally {
  await cluster?.stopAll().catch(() => undefined);
  await sshd?.stop();
  spawnSync('rm', ['-rf', work]);
}
