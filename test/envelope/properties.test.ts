// Property tests: arbitrary bundles round trip; every bit flip, every truncation and arbitrary bytes are refused with a FerryError.

import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { openMessage, readSealedBundle, sealMessage, sodiumReady, type OutgoingMessage } from '../../src/envelope/index.js';
import { MODE_SECRETBOX, MODE_SECRETSTREAM } from '../../src/envelope/wire-format.js';
import { chunks, header, lookup, makeKey, meta, open, outgoing, pseudoRandom, seal } from './helpers.js';

const key = makeKey('k1', ['alpha', 'beta']);
const keys = lookup(key);

beforeAll(async () => {
  await sodiumReady();
});

/** Reads `bytes`; resolves to the thrown error (or undefined on success) and what reached the handler. */
async function attempt(bytes: Uint8Array, piece = 4096): Promise<{ err: unknown; handed: number }> {
  let handed = 0;
  try {
    await readSealedBundle(chunks(bytes, piece), keys, 'beta', {
      onHeader: () => void handed++,
      onMessage: async () => {
        handed++;
        return { write: async () => void handed++, end: async () => undefined };
      },
    });
    return { err: undefined, handed };
  } catch (err) {
    return { err, handed };
  }
}

const hostArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,12}$/);
const payloadArb = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 20_000 })).map(([unit, n]) => {
    const out = new Uint8Array(unit.length * n);
    for (let i = 0; i < n; i++) out.set(unit, i * unit.length);
    return out; // compressible
  }),
);
const messageArb = fc.record({
  queue: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/),
  id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,40}$/),
  headers: fc.dictionary(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$/), fc.string({ unit: 'binary', maxLength: 40 }), { maxKeys: 6 }),
  committed: fc.integer({ min: 0, max: 2 ** 45 }),
  payload: payloadArb,
  compression: fc.constantFrom('none', 'gzip', 'br') as fc.Arbitrary<'none' | 'gzip' | 'br'>,
});

