// Round trips through writeSealedBundle and readSealedBundle, and the writer's own input checks.

import { describe, expect, it } from 'vitest';
import { readSealedBundle, sodiumReady, type OutgoingMessage } from '../../src/envelope/index.js';
import { rawPushEnabled } from '../../src/envelope/sodium.js';
import { MODE_SECRETBOX, MODE_SECRETSTREAM } from '../../src/envelope/wire-format.js';
import { expectCode, header, lookup, makeKey, meta, open, outgoing, pseudoRandom, seal } from './helpers.js';

const key = makeKey();
const keys = lookup(key);
const text = new TextEncoder();

describe('sealed bundle round trips', () => {
  it('a small bundle is sealed with secretbox and opens to the same message', async () => {
    const payload = text.encode('hello, beta');
    const bundle = await seal(key, header(), [outgoing(meta(1, { headers: { 'content-type': 'text/plain' } }), payload)]);
    expect(bundle[5]).toBe(MODE_SECRETBOX);
    const got = await open(bundle, keys);
    expect(got.header).toEqual(header());
    expect(got.messages).toHaveLength(1);
    expect(got.messages[0]?.meta).toEqual({ ...meta(1, { headers: { 'content-type': 'text/plain' } }), size: payload.length });
    expect(Buffer.from(got.messages[0]?.payload ?? []).toString()).toBe('hello, beta');
  });

  it('the sealed bytes never contain the payload or the headers in the clear', async () => {
    const bundle = await seal(key, header(), [outgoing(meta(1, { headers: { secretheader: 'topsecretvalue' } }), text.encode('plaintext-payload-marker'))]);
    const s = Buffer.from(bundle).toString('latin1');
    for (const needle of ['plaintext-payload-marker', 'topsecretvalue', 'secretheader', 'orders', 'alpha', 'beta']) expect(s).not.toContain(needle);
  });

  it('a 5 MiB payload is sealed with secretstream and opens byte-identical', async () => {
    const payload = pseudoRandom(5 * 1024 * 1024, 7);
    const bundle = await seal(key, header(), [outgoing(meta(1), payload, 'none', 100_000)]);
    expect(bundle[5]).toBe(MODE_SECRETSTREAM);
    const got = await open(bundle, keys, 'beta', undefined, 77_777);
    expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
  });

  it('a payload streamed from an async generator in odd-sized pieces round trips', async () => {
    const size = 3 * 1024 * 1024 + 13;
    const msg: OutgoingMessage = {
      meta: { ...meta(1), size },
      async *payload() {
        let left = size;
        let i = 0;
        while (left > 0) {
          const n = Math.min(left, 1 + ((i * 7919) % 150_000));
          yield pseudoRandom(n, i + 1);
          left -= n;
          i++;
        }
      },
    };
    const bundle = await seal(key, header(), [msg]);
    const got = await open(bundle, keys);
    expect(got.messages[0]?.payload.length).toBe(size);
    // Recompute the expected bytes piece by piece.
    const expected: Uint8Array[] = [];
    for await (const c of msg.payload()) expected.push(c);
    expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), Buffer.concat(expected))).toBe(0);
  });

  it('many messages with headers keep their order, metadata and payloads', async () => {
    const n = 50;
    const payloads = Array.from({ length: n }, (_, i) => pseudoRandom(i * 37, i + 3));
    const msgs = payloads.map((p, i) => outgoing(meta(100 + i, { queue: `q.${i % 3}`, headers: { n: String(i), 'x-trace': `t-${i}` } }), p));
    const h = header({ firstSeq: 100, count: n });
    const got = await open(await seal(key, h, msgs), keys);
    expect(got.header).toEqual(h);
    expect(got.messages.map((m) => m.meta.seq)).toEqual(Array.from({ length: n }, (_, i) => 100 + i));
    got.messages.forEach((m, i) => {
      expect(m.meta.queue).toBe(`q.${i % 3}`);
      expect(m.meta.headers).toEqual({ n: String(i), 'x-trace': `t-${i}` });
      expect(Buffer.compare(m.payload, payloads[i] as Uint8Array)).toBe(0);
    });
  });

  it('a thousand 1 KiB messages round trip through a secretstream bundle', async () => {
    const msgs = Array.from({ length: 1000 }, (_, i) => outgoing(meta(i + 1), pseudoRandom(1024, i + 1)));
    const bundle = await seal(key, header({ count: 1000 }), msgs);
    expect(bundle[5]).toBe(MODE_SECRETSTREAM);
    const got = await open(bundle, keys);
    expect(got.messages).toHaveLength(1000);
    expect(Buffer.compare(got.messages[999]?.payload ?? new Uint8Array(), pseudoRandom(1024, 1000))).toBe(0);
  });

  for (const compression of ['gzip', 'br'] as const) {
    it(`a compressible small payload travels ${compression}-compressed and opens identical`, async () => {
      const payload = text.encode('ferry '.repeat(5000));
      const bundle = await seal(key, header(), [outgoing(meta(1), payload, compression)]);
      expect(bundle.length).toBeLessThan(payload.length / 4);
      const got = await open(bundle, keys);
      expect(got.messages[0]?.meta.compression).toBe(compression);
      expect(got.messages[0]?.meta.size).toBe(payload.length);
      expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
    });

    it(`a large payload streams through ${compression} and opens identical`, async () => {
      const payload = new Uint8Array(6 * 1024 * 1024);
      for (let i = 0; i < payload.length; i += 4096) payload.set(pseudoRandom(64, i), i); // compressible, not trivial
      const bundle = await seal(key, header(), [outgoing(meta(1), payload, compression, 1_000_000)]);
      expect(bundle.length).toBeLessThan(payload.length / 8);
      const got = await open(bundle, keys, 'beta', undefined, 10_000);
      expect(got.messages[0]?.meta.compression).toBe(compression);
      expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
    });

    it(`an incompressible small payload asked for ${compression} travels uncompressed`, async () => {
      const payload = pseudoRandom(10_000, 5);
      const got = await open(await seal(key, header(), [outgoing(meta(1), payload, compression)]), keys);
      expect(got.messages[0]?.meta.compression).toBeUndefined();
      expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
    });
  }

  it('an empty payload round trips, with and without compression asked for', async () => {
    const msgs = [outgoing(meta(1), new Uint8Array(0)), outgoing(meta(2), new Uint8Array(0), 'gzip'), outgoing(meta(3), new Uint8Array(0), 'br')];
    const got = await open(await seal(key, header({ count: 3 }), msgs), keys);
    expect(got.messages.map((m) => m.payload.length)).toEqual([0, 0, 0]);
    expect(got.messages.map((m) => m.meta.size)).toEqual([0, 0, 0]);
  });

  it('a forced secretstream small bundle round trips', async () => {
    const bundle = await seal(key, header(), [outgoing(meta(1), text.encode('x'))], { mode: 'secretstream' });
    expect(bundle[5]).toBe(MODE_SECRETSTREAM);
    expect((await open(bundle, keys)).messages[0]?.payload).toEqual(text.encode('x'));
  });

  /** Bytes of frames around a payload of `size` bytes in a one-message bundle (measured on an empty one). */
  async function frameOverhead(size: number): Promise<number> {
    const probe = await seal(key, header(), [outgoing(meta(1), new Uint8Array(0))]);
    const prefix = 7 + key.id.length + 24;
    return probe.length - prefix - 16 - prefix + (String(size).length - 1); // mode 1: prefix, MAC, prefix copy, frames
  }

  it('frames of exactly 1 MiB still fit one secretbox, one byte more switches to secretstream', async () => {
    const exact = 1024 * 1024 - (await frameOverhead(1024 * 1024));
    const atLimit = await seal(key, header(), [outgoing(meta(1), new Uint8Array(exact))]);
    expect(atLimit[5]).toBe(MODE_SECRETBOX);
    const over = await seal(key, header(), [outgoing(meta(1), new Uint8Array(exact + 1))]);
    expect(over[5]).toBe(MODE_SECRETSTREAM);
    expect((await open(atLimit, keys)).messages[0]?.payload.length).toBe(exact);
    expect((await open(over, keys)).messages[0]?.payload.length).toBe(exact + 1);
  });

  it('frame streams ending just before, at and just after a 64 KiB chunk boundary round trip', async () => {
    for (const delta of [-1, 0, 1]) {
      const size = 4 * 64 * 1024 + delta - (await frameOverhead(4 * 64 * 1024));
      const payload = pseudoRandom(size, 9);
      const bundle = await seal(key, header(), [outgoing(meta(1), payload)], { mode: 'secretstream' });
      const got = await open(bundle, keys, 'beta', undefined, 1000);
      expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
    }
  });

  it('sealing the same bundle twice gives different bytes (fresh nonce and stream header)', async () => {
    for (const mode of ['secretbox', 'secretstream'] as const) {
      const a = await seal(key, header(), [outgoing(meta(1), text.encode('same'))], { mode });
      const b = await seal(key, header(), [outgoing(meta(1), text.encode('same'))], { mode });
      expect(a.length).toBe(b.length);
      const nonceAt = 7 + key.id.length;
      expect(Buffer.compare(a.subarray(nonceAt, nonceAt + 24), b.subarray(nonceAt, nonceAt + 24))).not.toBe(0);
      expect(Buffer.compare(a.subarray(nonceAt + 24), b.subarray(nonceAt + 24))).not.toBe(0);
    }
  });

  it('the reader accepts the key with its peers in either order', async () => {
    const reversed = { ...key, peers: ['beta', 'alpha'] as const };
    const got = await open(await seal(reversed, header(), [outgoing(meta(1), text.encode('x'))]), lookup(key));
    expect(got.messages).toHaveLength(1);
  });

  it('onHeader sees the verified header and key before any message', async () => {
    await sodiumReady();
    const bundle = await seal(key, header({ count: 2 }), [outgoing(meta(1), text.encode('a')), outgoing(meta(2), text.encode('b'))]);
    const events: string[] = [];
    await readSealedBundle(
      (async function* () {
        yield bundle;
      })(),
      keys,
      'beta',
      {
        onHeader(h, k) {
          events.push(`header ${h.origin}->${h.destination} key ${k.id}`);
        },
        async onMessage(m) {
          events.push(`message ${m.seq}`);
          return { write: async () => undefined, end: async () => void events.push(`end ${m.seq}`) };
        },
      },
    );
    expect(events).toEqual(['header alpha->beta key k1', 'message 1', 'end 1', 'message 2', 'end 2']);
  });
});

