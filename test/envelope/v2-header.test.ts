// Wire format version 2: numbered epochs, the acked mark, gap records, sender-side opening and the reader's own limits.
import { describe, expect, it } from 'vitest';
import { readSealedBundle, sodiumReady } from '../../src/envelope/index.js';
import { encodePrefix, MODE_SECRETBOX } from '../../src/envelope/wire-format.js';
import { expectCode, header, jsonFrame, lookup, makeKey, meta, open, outgoing, pseudoRandom, seal, sealRaw, u32 } from './helpers.js';

const key = makeKey('k1', ['alpha', 'beta']);
const keys = lookup(key);

describe('bundle header version 2', () => {
  it('carries the epoch number, the acked mark and the reseal count through seal and open', async () => {
    await sodiumReady();
    const h = header({ epoch: 1_764_000_000_000, firstSeq: 11, count: 2, acked: 10, resealed: 2 });
    const bytes = await seal(key, h, [outgoing(meta(11), new Uint8Array(3)), outgoing(meta(12), new Uint8Array(4))]);
    const opened = await open(bytes, keys);
    expect(opened.header).toEqual(h);
    expect(opened.messages.map((m) => m.meta.seq)).toEqual([11, 12]);
  });

  it('a gap record carries no message and opens to its header and reason', async () => {
    const h = header({ firstSeq: 5, count: 3, acked: 4, kind: 'gap', gap: 'not delivered within its lifetime' });
    const bytes = await seal(key, h, []);
    const opened = await open(bytes, keys);
    expect(opened.header).toEqual(h);
    expect(opened.messages).toEqual([]);
  });

  it('refuses a gap record that holds a message, and one without its reason', async () => {
    await expectCode(seal(key, header({ kind: 'gap', gap: 'x' }), [outgoing(meta(1), new Uint8Array(1))]), 'EENVELOPE_FORMAT');
    await expectCode(seal(key, { ...header(), kind: 'gap' }, []), 'EENVELOPE_FORMAT');
    // Crafted: a sealed gap header followed by a message frame.
    const crafted = sealRaw(key, [
      jsonFrame(1, { origin: 'alpha', destination: 'beta', channel: 'e', epoch: 1, firstSeq: 1, count: 1, created: 1, acked: 0, kind: 'gap', gap: 'why' }),
      jsonFrame(2, { seq: 1, queue: 'q', id: 'm1', headers: {}, committed: 1, size: 0 }),
      jsonFrame(3, { count: 1 }),
    ]);
    await expectCode(open(crafted, keys), 'EENVELOPE_FORMAT');
  });

  it.each([
    ['an acked mark at or past firstSeq', { acked: 5, firstSeq: 5 }],
    ['an epoch number of 0', { epoch: 0 }],
    ['no epoch number', { epoch: undefined }],
    ['no acked mark', { acked: undefined }],
    ['a firstSeq of 0', { firstSeq: 0 }],
    ['a reseal count above the message count', { resealed: 3, count: 2 }],
    ['an unknown kind', { kind: 'messages' }],
    ['a gap reason outside a gap record', { gap: 'why' }],
  ])('refuses a peer header with %s', async (_what, over) => {
    const h: Record<string, unknown> = { origin: 'alpha', destination: 'beta', channel: 'e', epoch: 1, firstSeq: 1, count: 1, created: 1, acked: 0, ...over };
    for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
    const count = typeof h.count === 'number' ? h.count : 1;
    const first = typeof h.firstSeq === 'number' ? h.firstSeq : 1;
    const frames = [jsonFrame(1, h)];
    for (let i = 0; i < count; i++) frames.push(jsonFrame(2, { seq: first + i, queue: 'q', id: `m${i}`, headers: {}, committed: 1, size: 0 }));
    frames.push(jsonFrame(3, { count }));
    await expectCode(open(sealRaw(key, frames), keys), 'EENVELOPE_FORMAT');
  });

  it('refuses a version 1 bundle with a sentence naming both versions', async () => {
    const prefix = encodePrefix(MODE_SECRETBOX, key.id, new Uint8Array(24));
    prefix[4] = 1;
    const err = await open(prefix, keys).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EENVELOPE_VERSION' });
    expect(String((err as Error).message)).toMatch(/version 1; this ferry reads version 2/);
  });
});

describe('opening as the sender', () => {
  it('a sender opens its own bundle for a peer, which the receiver role refuses on that host', async () => {
    const bytes = await seal(key, header({ firstSeq: 3, count: 1 }), [outgoing(meta(3), Buffer.from('hello'))]);
    const got: string[] = [];
    const h = await readSealedBundle(
      (async function* () { yield bytes; })(),
      keys,
      'alpha',
      { role: 'sender', onMessage: async () => ({ write: async (c) => void got.push(Buffer.from(c).toString()), end: async () => undefined }) },
    );
    expect(h.destination).toBe('beta');
    expect(got.join('')).toBe('hello');
    await expectCode(open(bytes, keys, 'alpha'), 'EENVELOPE_DEST');
  });

  it('the sender role refuses a bundle from another origin', async () => {
    const bytes = await seal(key, header({ origin: 'beta', destination: 'alpha' }), [outgoing(meta(1), new Uint8Array(1))]);
    await expectCode(
      readSealedBundle((async function* () { yield bytes; })(), keys, 'alpha', { role: 'sender', onMessage: async () => ({ write: async () => undefined, end: async () => undefined }) }),
      'EENVELOPE_ORIGIN',
    );
  });
});

describe("the reader's own limits", () => {
  it('refuses a bundle whose payloads declare more bytes in all than maxTotalBytes', async () => {
    const bytes = await seal(key, header({ count: 3 }), [1, 2, 3].map((s) => outgoing(meta(s), new Uint8Array(400))));
    await expectCode(open(bytes, keys, 'beta', { maxTotalBytes: 1000 }), 'EENVELOPE_TOO_LARGE');
    expect((await open(bytes, keys, 'beta', { maxTotalBytes: 1200 })).messages).toHaveLength(3);
  });

  it('stops a brotli payload that inflates past the ratio limit, whatever size it declares', async () => {
    const zeros = new Uint8Array(8 * 1024 * 1024); // 8 MiB of zeros compress to a few hundred bytes
    const bytes = await seal(key, header(), [outgoing(meta(1), zeros, 'br')]);
    expect(bytes.length).toBeLessThan(64 * 1024);
    await expectCode(open(bytes, keys, 'beta', { maxInflateRatio: 100 }), 'EENVELOPE_BOMB');
    const ok = await open(bytes, keys, 'beta');
    expect(ok.messages[0]?.payload.length).toBe(zeros.length);
  });

  it('a payload under 1 MiB is never judged by its ratio', async () => {
    const bytes = await seal(key, header(), [outgoing(meta(1), new Uint8Array(512 * 1024), 'gzip')]);
    expect((await open(bytes, keys, 'beta', { maxInflateRatio: 2 })).messages[0]?.payload.length).toBe(512 * 1024);
  });

  it('random data still round trips with every v2 field set', async () => {
    const payload = pseudoRandom(70_000, 3);
    const h = header({ epoch: 7, firstSeq: 2, count: 1, acked: 1 });
    const opened = await open(await seal(key, h, [outgoing(meta(2), payload)]), keys);
    expect(Buffer.from(opened.messages[0]?.payload ?? []).equals(Buffer.from(payload))).toBe(true);
    expect(u32(1).length).toBe(4);
  });
});
