// Receipts: sealed by the receiver for one sender, opened only by that sender, never taken for a bundle.
import { describe, expect, it } from 'vitest';
import { openReceipt, sealReceipt, sodiumReady, type Receipt } from '../../src/envelope/index.js';
import { expectCode, lookup, makeKey, open } from './helpers.js';

const key = makeKey('kab', ['alpha', 'beta']);
const keys = lookup(key);

function receipt(over: Partial<Receipt> = {}): Receipt {
  return {
    origin: 'beta', destination: 'alpha', instance: '0123456789abcdef', gen: 3, written: 1_700_000_000_000,
    current: { epoch: 5, channel: '00aa11bb22cc33dd', hwm: 41 }, previous: null, gaps: 0, blocked: null, refused: [],
    ...over,
  };
}

async function expectThrowCode(fn: () => unknown, code: string): Promise<void> {
  await expectCode(Promise.resolve().then(fn), code as never);
}

describe('receipts', () => {
  it('open to exactly what was sealed, for the sender it names', async () => {
    await sodiumReady();
    const r = receipt({ refused: [{ epoch: 5, channel: '00aa11bb22cc33dd', firstSeq: 7, count: 2, code: 'EENVELOPE_TOO_LARGE', reason: 'too big', at: 9 }], blocked: { seq: 42, since: 1, code: 'EGAP', reason: 'waiting for sequence 42' } });
    expect(openReceipt(sealReceipt(key, r), keys, 'alpha', 'beta')).toEqual(r);
  });

  it('are refused when reflected back to their writer, or shown as written by another host', async () => {
    const bytes = sealReceipt(key, receipt());
    await expectThrowCode(() => openReceipt(bytes, keys, 'beta', 'alpha'), 'EENVELOPE_ORIGIN');
    const gammaKey = makeKey('kag', ['alpha', 'gamma']);
    await expectThrowCode(() => openReceipt(sealReceipt(gammaKey, receipt({ origin: 'gamma' })), lookup(gammaKey), 'alpha', 'beta'), 'EENVELOPE_ORIGIN');
  });

  it('a receipt sealed for the wrong pair cannot even be made', async () => {
    await expectThrowCode(() => sealReceipt(key, receipt({ origin: 'gamma' })), 'EKEY_PAIR');
  });

  it('every flipped bit is refused, and nothing but FerryErrors come out', async () => {
    const bytes = sealReceipt(key, receipt());
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0, 7]) {
        const bad = bytes.slice();
        bad[i] = (bad[i] as number) ^ (1 << bit);
        let err: unknown;
        try {
          openReceipt(bad, keys, 'alpha', 'beta');
        } catch (e) {
          err = e;
        }
        expect(err, `byte ${i} bit ${bit}`).toMatchObject({ name: 'FerryError' });
      }
    }
  });

  it('every truncation is refused', async () => {
    const bytes = sealReceipt(key, receipt());
    for (let n = 0; n < bytes.length; n++) {
      expect(() => openReceipt(bytes.subarray(0, n), keys, 'alpha', 'beta')).toThrow();
    }
  });

  it('a receipt is not a bundle, and a key unknown to the reader is named', async () => {
    const bytes = sealReceipt(key, receipt());
    await expectCode(open(bytes, keys, 'alpha'), 'EENVELOPE_MAGIC');
    await expectThrowCode(() => openReceipt(bytes, lookup(), 'alpha', 'beta'), 'EKEY_UNKNOWN');
  });

  it('refuses a receipt that is too large before looking inside', async () => {
    await expectThrowCode(() => openReceipt(new Uint8Array(200_000), keys, 'alpha', 'beta'), 'EENVELOPE_TOO_LARGE');
  });
});
