// Regression: a bundle cut short (an interrupted copy, a full disk, an attacker dropping its tail) is never delivered,
// in part or in whole: it is quarantined — EENVELOPE_MAC for a one-piece secretbox, EENVELOPE_TRUNCATED for a stream.
// For a stream this matters most when the cut falls exactly on a chunk boundary: every chunk left verifies, and only
// the missing FINAL chunk tells the bundle is short.

import { describe, expect, it } from 'vitest';
import {
  bundleName, daemonAlive, expectStillDelivers, inboxFiles, landingNames, pairKey, plant, randomEpoch, sealBundle,
  startDaemons, until, useClusters, waitQuarantined, } from '../e2e/fixtures.js';

const makeCluster = useClusters();

/** Offsets where each secretstream chunk starts (wire format v1: prefix of 31 + key id bytes, then u32 length ‖ chunk). */
function chunkOffsets(sealed: Buffer): number[] {
  const keyIdLen = sealed[6] as number;
  const offsets: number[] = [];
  for (let at = 31 + keyIdLen; at < sealed.length; at += 4 + sealed.readUInt32BE(at)) offsets.push(at);
  return offsets;
}

describe('a sealed bundle cut short', () => {
  it('is quarantined as EENVELOPE_MAC when a small (secretbox) bundle loses its second half', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const epoch = randomEpoch();
    const name = bundleName(1, 2, epoch);
    const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [
      { queue: 'ledger', id: 'cut-1', payload: Buffer.alloc(3000, 1) },
      { queue: 'ledger', id: 'cut-2', payload: Buffer.alloc(3000, 2) },
    ]);
    await plant(cluster, 'beta', name, sealed.subarray(0, Math.floor(sealed.length / 2)));

    // A secretbox runs to the end of the file with its MAC in front: a short one fails authentication as a whole.
    const q = await waitQuarantined(cluster, 'beta', name);
    expect(q.code).toBe('EENVELOPE_MAC');
    expect(inboxFiles(cluster, 'beta', 'ledger')).toEqual([]);
    expect(landingNames(cluster, 'beta', 'alpha')).toEqual([]);
    expect(daemonAlive(cluster, 'beta')).toBe(true);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });

  it('is quarantined as EENVELOPE_TRUNCATED when a streamed bundle is cut mid-chunk or exactly before its FINAL chunk', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const key = await pairKey(cluster, 'alpha', 'alpha', 'beta');
    const cuts: { name: string; why: string }[] = [];
    for (const how of ['mid-chunk', 'chunk-boundary'] as const) {
      const epoch = randomEpoch();
      const name = bundleName(1, 3, epoch);
      const sealed = await sealBundle(key, { origin: 'alpha', destination: 'beta', channel: epoch, firstSeq: 1 }, [1, 2, 3].map((i) => ({
        queue: 'ledger', id: `${how}-${i}`, payload: Buffer.alloc(500 * 1024, i),
      })));
      expect(sealed[5]).toBe(2); // secretstream
      const offsets = chunkOffsets(sealed);
      expect(offsets.length).toBeGreaterThan(20);
      const last = offsets[offsets.length - 1] as number;
      // Every message but the last sits in the chunks that remain: they verify and reach the inbox's tmp/.
      const cut = how === 'chunk-boundary' ? last : last - 1000;
      await plant(cluster, 'beta', name, sealed.subarray(0, cut));
      cuts.push({ name, why: how });
    }
    for (const { name, why } of cuts) {
      const q = await waitQuarantined(cluster, 'beta', name);
      expect({ why, code: q.code }).toEqual({ why, code: 'EENVELOPE_TRUNCATED' });
    }
    expect(inboxFiles(cluster, 'beta', 'ledger')).toEqual([]);
    // The landing entry goes right after its reason file is written: wait for it, not race it.
    await until('the refused bundles left landing', () => landingNames(cluster, 'beta', 'alpha').length === 0);
    await expectStillDelivers(cluster, 'alpha', 'beta');
  });
});