describe('envelope properties', () => {
  it('arbitrary bundles round trip, whatever the sealing mode and however the input is chunked', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(messageArb, { minLength: 1, maxLength: 6 }),
        fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/),
        fc.integer({ min: 1, max: 2 ** 50 }),
        fc.constantFrom('auto', 'secretstream') as fc.Arbitrary<'auto' | 'secretstream'>,
        fc.integer({ min: 1, max: 70_000 }),
        async (msgs, channel, firstSeq, mode, piece) => {
          const h = header({ channel, firstSeq, count: msgs.length });
          const out: OutgoingMessage[] = msgs.map((m, i) =>
            outgoing({ seq: firstSeq + i, queue: m.queue, id: m.id, headers: m.headers, committed: m.committed }, m.payload, m.compression, 1 + (piece % 5000)),
          );
          const bundle = await seal(key, h, out, { mode });
          const got = await open(bundle, keys, 'beta', undefined, piece);
          expect(got.header).toEqual(h);
          expect(got.messages).toHaveLength(msgs.length);
          got.messages.forEach((g, i) => {
            const m = msgs[i] as (typeof msgs)[number];
            const { compression: _c, ...rest } = g.meta;
            expect(rest).toEqual({ seq: firstSeq + i, queue: m.queue, id: m.id, headers: m.headers, committed: m.committed, size: m.payload.length });
            expect(Buffer.compare(g.payload, m.payload)).toBe(0);
          });
        },
      ),
      { numRuns: 120 },
    );
  });

  it('sealMessage output opens with openMessage and with readSealedBundle', () => {
    fc.assert(
      fc.property(messageArb, hostArb, (m, channel) => {
        const channelOk = channel.replace(/^[^A-Za-z0-9._-]/, 'c');
        const sealed = sealMessage(
          key,
          { origin: 'alpha', destination: 'beta', channel: channelOk, created: 5 },
          { seq: 9, queue: m.queue, id: m.id, headers: m.headers, committed: m.committed },
          m.payload,
          { compression: m.compression },
        );
        const opened = openMessage(sealed, keys, 'beta');
        expect(opened.header).toEqual({ origin: 'alpha', destination: 'beta', channel: channelOk, epoch: 1, created: 5, firstSeq: 9, count: 1, acked: 0 });
        expect(opened.meta.size).toBe(m.payload.length);
        expect(Buffer.compare(opened.payload, m.payload)).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  for (const mode of ['secretbox', 'secretstream'] as const) {
    it(`every single-bit flip of a small ${mode} bundle is refused with a FerryError before anything is handed over`, async () => {
      const bundle = await seal(
        key,
        header({ count: 2 }),
        [outgoing(meta(1, { headers: { a: 'b' } }), new TextEncoder().encode('first')), outgoing(meta(2), new TextEncoder().encode('second'), 'gzip')],
        { mode },
      );
      expect(bundle[5]).toBe(mode === 'secretbox' ? MODE_SECRETBOX : MODE_SECRETSTREAM);
      expect(bundle.length).toBeLessThan(1000); // one box or one chunk: nothing may be released before its MAC
      const codes = new Set<string>();
      for (let bit = 0; bit < bundle.length * 8; bit++) {
        const flipped = bundle.slice();
        flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
        const { err, handed } = await attempt(flipped, 1 + (bit % 97));
        if (!isFerryError(err)) throw new Error(`bit ${bit}: expected a FerryError, got ${String(err)}`);
        expect(handed, `bit ${bit}`).toBe(0);
        codes.add(err.code);
      }
      expect([...codes].sort()).toEqual(
        mode === 'secretbox'
          ? ['EENVELOPE_FORMAT', 'EENVELOPE_MAC', 'EENVELOPE_MAGIC', 'EENVELOPE_VERSION', 'EKEY_UNKNOWN']
          : ['EENVELOPE_FORMAT', 'EENVELOPE_MAC', 'EENVELOPE_MAGIC', 'EENVELOPE_TOO_LARGE', 'EENVELOPE_TRUNCATED', 'EENVELOPE_VERSION', 'EKEY_UNKNOWN'],
      );
    });

    it(`every truncation of a small ${mode} bundle is refused with a FerryError`, async () => {
      const bundle = await seal(key, header(), [outgoing(meta(1), pseudoRandom(150, 2))], { mode });
      for (let len = 0; len < bundle.length; len++) {
        const { err, handed } = await attempt(bundle.subarray(0, len), 1 + (len % 61));
        if (!isFerryError(err)) throw new Error(`length ${len}: expected a FerryError, got ${String(err)}`);
        expect(handed).toBe(0);
        expect(['EENVELOPE_TRUNCATED', 'EENVELOPE_MAC']).toContain(err.code);
      }
    });
  }

  it('every truncation of a multi-chunk bundle at and around chunk boundaries, and at random points, is refused', async () => {
    const bundle = await seal(key, header(), [outgoing(meta(1), pseudoRandom(200_000, 4))], { mode: 'secretstream' });
    expect(bundle[5]).toBe(MODE_SECRETSTREAM);
    const cuts = new Set<number>();
    const prefixLen = 7 + key.id.length + 24;
    for (let at = prefixLen, i = 0; at < bundle.length; i++) {
      for (const d of [-1, 0, 1, 4, 5]) cuts.add(at + d);
      at += 4 + new DataView(bundle.buffer, bundle.byteOffset).getUint32(at);
    }
    for (const cut of cuts) {
      if (cut < 0 || cut >= bundle.length) continue;
      const { err } = await attempt(bundle.subarray(0, cut), 65536);
      expect(isFerryError(err, 'EENVELOPE_TRUNCATED'), `cut at ${cut}: ${String(err)}`).toBe(true);
    }
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: bundle.length - 1 }), async (cut) => {
        const { err } = await attempt(bundle.subarray(0, cut), 30_000);
        expect(isFerryError(err, 'EENVELOPE_TRUNCATED')).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('random bit flips anywhere in a multi-chunk bundle are refused with a FerryError', async () => {
    const bundle = await seal(key, header({ count: 3 }), [1, 2, 3].map((s) => outgoing(meta(s), pseudoRandom(90_000, s), s === 2 ? 'gzip' : 'none')));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: bundle.length * 8 - 1 }), async (bit) => {
        const flipped = bundle.slice();
        flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
        const { err } = await attempt(flipped, 50_000);
        expect(isFerryError(err), String(err)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('arbitrary bytes never raise anything but a FerryError', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 300 }), async (bytes, piece) => {
        const { err } = await attempt(bytes, piece);
        expect(isFerryError(err), String(err)).toBe(true);
        expect(() => openMessage(bytes, keys, 'beta')).toThrow(expect.objectContaining({ name: 'FerryError' }) as Error);
      }),
      { numRuns: 500 },
    );
  });

  it('arbitrary bytes after a valid clear prefix never raise anything but a FerryError', async () => {
    const prefixOf = (mode: number): Uint8Array => Uint8Array.of(0x46, 0x52, 0x59, 0x31, 1, mode, 2, 0x6b, 0x31, ...pseudoRandom(24, mode));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1, 2), fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 500 }), async (mode, tail, piece) => {
        const bytes = new Uint8Array([...prefixOf(mode), ...tail]);
        const { err, handed } = await attempt(bytes, piece);
        expect(isFerryError(err), String(err)).toBe(true);
        expect(handed).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('arbitrary byte edits of a valid bundle never raise anything but a FerryError', async () => {
    const bundle = await seal(key, header({ count: 2 }), [outgoing(meta(1), pseudoRandom(70_000, 1)), outgoing(meta(2), pseudoRandom(10, 2))]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: bundle.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 5 }),
        async (edits) => {
          const edited = bundle.slice();
          for (const [at, v] of edits) edited[at] = v;
          if (Buffer.compare(edited, bundle) === 0) return;
          const { err } = await attempt(edited, 8192);
          expect(isFerryError(err), String(err)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
