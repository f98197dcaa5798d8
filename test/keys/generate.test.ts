import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { generatePairKey, isKeyId } from '../../src/keys/index.js';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('generatePairKey', () => {
  it('makes a 32-byte random secret, a fresh one each time', async () => {
    const a = await generatePairKey('alpha', 'beta');
    const b = await generatePairKey('alpha', 'beta');
    expect(a.secret).toBeInstanceOf(Uint8Array);
    expect(a.secret.byteLength).toBe(32);
    expect(Buffer.from(a.secret).equals(Buffer.from(b.secret))).toBe(false);
    expect(a.id).not.toBe(b.id);
  });

  it('sorts the peers and names the key after the pair and the creation second', async () => {
    const key = await generatePairKey('beta', 'alpha', { now: new Date('2026-11-28T02:41:00.999Z') });
    expect(key.peers).toEqual(['alpha', 'beta']);
    expect(key.id).toMatch(/^alpha-beta\.20261128T024100Z\.[0-9a-f]{6}$/);
    expect(key.created.toISOString()).toBe('2026-11-28T02:41:00.000Z');
    expect(key.expires).toBeUndefined();
  });

  it('keeps ids within 64 characters for the longest host names', async () => {
    const key = await generatePairKey('a'.repeat(64), 'b'.repeat(64));
    expect(key.id.length).toBeLessThanOrEqual(64);
    expect(isKeyId(key.id)).toBe(true);
  });

  it('refuses a key binding a host to itself with EKEY_PAIR', async () => {
    expect(isFerryError(await rejection(generatePairKey('alpha', 'alpha')), 'EKEY_PAIR')).toBe(true);
  });

  it.each(['', '-alpha', 'al pha', 'a/b', 'x'.repeat(65)])('refuses host name %j with EHOST_NAME', async (host) => {
    expect(isFerryError(await rejection(generatePairKey(host, 'beta')), 'EHOST_NAME')).toBe(true);
  });

  it('refuses an expiry not later than the creation time', async () => {
    const now = new Date('2026-11-28T02:41:00Z');
    expect(isFerryError(await rejection(generatePairKey('alpha', 'beta', { now, expires: now })), 'EKEYFORMAT')).toBe(true);
  });
});
