#!/usr/bin/env node
// npm run bench [-- --json] [-- --quick]: ferry against rsync-over-ssh and sftp, same sshd, same data, same run.
//
// Workloads (the performance issue's list):
//  (a) 10 000 × 1 KiB messages committed before the daemons start → time until all are in the peer inbox;
//      anchors: `rsync -a` (and `rsync -a --fsync`) and `sftp -b` put of the same 10 000 files.
//  (b) 8 × 128 MiB files → same three.
//  (c) latency: 200 single messages to idle daemons, commit → peer inbox, p50/p99.
//  (d) `send` latency of 1 KiB (p50/p99) and throughput of 100-message transactions.
//  (e) daemon peak RSS (VmHWM) over the run.
// Everything runs against one private sshd on 127.0.0.1; ferry's path is the real one (daemons
// as child processes, SFTP, sealing, fsyncs on both sides).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readdirSync, rmSync, readFileSync, createReadStream, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSshd } from '../dist/devtools/private-sshd.js';
import { Cluster } from '../dist/devtools/cluster.js';

const args = new Set(process.argv.slice(2));
const json = args.has('--json');
const quick = args.has('--quick');
const SMALL_N = quick ? 2000 : 10_000;
const BIG_N = quick ? 2 : 8;
const BIG_MIB = quick ? 32 : 128;
const LAT_N = quick ? 50 : 200;
const log = (s = '') => { if (!json) process.stdout.write(`${s}\n`); };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
// Visible entries only: a message being published sits in new/ under a hidden `.in-` name (consumers skip dot-names).
const countDir = (dir) => { try { return readdirSync(dir).filter((n) => !n.startsWith('.')).length; } catch { return 0; } };
function vmHwm(pid) {
  try { return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024; } catch { return 0; }
}