describe('writer checks its input', () => {
  it('refuses fewer messages than the header count', async () => {
    await expectCode(seal(key, header({ count: 2 }), [outgoing(meta(1), new Uint8Array(1))]), 'EENVELOPE_FORMAT');
  });

  it('refuses more messages than the header count', async () => {
    await expectCode(seal(key, header({ count: 1 }), [outgoing(meta(1), new Uint8Array(1)), outgoing(meta(2), new Uint8Array(1))]), 'EENVELOPE_FORMAT');
  });

  it('refuses seqs that do not follow firstSeq without gaps', async () => {
    await expectCode(seal(key, header({ count: 2 }), [outgoing(meta(1), new Uint8Array(1)), outgoing(meta(3), new Uint8Array(1))]), 'EENVELOPE_FORMAT');
  });

  it('refuses a payload that yields more bytes than declared', async () => {
    const m = outgoing(meta(1), new Uint8Array(10));
    await expectCode(seal(key, header(), [{ ...m, meta: { ...m.meta, size: 9 } }]), 'EENVELOPE_FORMAT');
  });

  it('refuses a payload that yields fewer bytes than declared, compressed or not', async () => {
    for (const c of ['none', 'gzip', 'br'] as const) {
      const m = outgoing(meta(1), new Uint8Array(300_000), c);
      await expectCode(seal(key, header(), [{ ...m, meta: { ...m.meta, size: 300_001 } }]), 'EENVELOPE_FORMAT');
    }
  });

  it('refuses a key that does not bind origin and destination', async () => {
    await expectCode(seal(makeKey('k2', ['alpha', 'gamma']), header(), [outgoing(meta(1), new Uint8Array(1))]), 'EKEY_PAIR');
  });

  it('refuses a malformed key', async () => {
    await expectCode(seal({ ...key, secret: new Uint8Array(31) }, header(), [outgoing(meta(1), new Uint8Array(1))]), 'EKEYFORMAT');
    await expectCode(seal({ ...key, id: 'bad id' }, header(), [outgoing(meta(1), new Uint8Array(1))]), 'EKEYFORMAT');
  });

  it.each([
    ['a bad queue name', { queue: '.hidden' }, 'EQUEUE_NAME'],
    ['a queue name too long', { queue: 'q'.repeat(129) }, 'EQUEUE_NAME'],
    ['a bad header name', { headers: { 'bad name': 'x' } }, 'EHEADER'],
    ['a header value over 4096 bytes', { headers: { big: 'é'.repeat(2049) } }, 'EHEADER'],
    ['more than 64 headers', { headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v'])) }, 'EHEADER'],
    ['headers that overflow a 64 KiB frame', { headers: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`h${i}`, 'x'.repeat(4096)])) }, 'EHEADER'],
    ['a bad message id', { id: 'has space' }, 'EENVELOPE_FORMAT'],
    ['a negative commit time', { committed: -1 }, 'EENVELOPE_FORMAT'],
  ] as const)('refuses %s', async (_what, over, code) => {
    await expectCode(seal(key, header(), [outgoing(meta(1, over as never), new Uint8Array(1))]), code);
  });

  it.each([
    ['a bad origin', { origin: '-alpha' }, 'EHOST_NAME'],
    ['a bad channel', { channel: 'a/b' }, 'EENVELOPE_FORMAT'],
    ['a zero count', { count: 0 }, 'EENVELOPE_FORMAT'],
    ['a fractional firstSeq', { firstSeq: 1.5 }, 'EENVELOPE_FORMAT'],
  ] as const)('refuses a header with %s', async (_what, over, code) => {
    await expectCode(seal(key, header(over), [outgoing(meta(1), new Uint8Array(1))]), code);
  });
});

describe('secretstream fast path', () => {
  it('is active with the pinned libsodium-wrappers (sealing skips a copy per chunk)', async () => {
    await sodiumReady();
    expect(rawPushEnabled()).toBe(true);
  });

  it('the wrapper fallback seals bundles the reader opens just the same', async () => {
    await sodiumReady();
    const payload = pseudoRandom(300_000, 8);
    rawPushEnabled(false);
    try {
      const bundle = await seal(key, header(), [outgoing(meta(1), payload)], { mode: 'secretstream' });
      expect(Buffer.compare((await open(bundle, keys)).messages[0]?.payload ?? new Uint8Array(), payload)).toBe(0);
    } finally {
      rawPushEnabled(true);
    }
    expect(rawPushEnabled()).toBe(true);
  });
});
