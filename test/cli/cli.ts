// Helpers for CLI tests: run `node bin/ferry` as a child with --config/--root/--keys inside a temp dir.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, REPO, runNode, type ChildResult } from '../fixtures/spool.js';

/** The entry point operators run. */
export const BIN = join(REPO, 'bin', 'ferry');

/** Paths of one test's ferry installation. */
export interface Install {
  dir: string;
  config: string;
  root: string;
  keys: string;
}

/** Paths inside `dir`; nothing is created. */
export function install(dir: string): Install {
  return { dir, config: join(dir, 'ferry.toml'), root: join(dir, 'spool'), keys: join(dir, 'keys') };
}

/** Writes a minimal valid config and creates the spool with the library (faster than running `ferry init`). */
export async function prepared(dir: string, extraToml = ''): Promise<Install> {
  const inst = install(dir);
  writeFileSync(inst.config, `host = "alpha"\nroot = "${inst.root}"\nkeys = "${inst.keys}"\n${extraToml}`);
  await Spool.open(inst.root, { host: 'alpha', create: true });
  return inst;
}

/** Runs `ferry --config … --root … --keys … <args>`. */
export function ferry(inst: Install, args: readonly string[], opts: { input?: string | Buffer; env?: Record<string, string> } = {}): Promise<ChildResult> {
  return runNode([BIN, '--config', inst.config, '--root', inst.root, '--keys', inst.keys, ...args], { input: opts.input, env: childEnv(opts.env) });
}

/** The spool of an installation, opened with the library. */
export function spoolOf(inst: Install, maxAttempts?: number): Promise<Spool> {
  return Spool.open(inst.root, maxAttempts === undefined ? { host: 'alpha' } : { host: 'alpha', maxAttempts });
}

/** True when stderr is exactly one line `ferry: <sentence>` with no stack trace. */
export function oneErrorLine(stderr: string): boolean {
  return /^ferry: [^\n]+\n$/.test(stderr) && !/\n\s+at /.test(stderr);
}
