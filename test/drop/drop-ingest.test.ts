// Legacy drops: a file is committed only once complete (marker, rename from a dot-file, or settled), never half.
import { execFileSync } from 'node:child_process';
import { appendFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DropIngester } from '../../src/drop/drop-ingest.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };
const SETTLE = 2_000;

describe('drop ingestion', () => {
  let dir: string;
  let spool: Spool;
  let ingester: DropIngester;
  let drop: string;
  const outboxNew = () => { try { return readdirSync(join(spool.layout.outboxNew('q'))); } catch { return []; } };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-drop-'));
    spool = await Spool.open(join(dir, 'spool'), { host: 'alpha', create: true });
    drop = join(spool.layout.drop, 'q');
    mkdirSync(drop);
    ingester = new DropIngester(spool, () => SETTLE, quiet);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('does not commit a file that keeps growing, and commits it whole once it settles', async () => {
    const path = join(drop, 'report.csv');
    let t = 1_000_000;
    const expected: string[] = [];
    for (let i = 0; i < 5; i++) {
      const chunk = `line ${i}\n`;
      appendFileSync(path, chunk);
      expected.push(chunk);
      // mtime moves with each chunk; bump it explicitly so coarse timestamps cannot hide a write.
      execFileSync('touch', ['-d', `@${(t + i * 500) / 1000}`, path]);
      expect(await ingester.ingestOnce(t)).toBe(0);
      t += 1_500; // less than the settle time between chunks
    }
    expect(outboxNew()).toEqual([]);
    const lastChange = t - 1_500; // the pass that first saw the final size started its settle clock
    expect(await ingester.ingestOnce(lastChange + SETTLE - 1)).toBe(0);
    expect(await ingester.ingestOnce(lastChange + SETTLE)).toBe(1);
    const names = outboxNew();
    expect(names).toHaveLength(1);
    expect(readFileSync(join(spool.layout.outboxNew('q'), names[0] as string), 'utf8')).toBe(expected.join(''));
    expect(existsSync(path)).toBe(false);
  });

  it('commits a file at once when its X.done marker appears, and removes the marker', async () => {
    writeFileSync(join(drop, 'batch.bin'), 'payload');
    expect(await ingester.ingestOnce(1)).toBe(0);
    writeFileSync(join(drop, 'batch.bin.done'), '');
    expect(await ingester.ingestOnce(2)).toBe(1);
    expect(readdirSync(drop)).toEqual([]);
    expect(outboxNew()).toHaveLength(1);
  });

  it('ignores dot-files and *.tmp files while they are written, and takes them once renamed', async () => {
    writeFileSync(join(drop, '.incoming'), 'part');
    writeFileSync(join(drop, 'upload.tmp'), 'part');
    for (const t of [0, SETTLE * 2, SETTLE * 4]) expect(await ingester.ingestOnce(t)).toBe(0);
    renameSync(join(drop, '.incoming'), join(drop, 'incoming'));
    writeFileSync(join(drop, 'incoming.done'), '');
    expect(await ingester.ingestOnce(SETTLE * 5)).toBe(1);
    expect(readdirSync(drop)).toEqual(['upload.tmp']);
  });

  it('never reads through a symlink, FIFO or hard link: each goes to state/dead/drop with a reason', async () => {
    writeFileSync(join(dir, 'secret'), 'not yours');
    symlinkSync(join(dir, 'secret'), join(drop, 'link'));
    execFileSync('mkfifo', [join(drop, 'fifo')]);
    writeFileSync(join(dir, 'other'), 'linked');
    linkSync(join(dir, 'other'), join(drop, 'hard'));
    for (const n of ['link', 'fifo', 'hard']) writeFileSync(join(drop, `${n}.done`), '');
    expect(await ingester.ingestOnce(0)).toBe(0);
    expect(outboxNew()).toEqual([]);
    const dead = readdirSync(join(spool.layout.deadOut, 'drop')).sort();
    expect(dead).toEqual(['q.fifo', 'q.fifo.reason.json', 'q.hard', 'q.hard.reason.json', 'q.link', 'q.link.reason.json']);
    expect(JSON.parse(readFileSync(join(spool.layout.deadOut, 'drop', 'q.hard.reason.json'), 'utf8')).reason).toMatch(/hard links/);
  });

  it('commits each file exactly once across repeated passes', async () => {
    for (let i = 0; i < 20; i++) {
      writeFileSync(join(drop, `f${i}`), `m${i}`);
      writeFileSync(join(drop, `f${i}.done`), '');
    }
    expect(await ingester.ingestOnce(0)).toBe(20);
    expect(await ingester.ingestOnce(SETTLE * 10)).toBe(0);
    const contents = outboxNew().map((n) => readFileSync(join(spool.layout.outboxNew('q'), n), 'utf8')).sort();
    expect(contents).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`).sort());
  });
});
