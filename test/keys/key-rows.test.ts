import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint, generatePairKey, KeyRing, keyRows } from '../../src/keys/index.js';

describe('fingerprint', () => {
  it('does not contain the secret in base64 or hex', async () => {
    for (let i = 0; i < 20; i++) {
      const key = await generatePairKey('alpha', 'beta');
      const fp = fingerprint(key);
      const b64 = Buffer.from(key.secret).toString('base64').replace(/=+$/, '');
      const hex = Buffer.from(key.secret).toString('hex');
      expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{16}$/);
      // No 8-character run of the secret's encodings shows up in the fingerprint.
      for (let j = 0; j + 8 <= b64.length; j++) expect(fp).not.toContain(b64.slice(j, j + 8));
      for (let j = 0; j + 8 <= hex.length; j++) expect(fp.toLowerCase()).not.toContain(hex.slice(j, j + 8));
    }
  });

  it('is stable for a key and differs between keys', async () => {
    const a = await generatePairKey('alpha', 'beta');
    const b = await generatePairKey('alpha', 'beta');
    expect(fingerprint(a)).toBe(fingerprint({ secret: new Uint8Array(a.secret) }));
    expect(fingerprint(a)).not.toBe(fingerprint(b));
  });

  it('matches a known value, so every host computes the same one', () => {
    expect(fingerprint({ secret: new Uint8Array(32) })).toBe('SHA256:' + hashOfZeros());
  });
});

describe('keyRows', () => {
  it('describes each key without its secret', async () => {
    const now = new Date('2026-11-28T03:41:00Z');
    const a = await generatePairKey('alpha', 'beta', { now: new Date('2026-11-28T02:41:00Z'), expires: new Date('2026-11-28T03:00:00Z') });
    const b = await generatePairKey('alpha', 'gamma', { now: new Date('2026-11-28T03:40:30Z') });
    const rows = keyRows(new KeyRing([b, a]), now);
    expect(rows.map((r) => [r.id, r.ageSeconds, r.expired, r.fingerprint])).toEqual([
      [a.id, 3600, true, fingerprint(a)],
      [b.id, 30, false, fingerprint(b)],
    ]);
    expect(rows[0]?.peers).toEqual(['alpha', 'beta']);
    expect(rows[0]?.expires?.toISOString()).toBe('2026-11-28T03:00:00.000Z');
    expect(rows[1]?.expires).toBeUndefined();
    const shown = JSON.stringify(rows);
    for (const k of [a, b]) {
      expect(shown).not.toContain(Buffer.from(k.secret).toString('base64'));
      expect(shown).not.toContain(Buffer.from(k.secret).toString('hex'));
    }
    expect(Object.keys(rows[0] ?? {}).sort()).toEqual(['ageSeconds', 'created', 'expired', 'expires', 'fingerprint', 'id', 'path', 'peers']);
  });

  it('accepts a plain list of keys', async () => {
    const a = await generatePairKey('alpha', 'beta');
    expect(keyRows([a]).map((r) => r.id)).toEqual([a.id]);
  });
});

function hashOfZeros(): string {
  // Computed independently of the implementation: sha256 over the domain string and 32 zero bytes.
  return createHash('sha256').update(Buffer.concat([Buffer.from('ferry-key-fingerprint\0'), Buffer.alloc(32)])).digest('base64').slice(0, 16);
}
