// Many processes on one spool (I3, I4, I9): producers deliver into an inbox queue while consumers take, abort and
// commit concurrently; every message is committed exactly once, none is lost, and one consumer sees each producer's
// messages in order.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { childEnv, collect, FIXTURES, names, openSpool, useTempDir, type ChildResult } from '../fixtures/spool.js';

const tmp = useTempDir();

function start(script: string, args: string[]): Promise<ChildResult> {
  return collect(spawn(process.execPath, [join(FIXTURES, script), ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Runs `producers` × `perProducer` deliveries against `consumers` consumers; returns each consumer's log lines. */
async function run(producers: number, perProducer: number, consumers: number, abortRate: number): Promise<{ root: string; logs: string[][] }> {
  const spool = await openSpool(tmp.path);
  await spool.inbox.ensureQueue('work');
  const doneFile = join(tmp.path, 'producers-done');
  const logFiles = Array.from({ length: consumers }, (_, c) => join(tmp.path, `consumer-${c}.log`));
  const consuming = logFiles.map((log) => start('consumer.mjs', [spool.root, log, doneFile, String(abortRate)]));
  const producing = Array.from({ length: producers }, (_, p) => start('producer.mjs', [spool.root, String(p), String(perProducer), 'inbox']));
  for (const result of await Promise.all(producing)) expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  writeFileSync(doneFile, '');
  for (const result of await Promise.all(consuming)) expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  const logs = logFiles.map((f) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter((l) => l !== '') : []));
  return { root: spool.root, logs };
}

describe('many producers and consumers on one inbox queue', () => {
  it('commits each of 5000 messages exactly once across 4 producers and 3 consumers that sometimes abort', async () => {
    const producers = 4;
    const perProducer = 1250;
    const { root, logs } = await run(producers, perProducer, 3, 0.05);
    const all = logs.flat();
    const counts = new Map<string, number>();
    for (const line of all) counts.set(line, (counts.get(line) ?? 0) + 1);
    const expected = Array.from({ length: producers }, (_, p) => Array.from({ length: perProducer }, (_, s) => `${p}:${s}`)).flat();
    const lost = expected.filter((m) => !counts.has(m));
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([m]) => m);
    const unknown = [...counts.keys()].filter((m) => !/^\d:\d+$/.test(m));
    expect({ lost, duplicated, unknown }).toEqual({ lost: [], duplicated: [], unknown: [] });
    expect(all).toHaveLength(producers * perProducer);
    for (const sub of ['new', 'lease', 'dead', 'tmp']) expect(names(join(root, 'inbox', 'work', sub))).toEqual([]);
  });

  it('gives a single consumer each producer\'s messages in the order they were delivered, aborts included', async () => {
    const producers = 4;
    const perProducer = 150;
    const { logs } = await run(producers, perProducer, 1, 0.05);
    const [log = []] = logs;
    expect(log).toHaveLength(producers * perProducer);
    for (let p = 0; p < producers; p++) {
      const seqs = log.filter((l) => l.startsWith(`${p}:`)).map((l) => Number(l.split(':')[1]));
      expect(seqs).toEqual(Array.from({ length: perProducer }, (_, s) => s));
    }
  });
});
