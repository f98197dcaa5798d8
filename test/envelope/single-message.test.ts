// The synchronous single-message API, and how the stream reader treats its handler and input.

import { beforeAll, describe, expect, it, vi } from 'vitest';
import { FerryError, isFerryError } from '../../src/errors.js';
import { openMessage, readSealedBundle, sealMessage, sodiumReady, type MessageEnvelope } from '../../src/envelope/index.js';
import { MODE_SECRETBOX, MODE_SECRETSTREAM } from '../../src/envelope/wire-format.js';
import { chunks, header, lookup, makeKey, meta, open, outgoing, pseudoRandom, seal } from './helpers.js';

const key = makeKey('k1', ['alpha', 'beta']);
const keys = lookup(key);
const env: MessageEnvelope = { origin: 'alpha', destination: 'beta', channel: 'e1', created: 42 };
const m = { seq: 7, queue: 'orders', id: 'id-7', headers: { h: 'v' }, committed: 99 };

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    if (!isFerryError(err)) throw err;
    return err.code;
  }
}

beforeAll(async () => {
  await sodiumReady();
});

describe('sealMessage and openMessage', () => {
  it('refuse to run before libsodium is loaded, with EUSAGE', async () => {
    vi.resetModules(); // a fresh copy of the module, whose readiness flag is still unset
    const fresh = await import('../../src/envelope/single-message.js');
    // The fresh module has its own FerryError class, so compare codes, not classes.
    expect(() => fresh.sealMessage(key, env, m, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'EUSAGE' }) as Error);
    expect(() => fresh.openMessage(new Uint8Array(1), keys, 'beta')).toThrow(expect.objectContaining({ code: 'EUSAGE' }) as Error);
  });

  it('a sealed message opens to its envelope, metadata and payload', () => {
    const sealed = sealMessage(key, env, m, new TextEncoder().encode('hi'));
    expect(sealed[5]).toBe(MODE_SECRETBOX);
    const opened = openMessage(sealed, keys, 'beta');
    expect(opened.header).toEqual({ ...env, epoch: 1, acked: 0, firstSeq: 7, count: 1 });
    expect(opened.meta).toEqual({ ...m, size: 2 });
    expect(new TextDecoder().decode(opened.payload)).toBe('hi');
  });

  it('a message over 1 MiB is sealed with secretstream and opens identical', () => {
    const payload = pseudoRandom(3 * 1024 * 1024 + 5, 11);
    const sealed = sealMessage(key, env, m, payload);
    expect(sealed[5]).toBe(MODE_SECRETSTREAM);
    expect(Buffer.compare(openMessage(sealed, keys, 'beta').payload, payload)).toBe(0);
  });

  it('a compressed message opens identical and is smaller', () => {
    const payload = new TextEncoder().encode('abc'.repeat(100_000));
    for (const compression of ['gzip', 'br'] as const) {
      const sealed = sealMessage(key, env, m, payload, { compression });
      expect(sealed.length).toBeLessThan(payload.length / 20);
      const opened = openMessage(sealed, keys, 'beta');
      expect(opened.meta.compression).toBe(compression);
      expect(Buffer.compare(opened.payload, payload)).toBe(0);
    }
  });

  it('a sealed message is also a valid one-message bundle for readSealedBundle', async () => {
    const sealed = sealMessage(key, env, m, pseudoRandom(2000, 1));
    const got = await open(sealed, keys);
    expect(got.messages[0]?.meta.seq).toBe(7);
    expect(Buffer.compare(got.messages[0]?.payload ?? new Uint8Array(), pseudoRandom(2000, 1))).toBe(0);
  });

  it('openMessage refuses a bundle of several messages with EENVELOPE_FORMAT', async () => {
    const bundle = await seal(key, header({ count: 2 }), [outgoing(meta(1), new Uint8Array(1)), outgoing(meta(2), new Uint8Array(1))]);
    expect(codeOf(() => openMessage(bundle, keys, 'beta'))).toBe('EENVELOPE_FORMAT');
  });

  it('openMessage applies the same checks as the stream reader', () => {
    const sealed = sealMessage(key, env, m, new Uint8Array(10));
    expect(codeOf(() => openMessage(sealed, keys, 'gamma'))).toBe('EENVELOPE_DEST');
    expect(codeOf(() => openMessage(sealed, lookup(makeKey('k1')), 'beta'))).toBe('EENVELOPE_MAC');
    expect(codeOf(() => openMessage(sealed.subarray(0, sealed.length - 1), keys, 'beta'))).toBe('EENVELOPE_MAC');
    expect(codeOf(() => openMessage(sealed.subarray(0, 20), keys, 'beta'))).toBe('EENVELOPE_TRUNCATED');
    expect(codeOf(() => openMessage(sealed, () => undefined, 'beta'))).toBe('EKEY_UNKNOWN');
    expect(codeOf(() => openMessage(sealed, keys, 'not a host'))).toBe('EHOST_NAME');
  });

  it('openMessage caps declared sizes at 256 MiB unless told otherwise', () => {
    const sealed = sealMessage(key, env, m, new Uint8Array(1000));
    expect(codeOf(() => openMessage(sealed, keys, 'beta', { maxMessageBytes: 999 }))).toBe('EENVELOPE_TOO_LARGE');
    expect(openMessage(sealed, keys, 'beta', { maxMessageBytes: 1000 }).payload.length).toBe(1000);
  });

  it('sealMessage refuses a key that does not bind origin and destination', () => {
    expect(codeOf(() => sealMessage(key, { ...env, destination: 'gamma' }, m, new Uint8Array(1)))).toBe('EKEY_PAIR');
  });
});

