// Chaos producer: commits transactions of 1–4 messages in a loop, logging each attempt before and each commit after.
// argv: root host queue logFile startSeq seed
import { appendFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { Spool } from '../../dist/spool/spool.js'; // just the spool: children start faster without the daemon's modules

const [root, host, queue, logFile, startSeq, seedArg] = process.argv.slice(2);
let seq = Number(startSeq);
let seed = Number(seedArg) >>> 0;
const rand = () => { seed = (seed + 0x6d2b79f5) >>> 0; let t = seed; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const fd = openSync(logFile, 'a');
const log = (line) => { appendFileSync(fd, `${line}\n`); };
const spool = await Spool.open(root, { host });
const limit = Number(process.env.CHAOS_LIMIT ?? Infinity);
while (seq < limit) {
  const n = 1 + Math.floor(rand() * 4);
  const ids = [];
  for (let i = 0; i < n && seq < limit; i++) ids.push(`${host}-${seq++}`);
  log(`attempt ${ids.join(' ')}`);
  fsyncSync(fd);
  const tx = spool.transaction();
  for (const id of ids) await tx.send(queue, JSON.stringify({ id, pad: 'x'.repeat(Math.floor(rand() * 2000)) }), { headers: { chaos: id } });
  await tx.commit();
  log(`ok ${ids.join(' ')}`);
  const pace = Number(process.env.CHAOS_PACE_MS ?? 0);
  if (pace > 0) await new Promise((r) => setTimeout(r, Math.floor(rand() * 2 * pace)));
  else if (rand() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(rand() * 20)));
}
closeSync(fd);
