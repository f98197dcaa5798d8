// `commit = "marker"`: for writers that may stall, only an X.done marker commits a dropped file — never time.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { queueConfig, validateConfig } from '../../src/config/config.js';
import { DropIngester } from '../../src/drop/drop-ingest.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('drop queues committing by marker only', () => {
  let dir: string;
  let spool: Spool;
  let drop: string;
  const outboxNew = () => { try { return readdirSync(spool.layout.outboxNew('archives')); } catch { return []; } };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-drop-marker-'));
    spool = await Spool.open(join(dir, 'spool'), { host: 'alpha', create: true });
    drop = join(spool.layout.drop, 'archives');
    mkdirSync(drop);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads `commit = "marker"` per queue, defaults to "settle", and refuses anything else naming the field', () => {
    const config = validateConfig({ host: 'alpha', queues: { archives: { commit: 'marker' } } }, undefined);
    expect(queueConfig(config, 'archives').commit).toBe('marker');
    expect(queueConfig(config, 'other').commit).toBe('settle');
    expect(() => validateConfig({ host: 'alpha', queues: { archives: { commit: 'soon' } } }, '/x.toml')).toThrow(/`queues\.archives\.commit`/);
  });

  it('never ingests a file without its marker, however long it stays unchanged (a writer stalled mid-file)', async () => {
    const ingester = new DropIngester(spool, () => 1_000, quiet, (q) => q === 'archives');
    writeFileSync(join(drop, 'big.tar'), 'part1');
    for (const t of [0, 1_000, 10_000, 3_600_000, 7 * 86_400_000]) expect(await ingester.ingestOnce(t)).toBe(0);
    expect(outboxNew()).toEqual([]);
    expect(readdirSync(drop)).toEqual(['big.tar']);
  });

  it('ingests the whole file once X.done appears, and removes the marker', async () => {
    const ingester = new DropIngester(spool, () => 1_000, quiet, () => true);
    writeFileSync(join(drop, 'big.tar'), 'part1');
    expect(await ingester.ingestOnce(0)).toBe(0);
    writeFileSync(join(drop, 'big.tar'), 'part1part2');
    writeFileSync(join(drop, 'big.tar.done'), '');
    expect(await ingester.ingestOnce(1)).toBe(1);
    expect(readdirSync(drop)).toEqual([]);
    expect(outboxNew()).toHaveLength(1);
  });

  it('still ingests by settle time in queues that keep the default', async () => {
    const ingester = new DropIngester(spool, () => 1_000, quiet, (q) => q === 'other');
    writeFileSync(join(drop, 'report.csv'), 'a,b\n');
    expect(await ingester.ingestOnce(0)).toBe(0);
    expect(await ingester.ingestOnce(1_000)).toBe(1);
  });
});