describe('reader behaviour around the handler', () => {
  it('errors thrown by the handler come out unchanged', async () => {
    const bundle = await seal(key, header(), [outgoing(meta(1), new Uint8Array(5))]);
    const mine = new Error('disk on fire');
    await expect(
      readSealedBundle(chunks(bundle), keys, 'beta', {
        onMessage: async () => ({
          write: async () => {
            throw mine;
          },
          end: async () => undefined,
        }),
      }),
    ).rejects.toBe(mine);
  });

  it('a failure mid-payload aborts the open sink and closes the input', async () => {
    const bundle = (await seal(key, header(), [outgoing(meta(1), pseudoRandom(500_000, 1))], { mode: 'secretstream' })).slice();
    bundle[bundle.length - 100] = (bundle[bundle.length - 100] as number) ^ 1; // corrupt the last chunk
    let aborted: unknown;
    let closed = false;
    let written = 0;
    async function* input(): AsyncGenerator<Uint8Array> {
      try {
        for (let at = 0; at < bundle.length; at += 65536) yield bundle.subarray(at, at + 65536);
      } finally {
        closed = true;
      }
    }
    const it = input();
    const wrapped: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: () => it.next(),
        return: async () => {
          closed = true;
          return it.return(undefined);
        },
      }),
    };
    const p = readSealedBundle(wrapped, keys, 'beta', {
      onMessage: async () => ({
        write: async (c) => void (written += c.length),
        end: async () => undefined,
        abort: (reason) => void (aborted = reason),
      }),
    });
    await expect(p).rejects.toMatchObject({ code: 'EENVELOPE_MAC' });
    expect(written).toBeGreaterThan(0); // earlier chunks verified and were handed over, provisionally
    expect(isFerryError(aborted, 'EENVELOPE_MAC')).toBe(true);
    expect(closed).toBe(true);
  });

  it('errors thrown by the key lookup come out unchanged when they are FerryErrors', async () => {
    const bundle = await seal(key, header(), [outgoing(meta(1), new Uint8Array(5))]);
    const expired = new FerryError('EKEY_EXPIRED', 'key k1 expired.');
    await expect(
      open(bundle, () => {
        throw expired;
      }),
    ).rejects.toBe(expired);
  });
});
