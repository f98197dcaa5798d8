// Shared test helpers for the keys area: a fresh temp directory per test and key files on demand.

import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { formatKeyFile, generatePairKey, keyFileName, writeKeyFile, type PairKey } from '../../src/keys/index.js';

/** A fresh 0700 temp directory for each test, removed afterwards; read `.path` inside a test. */
export function useTempDir(): { readonly path: string } {
  const box = { path: '' };
  beforeEach(async () => {
    box.path = await mkdtemp(join(tmpdir(), 'ferry-keys-'));
  });
  afterEach(async () => {
    await rm(box.path, { recursive: true, force: true });
  });
  return box;
}

/** Generate a key for `a`/`b` and write it as `<id>.key` in `dir`; returns the key with its path. */
export async function deployKey(dir: string, a = 'alpha', b = 'beta', opts: { now?: Date; expires?: Date } = {}): Promise<PairKey & { path: string }> {
  const key = await generatePairKey(a, b, opts);
  const path = join(dir, keyFileName(key));
  await writeKeyFile(path, key);
  return { ...key, path };
}

/** A valid key file's text, with lines replaced or removed (`undefined`) by field name, or extra lines added. */
export async function keyText(edit: Partial<Record<'id' | 'peers' | 'created' | 'expires' | 'secret', string | undefined>> = {}, extra: string[] = []): Promise<string> {
  const key = await generatePairKey('alpha', 'beta', { now: new Date('2026-11-28T02:41:00Z'), expires: new Date('2027-11-28T02:41:00Z') });
  const lines = formatKeyFile(key)
    .trimEnd()
    .split('\n')
    .flatMap((line) => {
      const field = /^(\w+) =/.exec(line)?.[1] as keyof typeof edit | undefined;
      if (field === undefined || !(field in edit)) return [line];
      const value = edit[field];
      return value === undefined ? [] : [`${field} = ${value}`];
    });
  return [...lines, ...extra].join('\n') + '\n';
}

/** Write `text` to `dir/name` with exactly `mode` (default 0600). */
export async function writeRaw(dir: string, name: string, text: string, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode });
  await chmod(path, mode);
  return path;
}

/** Base64 of `n` bytes of 0x41. */
export function base64Of(n: number): string {
  return Buffer.alloc(n, 0x41).toString('base64');
}
