// Honest traffic for hostile-peer tests: known payloads sent through the library, then taken and checked — none lost, duplicated, reordered or forged.
import { expect } from 'vitest';
import type { Cluster } from '../../src/devtools/cluster.js';

/** Sends `n` messages `<tag>-<i>` from `from` to `queue` (routed by the cluster), one send each; returns the payloads in commit order. */
export async function sendHonest(cluster: Cluster, from: string, queue: string, n: number, tag = `${from}-${queue}`): Promise<string[]> {
  const spool = await cluster.spool(from);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = `${tag}-${i}`;
    await spool.send(queue, p);
    out.push(p);
  }
  return out;
}

/**
 * Waits until `to`'s inbox queue holds `expected.length` messages (or the timeout), takes every message there, and
 * asserts they are exactly `expected`, in that order, each from `origin`: nothing lost, duplicated, reordered or forged.
 */
export async function expectExactly(cluster: Cluster, to: string, queue: string, expected: readonly string[], origin: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs && cluster.inboxNames(to, queue).length < expected.length) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300)); // anything more that was on its way (a duplicate) has arrived too
  const spool = await cluster.spool(to);
  const got: Array<{ payload: string; origin: string }> = [];
  for (;;) {
    const m = await spool.take(queue);
    if (m === null) break;
    got.push({ payload: (await m.read()).toString(), origin: m.origin });
    await m.commit();
  }
  expect(got.map((g) => g.payload), `what ${to}'s ${queue} holds`).toEqual([...expected]);
  expect(new Set(got.map((g) => g.origin)), `origins in ${to}'s ${queue}`).toEqual(new Set(expected.length > 0 ? [origin] : []));
}
