// Crash tests (I1 atomic send): a real child process SIGKILLs itself at each named instant of a multi-message,
// multi-queue send transaction; after recovery the outbox holds all of the transaction's messages or none.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, FIXTURES, names, openSpool, readOutbox, runNode, useTempDir, type OutboxMessage } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'txn-child.mjs');
/** Messages in each transaction the child sends (see txn-child.mjs). */
const PER_TX = 5;

/** For each transaction index of `tag`: how many distinct messages are present, and how many extra copies. */
function tally(messages: OutboxMessage[], tag: string, transactions: number): { present: number[]; duplicates: number } {
  const present = Array.from({ length: transactions }, () => 0);
  const seen = new Set<string>();
  let duplicates = 0;
  for (const m of messages) {
    if (m.headers.tag !== tag) continue;
    const key = m.payload.toString();
    if (seen.has(key)) {
      duplicates += 1;
      continue;
    }
    seen.add(key);
    const t = Number(m.headers.tx);
    present[t] = (present[t] ?? 0) + 1;
  }
  return { present, duplicates };
}

describe('a send transaction killed with SIGKILL', () => {
  it.each<[string, number, number, ('all' | 'none')[]]>([
    ['txn.after-fsync', 0, 1, ['none']],
    ['txn.after-fsync', 1, 2, ['all', 'none']],
    ['txn.after-rename', 0, 1, ['all']],
    ['txn.after-rename', 1, 2, ['all', 'all']],
    ['txn.after-commit', 0, 1, ['all']],
    ['txn.after-commit', 1, 3, ['all', 'all', 'none']],
  ])('at %s (skipping %i) leaves all or none of each transaction, none lost, none duplicated', async (point, skip, transactions, expected) => {
    const spool = await openSpool(tmp.path);
    const env = childEnv({ FERRY_CRASH_AT: point, FERRY_CRASH_SKIP: String(skip) });
    const child = await runNode([CHILD, 'send', spool.root, 'crash', String(transactions)], { env });
    expect(child.signal).toBe('SIGKILL');
    // Every transaction whose commit returned before the kill was reported.
    const reported = child.stdout.split('\n').filter((l) => l.startsWith('committed ')).length;
    expect(reported).toBe(skip);

    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    const { present, duplicates } = tally(await readOutbox(reopened), 'crash', transactions);
    const lost = expected.reduce((n, e, t) => n + (e === 'all' ? PER_TX - (present[t] ?? 0) : 0), 0);
    const leaked = expected.reduce((n, e, t) => n + (e === 'none' ? present[t] ?? 0 : 0), 0);
    expect({ lost, leaked, duplicates }).toEqual({ lost: 0, leaked: 0, duplicates: 0 });
    for (const count of present) expect([0, PER_TX]).toContain(count);
  });

  it('after recovery, the spool takes new transactions and the dead one never becomes visible', async () => {
    const spool = await openSpool(tmp.path);
    const child = await runNode([CHILD, 'send', spool.root, 'dead', '1'], { env: childEnv({ FERRY_CRASH_AT: 'txn.after-fsync' }) });
    expect(child.signal).toBe('SIGKILL');
    expect(names(spool.layout.commitsTmp)).toHaveLength(1);
    const reopened = await Spool.open(spool.root, { host: 'alpha' });
    await reopened.send('orders', 'after the crash');
    await reopened.recover(Date.now() + 120_000);
    const payloads = (await readOutbox(reopened)).map((m) => m.payload.toString());
    expect(payloads).toEqual(['after the crash']);
  });
});
