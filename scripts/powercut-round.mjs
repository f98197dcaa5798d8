#!/usr/bin/env node
// npm run powercut:round -- [--scenarios single,multi,large,ctp] [--hosts alpha,beta] [--stride N] [--reorder N] [--seed S] [--work DIR]
//
// The exhaustive power-cut round (src/devtools/powercut-round.ts): for each scenario and each host, one reference
// round counts the operations the host's file system sees, then the round is run again with the power cut after
// operation 1, 2, … every one of them (--stride N: every Nth), in strict mode (only what was made durable survives);
// --reorder N adds N cases per scenario and host in reorder mode (durable writes survive, the rest each by a coin
// from the seed: what a disk's cache may keep). Each case reboots, recovers, finishes the round and checks: nothing
// lost, duplicated, reordered, corrupted, half-delivered, stuck, quarantined or dead-lettered. Prints one line per
// failing case and a table; exit 1 when any case failed. Needs root and the simulator (npm run powercut:setup).
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { prepareRoundBench, runRoundCase, ROUND_SCENARIOS } from '../dist/devtools/powercut-round.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) {
    console.error(`powercut:round: --${name} needs a value, e.g. \`npm run powercut:round -- --${name} ${fallback}\``);
    process.exit(2);
  }
  return v;
}

const scenarios = arg('scenarios', ROUND_SCENARIOS.join(',')).split(',');
const hosts = arg('hosts', 'alpha,beta').split(',');
const stride = Number(arg('stride', '1'));
const reorder = Number(arg('reorder', '0'));
const seed = Number(arg('seed', String(Date.now() % 100_000)));
for (const s of scenarios) if (!ROUND_SCENARIOS.includes(s)) { console.error(`powercut:round: unknown scenario ${s}; the scenarios are ${ROUND_SCENARIOS.join(', ')}`); process.exit(2); }
for (const h of hosts) if (h !== 'alpha' && h !== 'beta') { console.error(`powercut:round: unknown host ${h}; the hosts are alpha, beta`); process.exit(2); }
if (!(stride >= 1) || !(reorder >= 0)) { console.error('powercut:round: --stride must be 1 or more and --reorder 0 or more'); process.exit(2); }

const work = arg('work', undefined) ?? mkdtempSync(join('/dev/shm', 'ferry-pcr-'));
const bench = await prepareRoundBench(work);
const t0 = Date.now();
const rows = [];
let failed = 0;
let cases = 0;
for (const scenario of scenarios) {
  for (const host of hosts) {
    const ref = await runRoundCase(bench, { scenario, host });
    const row = { scenario, host, ops: ref.ops, strict: 0, reorder: 0, failed: 0, dropped: 0 };
    rows.push(row);
    const report = (o, what) => {
      cases += 1;
      row.dropped += o.dropped;
      if (o.problems.length > 0) {
        failed += 1;
        row.failed += 1;
        console.log(`FAIL ${scenario} ${host} ${what}: ${o.problems.join(' | ').slice(0, 1500)}`);
      }
    };
    report(ref, 'cut after the round');
    for (let i = 1; i <= ref.ops; i += stride) {
      report(await runRoundCase(bench, { scenario, host, cutAfter: i }), `cut after operation ${i}`);
      row.strict += 1;
    }
    for (let j = 0; j < reorder; j++) {
      const cutAfter = 1 + ((seed + j * 7919) % Math.max(1, ref.ops));
      report(await runRoundCase(bench, { scenario, host, cutAfter, mode: 'reorder', seed: seed + j }), `reorder seed ${seed + j} cut after operation ${cutAfter}`);
      row.reorder += 1;
    }
    console.log(`${scenario.padEnd(6)} ${host.padEnd(5)} ops ${String(row.ops).padStart(4)}  strict cases ${String(row.strict).padStart(4)}  reorder cases ${String(row.reorder).padStart(3)}  changes dropped ${String(row.dropped).padStart(5)}  failed ${row.failed}`);
  }
}
if (arg('work', undefined) === undefined) rmSync(work, { recursive: true, force: true });
console.log(`powercut:round: ${cases} cases, ${failed} failed, lost/duplicated/reordered/corrupted as listed above; ${((Date.now() - t0) / 1000).toFixed(0)} s (seed ${seed})`);
process.exit(failed > 0 ? 1 : 0);
