// Fuzz run: 100 000 hostile inputs to the bundle parser and the commit-file parser — typed refusals only,
// no crash, no hang, no allocation sized by an unchecked length (the run would blow the heap or the timeout).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.js';
import { openMessage, sodiumReady } from '../../src/envelope/index.js';
import { encodeIndex, openCommitFile } from '../../src/outbox/commit-file.js';
import { header, lookup, makeKey, meta, open, outgoing, pseudoRandom, seal } from '../envelope/helpers.js';

const RUNS = 100_000;

describe('fuzz: hostile bytes never get past the parsers untyped', () => {
  const key = makeKey('k1');
  const keys = lookup(key);
  const seeds: Uint8Array[] = [];
  let dir = '';

  beforeAll(async () => {
    await sodiumReady();
    // Valid bundles to mutate: secretbox with several messages, and a secretstream one (2 chunks).
    seeds.push(await seal(key, header({ firstSeq: 1, count: 3 }), [1, 2, 3].map((s) => outgoing(meta(s), pseudoRandom(40 * s, s)))));
    seeds.push(await seal(key, header({ firstSeq: 1, count: 1 }), [outgoing(meta(1), pseudoRandom(70_000, 9))], { mode: 'secretstream' }));
    dir = mkdtempSync(join(tmpdir(), 'ferry-fuzz-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const mutation = fc.record({
    seed: fc.nat(1),
    kind: fc.constantFrom('flip', 'overwrite', 'truncate', 'insert', 'random'),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  });

  function mutate(m: { seed: number; kind: string; at: number; bytes: Uint8Array }): Uint8Array {
    const base = seeds[m.seed] as Uint8Array;
    const at = m.at % base.length;
    switch (m.kind) {
      case 'flip': { const b = base.slice(); b[at] = (b[at] as number) ^ (m.bytes[0] as number || 1); return b; }
      case 'overwrite': { const b = base.slice(); b.set(m.bytes.subarray(0, base.length - at), at); return b; }
      case 'truncate': return base.slice(0, at);
      case 'insert': { const b = new Uint8Array(base.length + m.bytes.length); b.set(base.subarray(0, at)); b.set(m.bytes, at); b.set(base.subarray(at), at + m.bytes.length); return b; }
      default: return m.bytes;
    }
  }

  it(`refuses ${RUNS} mutated or random bundles with a FerryError (in-memory parser)`, () => {
    let refused = 0;
    fc.assert(fc.property(mutation, (m) => {
      const input = mutate(m);
      const unchanged = input.length === (seeds[m.seed] as Uint8Array).length && input.every((v, i) => v === (seeds[m.seed] as Uint8Array)[i]);
      try {
        openMessage(input, keys, 'beta');
        return unchanged; // only an unchanged bundle may open: anything else opening would be a forgery
      } catch (err) {
        refused += 1;
        return err instanceof FerryError;
      }
    }), { numRuns: RUNS, seed: 20261128 });
    expect(refused).toBeGreaterThan(RUNS * 0.9);
  }, 300_000);

  it('refuses 3 000 mutated bundles with a FerryError through the streaming reader, with small chunks', async () => {
    await fc.assert(fc.asyncProperty(mutation, fc.integer({ min: 1, max: 5000 }), async (m, piece) => {
      const input = mutate(m);
      try {
        await open(input, keys, 'beta', undefined, piece);
        const base = seeds[m.seed] as Uint8Array;
        return input.length === base.length && input.every((v, i) => v === base[i]); // only an unchanged bundle opens
      } catch (err) {
        return err instanceof FerryError;
      }
    }), { numRuns: 3000, seed: 7 });
  }, 300_000);

  it('refuses 2 000 corrupted commit files with ESPOOL, never an untyped error', async () => {
    const payload = Buffer.from('hello world');
    const good = Buffer.concat([payload, encodeIndex({ v: 1, txid: 't', origin: 'alpha', committed: 1, messages: [{ queue: 'q', id: 'i', headers: {}, size: payload.length }] })]);
    let n = 0;
    await fc.assert(fc.asyncProperty(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.boolean(), async (at, bytes, cut) => {
      const b = Buffer.from(good);
      const file = join(dir, `c${n++}`);
      writeFileSync(file, cut ? b.subarray(0, at % b.length) : (b.set(bytes.subarray(0, b.length - (at % b.length)), at % b.length), b));
      try {
        const f = await openCommitFile(file);
        await f.handle.close();
        return true; // a mutation inside the payload bytes is not detectable here: the commit file is local and unsealed
      } catch (err) {
        return err instanceof FerryError && err.code === 'ESPOOL';
      }
    }), { numRuns: 2000, seed: 11 });
  }, 120_000);
});