const work = mkdtempSync(join(tmpdir(), 'ferry-bench-'));
const results = { machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, quick };
let sshd;
let cluster;
try {
  sshd = await startSshd({});
  const ssh = `ssh -p ${sshd.port} -i ${sshd.identityPath} -o UserKnownHostsFile=${sshd.knownHostsPath} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
  const remote = `${sshd.user}@127.0.0.1`;
  const sftpArgs = ['-b', '-', '-P', String(sshd.port), '-i', sshd.identityPath, '-o', `UserKnownHostsFile=${sshd.knownHostsPath}`, '-o', 'BatchMode=yes', remote];
  const timeIt = (fn) => { const t = process.hrtime.bigint(); fn(); return Number(process.hrtime.bigint() - t) / 1e6; };
  const syncAll = () => execFileSync('sync');

  // ---- data ----
  const smallDir = join(work, 'data', 'small');
  mkdirSync(smallDir, { recursive: true });
  for (let i = 0; i < SMALL_N; i++) writeFileSync(join(smallDir, `m${String(i).padStart(6, '0')}`), randomBytes(1024));
  const bigDir = join(work, 'data', 'big');
  mkdirSync(bigDir, { recursive: true });
  for (let i = 0; i < BIG_N; i++) {
    const fd = openSync(join(bigDir, `f${i}`), 'w');
    for (let m = 0; m < BIG_MIB; m++) writeSync(fd, randomBytes(1024 * 1024));
    closeSync(fd);
  }
  syncAll();

  const anchors = (label, srcDir, count, bytes) => {
    const out = {};
    for (const [name, argv] of [
      ['rsync', ['-a', '-e', ssh, `${srcDir}/`, `${remote}:${join(work, `rsync-${label}`)}/`]],
      ['rsync --fsync', ['-a', '--fsync', '-e', ssh, `${srcDir}/`, `${remote}:${join(work, `rsyncf-${label}`)}/`]],
    ]) {
      syncAll();
      const ms = timeIt(() => execFileSync('rsync', argv, { stdio: 'ignore' }));
      out[name] = { ms, perSec: count / (ms / 1000), mbps: bytes / 2 ** 20 / (ms / 1000) };
    }
    const dest = join(work, `sftp-${label}`);
    mkdirSync(dest);
    syncAll();
    const ms = timeIt(() => {
      const r = spawnSync('sftp', sftpArgs, { input: `put -r ${srcDir}/. ${dest}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
      if (r.status !== 0) throw new Error(`sftp failed: ${r.stderr}`);
    });
    out.sftp = { ms, perSec: count / (ms / 1000), mbps: bytes / 2 ** 20 / (ms / 1000) };
    return out;
  };

  // ---- ferry cluster ----
  cluster = await Cluster.create({ hosts: ['alpha', 'beta'], sshd, dir: join(work, 'ferry'), logLevel: 'warn' });
  const alpha = await cluster.spool('alpha');
  const betaInbox = (q) => countDir(join(cluster.host('beta').root, 'inbox', q, 'new'));
  let peakRss = { alpha: 0, beta: 0 };
  const sampleRss = () => {
    for (const h of ['alpha', 'beta']) {
      const pid = cluster.host(h).daemon?.pid;
      if (pid) peakRss[h] = Math.max(peakRss[h], vmHwm(pid));
    }
  };

  // (a) small messages
  log(`(a) ${SMALL_N} × 1 KiB messages`);
  const smallFiles = readdirSync(smallDir).sort();
  for (let i = 0; i < smallFiles.length; i += 100) {
    const tx = alpha.transaction();
    for (const f of smallFiles.slice(i, i + 100)) await tx.send('small', readFileSync(join(smallDir, f)));
    await tx.commit();
  }
  syncAll();
  let t0 = performance.now();
  // Two hosts start their daemons independently: in parallel, as they would.
  await Promise.all([cluster.startDaemon('alpha'), cluster.startDaemon('beta')]);
  await Cluster.until('small messages delivered', () => betaInbox('small') >= SMALL_N, 600_000, 20);
  const ferrySmallMs = performance.now() - t0;
  sampleRss();
  const a = { ferry: { ms: ferrySmallMs, perSec: SMALL_N / (ferrySmallMs / 1000) }, ...anchors('small', smallDir, SMALL_N, SMALL_N * 1024) };
  results.small = a;

  // (b) big files
  log(`(b) ${BIG_N} × ${BIG_MIB} MiB files`);
  const bigBytes = BIG_N * BIG_MIB * 2 ** 20;
  t0 = performance.now();
  for (const f of readdirSync(bigDir)) await alpha.send('big', createReadStream(join(bigDir, f)));
  const rssTimer = setInterval(sampleRss, 100);
  await Cluster.until('big files delivered', () => betaInbox('big') >= BIG_N, 900_000, 50);
  const ferryBigMs = performance.now() - t0;
  clearInterval(rssTimer);
  sampleRss();
  results.big = { ferry: { ms: ferryBigMs, mbps: bigBytes / 2 ** 20 / (ferryBigMs / 1000) }, ...anchors('big', bigDir, BIG_N, bigBytes) };

  // (c) latency, idle daemons
  log(`(c) latency of ${LAT_N} single messages`);
  await sleep(500);
  const lat = [];
  for (let i = 0; i < LAT_N; i++) {
    const before = betaInbox('lat');
    const t = performance.now();
    await alpha.send('lat', randomBytes(1024));
    await Cluster.until('latency message', () => betaInbox('lat') > before, 30_000, 1);
    lat.push(performance.now() - t);
    await sleep(20);
  }
  results.latency = { p50: pct(lat, 50), p99: pct(lat, 99), n: LAT_N };

  // (d) send latency and transaction throughput (daemons stopped: measures the producer alone)
  log('(d) send latency and transaction throughput');
  await cluster.stopAll();
  const sendLat = [];
  const payload = randomBytes(1024);
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await alpha.send('sendlat', payload);
    sendLat.push(performance.now() - t);
  }
  const TX_MSGS = quick ? 5000 : 20_000;
  t0 = performance.now();
  for (let i = 0; i < TX_MSGS; i += 100) {
    const tx = alpha.transaction();
    for (let j = 0; j < 100; j++) await tx.send('txn', payload);
    await tx.commit();
  }
  const txMs = performance.now() - t0;
  results.send = { p50: pct(sendLat, 50), p99: pct(sendLat, 99), txnMsgPerSec: TX_MSGS / (txMs / 1000) };
  results.rss = { alphaPeakMB: peakRss.alpha / 2 ** 20, betaPeakMB: peakRss.beta / 2 ** 20 };

  // ---- report ----
  const f1 = (x) => x.toFixed(1);
  const f0 = (x) => Math.round(x).toString();
  log('');
  log(`machine: ${results.machine.cpus} cores, ${results.machine.memGiB} GiB, node ${results.machine.node}${quick ? '  (--quick sizes)' : ''}`);
  log('');
  log(`(a) ${SMALL_N} × 1 KiB            time        msg/s     ferry ÷ anchor (msg/s)`);
  for (const [name, r] of Object.entries(a)) log(`    ${name.padEnd(16)} ${f0(r.ms).padStart(8)} ms ${f0(r.perSec).padStart(9)}   ${name === 'ferry' ? '' : `${f1(a.ferry.perSec / r.perSec)}×`}`);
  const b = results.big;
  log(`(b) ${BIG_N} × ${BIG_MIB} MiB             time        MiB/s     ferry ÷ anchor (MiB/s)`);
  for (const [name, r] of Object.entries(b)) log(`    ${name.padEnd(16)} ${f0(r.ms).padStart(8)} ms ${f1(r.mbps).padStart(9)}   ${name === 'ferry' ? '' : `${f1(b.ferry.mbps / r.mbps)}×`}`);
  log(`(c) commit → peer inbox, idle:   p50 ${f1(results.latency.p50)} ms   p99 ${f1(results.latency.p99)} ms   (n=${LAT_N})`);
  log(`(d) send 1 KiB:                  p50 ${results.send.p50.toFixed(2)} ms   p99 ${results.send.p99.toFixed(2)} ms;   100-message transactions: ${f0(results.send.txnMsgPerSec)} msg/s`);
  log(`(e) daemon peak RSS:             alpha ${f0(results.rss.alphaPeakMB)} MB   beta ${f0(results.rss.betaPeakMB)} MB`);
  results.ratios = {
    smallVsRsync: a.ferry.perSec / a.rsync.perSec,
    smallVsRsyncFsync: a.ferry.perSec / a['rsync --fsync'].perSec,
    smallVsSftp: a.ferry.perSec / a.sftp.perSec,
    bigVsRsync: b.ferry.mbps / b.rsync.mbps,
    bigVsSftp: b.ferry.mbps / b.sftp.mbps,
  };
  if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
} finally {
  await cluster?.stopAll().catch(() => undefined);
  await sshd?.stop();
  rmSync(work, { recursive: true, force: true });
}
