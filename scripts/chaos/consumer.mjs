// Chaos consumer: takes from inbox queues, aborts ~10% of takes, commits the rest; logs open (before reading),
// take, commit, and `lost` when a commit was refused because the lease had been returned (ELEASE_LOST).
// argv: root host logFile seed queue...
import { appendFileSync, openSync, fsyncSync } from 'node:fs';
import { basename } from 'node:path';
import { Spool } from '../../dist/spool/spool.js'; // just the spool: children start faster without the daemon's modules

const [root, host, logFile, seedArg, ...queues] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0;
const rand = () => { seed = (seed + 0x6d2b79f5) >>> 0; let t = seed; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const fd = openSync(logFile, 'a');
const log = (line) => { appendFileSync(fd, `${line}\n`); fsyncSync(fd); };
const spool = await Spool.open(root, { host, leaseMs: 2000, maxAttempts: 1000 });
for (;;) {
  let took = false;
  for (const q of queues) {
    const m = await spool.take(q, { leaseMs: 2000 });
    if (!m) continue;
    took = true;
    // A lease can be lost at any step: the other consumer's clock may run hours ahead of ours.
    // `open` is logged BEFORE the payload is opened: the checker orders this take's read by it. The take line
    // comes after the read (the id is in the payload), so it may follow another take's commit that the read
    // preceded (this lease lost to that take meanwhile); `open` cannot. See history.mjs.
    const leaseFile = basename(m.path);
    log(`open ${q} ${leaseFile}`);
    try {
      const { id } = JSON.parse((await m.read()).toString('utf8'));
      log(`take ${q} ${id} ${m.name} ${leaseFile}`);
      // Sometimes hold the message a while, so a take can outlive its lease by another's clock.
      if (rand() < 0.2) await new Promise((r) => setTimeout(r, Math.floor(rand() * 100)));
      if (rand() < 0.1) {
        await m.abort('chaos abort');
        log(`abort ${q} ${id}`);
      } else {
        try {
          await m.commit();
        } catch (err) {
          if (err?.code !== 'ELEASE_LOST') throw err;
          log(`lost ${q} ${id}`); // refused: someone else returned it; not a commit
          continue;
        }
        log(`commit ${q} ${id}`);
      }
    } catch (err) {
      if (err?.code !== 'ELEASE_LOST') throw err;
    }
  }
  if (!took) await new Promise((r) => setTimeout(r, 50));
}
