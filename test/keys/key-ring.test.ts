import { describe, expect, it } from 'vitest';
import { FerryError, isFerryError } from '../../src/errors.js';
import { generatePairKey, KeyRing, makePairKey, type PairKey } from '../../src/keys/index.js';

const T0 = new Date('2026-01-01T00:00:00Z');
const day = 86_400_000;
const at = (days: number): Date => new Date(T0.getTime() + days * day);

function thrown(fn: () => unknown): FerryError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FerryError) return err;
    throw err;
  }
  throw new Error('expected a FerryError');
}

function key(id: string, peers: [string, string], created: Date, expires?: Date): PairKey {
  return makePairKey({ id, peers, created, expires, secret: new Uint8Array(32).fill(id.length) });
}

describe('KeyRing', () => {
  const old = key('ab-old', ['alpha', 'beta'], at(0), at(100));
  const mid = key('ab-mid', ['beta', 'alpha'], at(10));
  const newest = key('ab-new', ['alpha', 'beta'], at(20), at(30));
  const other = key('ag', ['alpha', 'gamma'], at(5));
  const ring = new KeyRing([old, mid, newest, other], { dir: '/etc/ferry/keys' });

  it('seals with the newest unexpired key of the pair, from either side', () => {
    expect(ring.sealingKey('alpha', 'beta', at(25)).id).toBe('ab-new');
    expect(ring.sealingKey('beta', 'alpha', at(25)).id).toBe('ab-new');
  });

  it('stops sealing with a key once it expires and falls back to the next newest', () => {
    expect(ring.sealingKey('alpha', 'beta', at(30)).id).toBe('ab-mid');
  });

  it('no longer opens with an expired key', () => {
    expect(ring.lookup('ab-new', at(30))).toBeUndefined();
    expect(ring.status('ab-new', at(30))).toBe('expired');
    const err = thrown(() => ring.openingKey('ab-new', at(30)));
    expect(err.code).toBe('EKEY_EXPIRED');
    expect(err.message).toContain('2026-01-31T00:00:00.000Z');
  });

  it('still opens with an older unexpired key after a newer one took over sealing', () => {
    expect(ring.lookup('ab-old', at(25))?.id).toBe('ab-old');
    expect(ring.openingKey('ab-old', at(25)).id).toBe('ab-old');
    expect(ring.status('ab-old', at(25))).toBe('active');
  });

  it('refuses an unknown id with EKEY_UNKNOWN', () => {
    expect(ring.lookup('nope')).toBeUndefined();
    expect(ring.status('nope')).toBe('unknown');
    expect(thrown(() => ring.openingKey('nope')).code).toBe('EKEY_UNKNOWN');
  });

  it('refuses a key that does not bind the claimed origin with EKEY_PAIR', () => {
    expect(ring.openingKeyFor('ag', 'gamma', 'alpha', at(25)).id).toBe('ag');
    const err = thrown(() => ring.openingKeyFor('ag', 'beta', 'alpha', at(25)));
    expect(err.code).toBe('EKEY_PAIR');
    expect(err.peer).toBe('alpha');
  });

  it('throws EKEY_NONE naming the pair and the key directory when no key binds a pair', () => {
    const err = thrown(() => ring.sealingKey('beta', 'gamma', at(25)));
    expect(err.code).toBe('EKEY_NONE');
    expect(err.message).toContain('beta and gamma');
    expect(err.message).toContain('/etc/ferry/keys');
  });

  it('throws EKEY_NONE when every key of the pair has expired', () => {
    const r = new KeyRing([old, newest]);
    expect(thrown(() => r.sealingKey('alpha', 'beta', at(100))).code).toBe('EKEY_NONE');
  });

  it('breaks a tie in creation time by the greater id, so both hosts pick the same key', () => {
    const r = new KeyRing([key('b-same', ['alpha', 'beta'], at(1)), key('a-same', ['alpha', 'beta'], at(1))]);
    expect(r.sealingKey('alpha', 'beta', at(2)).id).toBe('b-same');
  });

  it('lists every key sorted by peers, then creation time', () => {
    expect(ring.list().map((k) => k.id)).toEqual(['ab-old', 'ab-mid', 'ab-new', 'ag']);
    expect(ring.size).toBe(4);
  });

  it('names the hosts a host shares unexpired keys with', () => {
    expect(ring.peersOf('alpha', at(25))).toEqual(['beta', 'gamma']);
    expect(ring.peersOf('beta', at(25))).toEqual(['alpha']);
    expect(ring.peersOf('delta', at(25))).toEqual([]);
    expect(new KeyRing([newest]).peersOf('alpha', at(30))).toEqual([]);
  });

  it('refuses two keys with one id', () => {
    expect(thrown(() => new KeyRing([old, key('ab-old', ['alpha', 'gamma'], at(3))])).code).toBe('EKEYFORMAT');
  });

  it('works with generated keys and the current clock by default', async () => {
    const k = await generatePairKey('alpha', 'beta');
    const r = new KeyRing([k]);
    expect(r.sealingKey('alpha', 'beta').id).toBe(k.id);
    expect(r.openingKey(k.id).secret).toEqual(k.secret);
    expect(isFerryError(thrown(() => r.sealingKey('alpha', 'alpha')), 'EKEY_NONE')).toBe(true);
  });

  it('hands out keys structurally usable by the envelope module', () => {
    const envelopeKey: { id: string; secret: Uint8Array; peers: readonly [string, string] } = ring.sealingKey('alpha', 'beta', at(25));
    expect(envelopeKey.secret.byteLength).toBe(32);
  });
});
