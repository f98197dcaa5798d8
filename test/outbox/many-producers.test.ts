// Many producer processes committing send transactions into one outbox at once: every message is there exactly once.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { childEnv, collect, FIXTURES, names, openSpool, readOutbox, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();

describe('concurrent producers', () => {
  it('commit every message of 4 processes sending transactions at once exactly once, in each producer\'s order', async () => {
    const spool = await openSpool(tmp.path);
    const producers = 4;
    const perProducer = 250;
    const results = await Promise.all(Array.from({ length: producers }, (_, p) => collect(spawn(
      process.execPath, [join(FIXTURES, 'producer.mjs'), spool.root, String(p), String(perProducer), 'outbox'],
      { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    ))));
    for (const r of results) expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });

    const messages = await readOutbox(spool);
    const payloads = messages.map((m) => m.payload.toString());
    const expected = Array.from({ length: producers }, (_, p) => Array.from({ length: perProducer }, (_, s) => `${p}:${s}`)).flat();
    expect([...payloads].sort()).toEqual([...expected].sort());
    for (const m of messages) expect(m.queue).toBe(Number(m.payload.toString().split(':')[1]) % 2 === 0 ? 'a' : 'b');
    // The outbox lists oldest first: each producer's messages come out in the order it committed them.
    for (let p = 0; p < producers; p++) {
      const seqs = payloads.filter((l) => l.startsWith(`${p}:`)).map((l) => Number(l.split(':')[1]));
      expect(seqs).toEqual(Array.from({ length: perProducer }, (_, s) => s));
    }
    expect(names(spool.layout.commitsTmp)).toEqual([]);
  });
});
