// known_hosts parsing and host-key verdicts, checked against what OpenSSH's own tools produce.
import { createHmac, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkHostKey,
  fingerprintSha256,
  hostKeyAlgorithms,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  parseKnownHosts,
  pinnedKeys,
} from '../../src/transport/index.js';
import { generateKey } from '../helpers/sshd.js';
import { removeDir, tempDir } from './fixtures.js';

const execFileP = promisify(execFile);

let work: string;
let keyA: { type: string; b64: string; raw: Buffer; pubFile: string };
let keyB: { type: string; b64: string; raw: Buffer; pubFile: string };

async function makeKey(name: string) {
  const file = path.join(work, name);
  const pub = await generateKey(file);
  const [type, b64] = pub.split(/\s+/) as [string, string];
  return { type, b64, raw: Buffer.from(b64, 'base64'), pubFile: `${file}.pub` };
}

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

beforeAll(async () => {
  work = await tempDir('ferry-known-hosts-');
  keyA = await makeKey('a');
  keyB = await makeKey('b');
});
afterAll(() => removeDir(work));

describe('fingerprintSha256', () => {
  it('equals the fingerprint ssh-keygen -lf prints', async () => {
    const { stdout } = await execFileP('ssh-keygen', ['-lf', keyA.pubFile]);
    expect(fingerprintSha256(keyA.raw)).toBe(stdout.split(/\s+/)[1]);
    expect(fingerprintSha256(keyA.raw)).not.toMatch(/=$/);
  });
});

describe('knownHostsName', () => {
  it.each([
    ['beta.example', 22, 'beta.example'],
    ['beta.example', 2222, '[beta.example]:2222'],
    ['127.0.0.1', 40000, '[127.0.0.1]:40000'],
  ])('names %s port %i as %s', (host, port, name) => {
    expect(knownHostsName(host, port)).toBe(name);
  });
});

describe('hostMatches', () => {
  it.each([
    ['beta', 'beta', true],
    ['BETA', 'beta', true],
    ['beta', '[beta]:2222', false],
    ['[beta]:2222', '[beta]:2222', true],
    ['[beta]:2222', 'beta', false],
    ['alpha,beta,gamma', 'beta', true],
    ['alpha,gamma', 'beta', false],
    ['*.example', 'beta.example', true],
    ['*.example,!evil.example', 'evil.example', false],
    ['be?a', 'beta', true],
    ['b.ta', 'beta', false],
  ])('pattern %s vs %s → %s', (pattern, name, expected) => {
    expect(hostMatches(pattern, name)).toBe(expected);
  });

  it('matches hashed entries by HMAC-SHA1 of the name, and only that name', () => {
    const h = hashed('[127.0.0.1]:2222');
    expect(hostMatches(h, '[127.0.0.1]:2222')).toBe(true);
    expect(hostMatches(h, '[127.0.0.1]:2223')).toBe(false);
    expect(hostMatches(h, '127.0.0.1')).toBe(false);
  });

  it('matches entries hashed by ssh-keygen -H', async () => {
    const file = path.join(work, 'to-hash');
    await writeFile(file, `[10.1.2.3]:2200 ${keyA.type} ${keyA.b64}\nbeta.example ${keyB.type} ${keyB.b64}\n`);
    await execFileP('ssh-keygen', ['-H', '-f', file]);
    const parsed = parseKnownHosts(await readFile(file, 'utf8'));
    expect(parsed.entries.every((e) => e.hosts.startsWith('|1|'))).toBe(true);
    expect(pinnedKeys(parsed, '10.1.2.3', 2200).keys.map((e) => e.key)).toEqual([keyA.raw]);
    expect(pinnedKeys(parsed, 'beta.example', 22).keys.map((e) => e.key)).toEqual([keyB.raw]);
    expect(pinnedKeys(parsed, 'beta.example', 2200).keys).toEqual([]);
  });
});

describe('parseKnownHosts', () => {
  it('reads keys, skips comments and blank lines, reports malformed lines', () => {
    const text = [
      '# a comment',
      '',
      `beta,10.0.0.2 ${keyA.type} ${keyA.b64} root@beta`,
      `   [gamma]:2222 ${keyB.type} ${keyB.b64}`,
      'broken-line-without-key',
      `delta ssh-rsa ${keyA.b64}`,
      `epsilon ${keyA.type} not*base64`,
      `@weird * ${keyA.type} ${keyA.b64}`,
    ].join('\n');
    const { entries, problems } = parseKnownHosts(text);
    expect(entries.map((e) => [e.hosts, e.keyType, e.line])).toEqual([
      ['beta,10.0.0.2', 'ssh-ed25519', 3],
      ['[gamma]:2222', 'ssh-ed25519', 4],
    ]);
    expect(problems.map((p) => p.line)).toEqual([5, 6, 7, 8]);
  });

  it('keeps @revoked and @cert-authority markers', () => {
    const { entries } = parseKnownHosts(`@revoked * ${keyA.type} ${keyA.b64}\n@cert-authority *.example ${keyB.type} ${keyB.b64}\n`);
    expect(entries.map((e) => e.marker)).toEqual(['revoked', 'cert-authority']);
  });
});

describe('checkHostKey', () => {
  it.each([
    ['the pinned key', () => `[h]:2222 ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'match'],
    ['one of two pinned keys', () => `[h]:2222 ${keyB.type} ${keyB.b64}\n[h]:2222 ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'match'],
    ['another key than the pinned one', () => `[h]:2222 ${keyB.type} ${keyB.b64}`, () => keyA.raw, 'mismatch'],
    ['a host with no entry', () => `other ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'unknown'],
    ['a key pinned only for port 22', () => `h ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'unknown'],
    ['a revoked key, even if pinned', () => `[h]:2222 ${keyA.type} ${keyA.b64}\n@revoked * ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'revoked'],
    ['a key that only a CA line lists (CA lines are ignored)', () => `@cert-authority [h]:2222 ${keyA.type} ${keyA.b64}`, () => keyA.raw, 'unknown'],
  ])('judges %s', (_what, text, presented, verdict) => {
    expect(checkHostKey(pinnedKeys(parseKnownHosts(text()), 'h', 2222), presented())).toBe(verdict);
  });
});

describe('keyTypeOf and hostKeyAlgorithms', () => {
  it('reads the type from a key blob and rejects garbage', () => {
    expect(keyTypeOf(keyA.raw)).toBe('ssh-ed25519');
    expect(keyTypeOf(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(keyTypeOf(Buffer.from([0xff, 0, 0, 0, 1]))).toBeUndefined();
  });

  it('offers rsa-sha2 signatures for a pinned ssh-rsa key and the type itself otherwise', () => {
    expect(hostKeyAlgorithms(['ssh-ed25519'])).toEqual(['ssh-ed25519']);
    expect(hostKeyAlgorithms(['ssh-rsa', 'ssh-ed25519', 'ssh-rsa'])).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519']);
    expect(hostKeyAlgorithms(['sk-ssh-ed25519@openssh.com'])).toEqual([]);
  });
});
