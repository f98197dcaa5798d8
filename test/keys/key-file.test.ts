import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { formatKeyFile, generatePairKey, keyFileName, makePairKey, parseKeyFile } from '../../src/keys/index.js';
import { base64Of, keyText } from './fixtures.js';

function secretOf(text: string): string {
  const m = /^secret = "(.*)"$/m.exec(text);
  if (m?.[1] === undefined) throw new Error('no secret line');
  return m[1];
}

function parseError(text: string): unknown {
  try {
    parseKeyFile(text, '/keys/x.key');
  } catch (err) {
    return err;
  }
  throw new Error('parseKeyFile accepted the text');
}

describe('key file format', () => {
  it('formats a key that parses back to the same id, peers, times and secret', async () => {
    const key = await generatePairKey('beta', 'alpha', { now: new Date('2026-11-28T02:41:07.250Z'), expires: new Date('2027-11-28T02:41:00.500Z') });
    const back = parseKeyFile(formatKeyFile(key), '/keys/k.key');
    expect(back.id).toBe(key.id);
    expect(back.peers).toEqual(['alpha', 'beta']);
    expect(back.created.toISOString()).toBe('2026-11-28T02:41:07.000Z');
    expect(back.expires?.toISOString()).toBe('2027-11-28T02:41:00.500Z');
    expect(Buffer.from(back.secret).equals(Buffer.from(key.secret))).toBe(true);
    expect(back.path).toBe('/keys/k.key');
  });

  it('writes the warning comment, sorted peers and second-precision times', async () => {
    const key = await generatePairKey('beta', 'alpha', { now: new Date('2026-11-28T02:41:00Z') });
    const text = formatKeyFile(key);
    expect(text).toMatch(/^# ferry pair key — secret: keep mode 0600/);
    expect(text).toContain('peers = ["alpha", "beta"]');
    expect(text).toContain('created = 2026-11-28T02:41:00Z\n');
    expect(text).not.toContain('expires');
  });

  it('accepts peers listed in either order and stores them sorted', async () => {
    const key = parseKeyFile(await keyText({ peers: '["beta", "alpha"]' }));
    expect(key.peers).toEqual(['alpha', 'beta']);
  });

  it('accepts an offset other than Z', async () => {
    const key = parseKeyFile(await keyText({ created: '2026-11-28T04:41:00+02:00' }));
    expect(key.created.toISOString()).toBe('2026-11-28T02:41:00.000Z');
  });

  const bad: Array<[string, () => Promise<string>, RegExp]> = [
    ['text that is not TOML', async () => 'id = "unterminated\n', /is not valid TOML \(line 1/],
    ['a missing id', () => keyText({ id: undefined }), /missing `id`/],
    ['missing peers', () => keyText({ peers: undefined }), /missing `peers`/],
    ['a missing created time', () => keyText({ created: undefined }), /missing `created`/],
    ['a missing secret', () => keyText({ secret: undefined }), /missing `secret`/],
    ['a secret of 31 bytes', () => keyText({ secret: `"${base64Of(31)}"` }), /bad `secret`: expected the base64 of 32 bytes\.$/],
    ['a secret of 33 bytes', () => keyText({ secret: `"${base64Of(33)}"` }), /bad `secret`/],
    ['a secret with non-zero padding bits', () => keyText({ secret: `"${'A'.repeat(42)}B="` }), /bad `secret`/],
    ['a secret that is not a string', () => keyText({ secret: '42' }), /bad `secret`/],
    ['an unknown field', () => keyText({}, ['comment = "hello"']), /unknown field `comment`; expected only id, peers, created, expires, secret/],
    ['an unknown table', () => keyText({}, ['[extra]', 'a = 1']), /unknown field `extra`/],
    ['the same peer twice', () => keyText({ peers: '["alpha", "alpha"]' }), /bad `peers`.*got \["alpha","alpha"\]/],
    ['three peers', () => keyText({ peers: '["alpha", "beta", "gamma"]' }), /bad `peers`/],
    ['a host name starting with a dot', () => keyText({ peers: '[".alpha", "beta"]' }), /bad `peers`/],
    ['an id with a slash', () => keyText({ id: '"../etc/passwd"' }), /bad `id`/],
    ['an id of 65 characters', () => keyText({ id: `"${'a'.repeat(65)}"` }), /bad `id`/],
    ['a local date-time without offset', () => keyText({ created: '2026-11-28T02:41:00' }), /bad `created`: expected a date-time with a UTC offset/],
    ['a date without time', () => keyText({ created: '2026-11-28' }), /bad `created`/],
    ['a created time given as a string', () => keyText({ created: '"2026-11-28T02:41:00Z"' }), /bad `created`/],
    ['expiry before creation', () => keyText({ expires: '2025-01-01T00:00:00Z' }), /bad `expires`.*later than `created`/],
    ['a duplicated field', () => keyText({}, ['id = "again"']), /not valid TOML/],
  ];
  it.each(bad)('refuses %s with EKEYFORMAT naming the field', async (_name, make, message) => {
    const err = parseError(await make());
    expect(isFerryError(err, 'EKEYFORMAT')).toBe(true);
    expect((err as Error).message).toMatch(/^key file \/keys\/x\.key /);
    expect((err as Error).message).toMatch(message);
  });

  it('never quotes the secret in an error, even when the secret line is what is broken', async () => {
    const good = await keyText();
    const secret = secretOf(good);
    const broken = good.replace(`secret = "${secret}"`, `secret = "${secret}`);
    const misnamed = good.replace('secret =', 'secrets =');
    for (const text of [broken, misnamed, good.replace(`"${secret}"`, `"${secret}x"`)]) {
      const err = parseError(text) as Error;
      expect(isFerryError(err, 'EKEYFORMAT')).toBe(true);
      const shown = inspect(err, { depth: 5 }) + JSON.stringify(err) + String(err.cause);
      expect(shown).not.toContain(secret.slice(0, 20));
    }
  });

  it('redacts the secret when a key is logged by mistake', async () => {
    const key = await generatePairKey('alpha', 'beta');
    const b64 = Buffer.from(key.secret).toString('base64');
    const hex = Buffer.from(key.secret).toString('hex');
    for (const shown of [JSON.stringify(key), inspect(key), inspect({ nested: key }, { depth: 10 }), `${JSON.stringify([key])}`]) {
      expect(shown).not.toContain(b64);
      expect(shown).not.toContain(hex);
      expect(shown).toContain(key.id);
      expect(shown).toContain('[redacted]');
    }
    // The redaction is not a field: spreading and Object.keys see exactly the PairKey fields.
    expect(Object.keys(key).sort()).toEqual(['created', 'id', 'peers', 'secret']);
  });

  it('copies the secret so changes to the caller\'s bytes do not reach the key', () => {
    const bytes = new Uint8Array(32).fill(7);
    const key = makePairKey({ id: 'k', peers: ['a', 'b'], created: new Date(0), secret: bytes });
    bytes.fill(0);
    expect(key.secret[0]).toBe(7);
  });

  it('names a key file <id>.key and refuses an id that would make a hidden file', () => {
    expect(keyFileName({ id: 'alpha-beta.1' })).toBe('alpha-beta.1.key');
    let err: unknown;
    try {
      keyFileName({ id: '.hidden' });
    } catch (e) {
      err = e;
    }
    expect(isFerryError(err, 'EKEYFORMAT')).toBe(true);
  });
});
