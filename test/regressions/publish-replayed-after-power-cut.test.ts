// Regression (power loss, I3: found by the power-cut chaos, `--kills 150 --messages 6000 --power-cuts 150 --seed
// 20261207`: beta took and committed alpha-785 and alpha-786, then after a cut of beta took them again): a delivery
// publishes by renaming inbox tmp/<name> into new/ and fsyncs new/, not tmp/. Until the receiver has saved its mark,
// its journal of the round is pending, and a replay of it publishes every tmp/ name still there. A consumer could
// take and commit the message in that window; a power cut then brought tmp/<name> back, and the replay delivered the
// consumed message again.
//
// Now a commit makes the message's way in durable first (tmp/ and new/ fsynced: inbox/move.ts syncWayIn), and a
// replay drops a tmp/ name that is a second link of a message still in the queue.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { spoolChild as child, takeAllAfterReboot, usePowercutSpools } from '../fixtures/powercut-spool.js';

const boot = usePowercutSpools('publish-replay');

/** In a child: delivers m1 and m2 into q, synced, published; prints the items a journal would name. */
const DELIVER = `
  const d = spool.delivery();
  for (const p of ['m1', 'm2']) {
    const w = await d.add({ queue: 'q', origin: 'beta', id: p, headers: {}, committed: Date.now() });
    await w.write(Buffer.from(p)); await w.end();
  }
  await d.prepare(); await d.publish();
  console.log(JSON.stringify(d.items));`;

/** In a child: the receiver's recovery of the still pending journal naming `items`. */
const replay = (items: string) => `
  const { completePublish } = await import('./dist/inbox/delivery.js');
  await completePublish(spool, ${items});`;

/** A fresh spool on the simulator, synced, with m1 and m2 delivered into q; the items its journal would name. */
async function delivered() {
  const booted = await boot();
  await Spool.open(booted.root, { host: 'alpha', create: true });
  await booted.pc.sync();
  const r = child(booted.root, DELIVER);
  expect(r.status, r.stderr).toBe(0);
  return { ...booted, items: r.stdout.trim() };
}

describe('a delivery whose journal is replayed after a power cut', () => {
  for (const how of ['a take and its commit', 'a transaction taking both']) {
    it(`does not deliver again what ${how} consumed before the cut`, async () => {
      const { pc, root, items } = await delivered();
      const consumed = child(root, how.startsWith('a take')
        ? `for (;;) { const m = await spool.take('q'); if (!m) break; await m.commit(); }`
        : `const tx = spool.transaction(); while (await tx.take('q')); await tx.commit();`);
      expect(consumed.status, consumed.stderr).toBe(0);
      await pc.cut();
      await pc.remount();
      const replayed = child(root, replay(items));
      expect(replayed.status, replayed.stderr).toBe(0);
      expect(takeAllAfterReboot(root)).toEqual([]);
      await pc.unmount();
    }, 60_000);
  }

  it('does not deliver a second copy of what is still taken (its lease) or waiting (new/) at the cut', async () => {
    const { pc, root, items } = await delivered();
    const taken = child(root, `const m = await spool.take('q', { leaseMs: 60_000 }); console.log((await m.read()).toString());`);
    expect(taken.stdout.trim()).toBe('m1');
    await pc.cut();
    await pc.remount();
    const replayed = child(root, replay(items));
    expect(replayed.status, replayed.stderr).toBe(0);
    expect(readdirSync(join(root, 'inbox', 'q', 'tmp'))).toEqual([]);
    expect(takeAllAfterReboot(root).sort()).toEqual(['m1', 'm2']);
    await pc.unmount();
  }, 60_000);
});
