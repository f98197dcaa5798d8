// Progress bars appear on a terminal and never in scripts: `ferry send` of a big file, `ferry flush`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, ferry, prepared } from './cli.js';

describe('progress output', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('stays quiet in a script: a 20 MiB send prints only its id, nothing on stderr', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-progress-'));
    const inst = await prepared(dir);
    const big = join(dir, 'big');
    writeFileSync(big, randomBytes(20 * 2 ** 20));
    const r = await ferry(inst, ['send', 'q', big]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\S+\n$/);
  });

  it('draws a bar on a terminal for a 20 MiB send, finishing at 100%', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-progress-'));
    const inst = await prepared(dir);
    const big = join(dir, 'big');
    writeFileSync(big, randomBytes(20 * 2 ** 20));
    // util-linux `script` gives the command a pseudo-terminal, as an operator's shell would.
    const out = execFileSync('script', ['-qec', `${process.execPath} ${BIN} send q ${big} --config ${inst.config}`, '/dev/null'], { encoding: 'utf8' });
    expect(out).toMatch(/committing \[.*\] 100% \| 20\/20 MiB/);
  });
});
