// Regression: spool recovery's tmp/ sweep deleted files a receiver journal still needed. The receiver writes each
// message of a bundle into inbox/<q>/tmp/<name> (+ <name>.meta), journals them, then publishes; replaying a journal
// reads a missing tmp file as "published already". A daemon killed after journaling and left down for more than
// 36 h, while any producer or consumer opened the spool (Spool.open runs recovery), lost every message of that
// delivery to the age sweep: the bundle and the journal went, the messages never reached the inbox (I2).
//
// The sweep now keeps every name a pending journal lists, and keeps every inbox tmp/ file when a journal cannot be read.

import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Receiver } from '../../src/receive/receiver.js';
import { pairKey, plant, quiet, receivingSpool, sealBundle } from '../fixtures/bundles.js';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, FIXTURES, names, runNode, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'receiver-child.mjs');
const HOUR = 3600_000;

/** Beta's spool with one sealed bundle from alpha waiting in alpha's landing directory. */
async function landed(payloads: readonly string[]) {
  const key = pairKey();
  const { spool, landing } = await receivingSpool(join(tmp.path, 'spool'), key);
  const b = await sealBundle(key, { payloads, headers: payloads.map((_, i) => ({ n: String(i) })) });
  plant(landing(), b.name, b.bytes);
  return { spool, key, landing: landing() };
}

/** What inbox queue q holds: payloads in new/, with the header each meta carries. */
function inbox(spool: Spool): string[] {
  const dir = spool.layout.inboxQueue('q');
  return names(join(dir, 'new')).map((n) => {
    const meta = JSON.parse(readFileSync(join(dir, 'meta', `${n}.json`), 'utf8')) as { headers: Record<string, string> };
    return `${readFileSync(join(dir, 'new', n), 'utf8')}#${meta.headers.n}`;
  }).sort();
}

describe('the tmp sweep while a receiver journal is pending', () => {
  it('a receiver killed after journaling, then the spool opened 37 h later: the replay still delivers every message', async () => {
    const payloads = ['one', 'two', 'three'];
    const { spool, key, landing } = await landed(payloads);
    const child = await runNode([CHILD, spool.root, key.id, Buffer.from(key.secret).toString('hex')], { env: childEnv({ FERRY_CRASH_AT: 'receive.after-journal' }) });
    expect(child.signal).toBe('SIGKILL');
    expect(readdirSync(join(spool.layout.receive, 'journal')).filter((n) => n.endsWith('.json'))).toHaveLength(1);
    expect(names(spool.layout.inboxDir('q', 'tmp'))).toHaveLength(6); // three payloads, three metas

    // The daemon stays down; 37 h later a producer or consumer opens the spool, and recovery runs.
    const later = await Spool.open(spool.root, { host: 'beta' });
    await later.recover(Date.now() + 37 * HOUR);
    expect(names(later.layout.inboxDir('q', 'tmp'))).toHaveLength(6);

    // The daemon restarts: its receiver finishes the journaled delivery.
    const receiver = new Receiver(later, (id) => (id === key.id ? key : undefined), quiet, { receiptKey: () => key });
    await receiver.recover();
    await receiver.processOnce(); // the landing file goes once a receipt covers it
    expect(inbox(later)).toEqual(['one#0', 'three#2', 'two#1']);
    expect(names(later.layout.inboxDir('q', 'tmp'))).toEqual([]);
    expect(names(landing)).toEqual(['ferry.receipt']);
  });

  it('still sweeps old debris no journal names, and keeps every inbox tmp file while a journal cannot be read', async () => {
    const spool = await Spool.open(join(tmp.path, 'spool'), { host: 'beta', create: true });
    await spool.inbox.ensureQueue('q');
    const tmpDir = spool.layout.inboxDir('q', 'tmp');
    const journalDir = join(spool.layout.receive, 'journal');
    mkdirSync(journalDir, { recursive: true, mode: 0o700 });
    const old = new Date(Date.now() - 37 * HOUR);
    for (const n of ['kept', 'kept.meta', 'debris', 'debris.meta']) {
      writeFileSync(join(tmpDir, n), n);
      utimesSync(join(tmpDir, n), old, old);
    }
    writeFileSync(join(journalDir, 'b.fb.json'), JSON.stringify({ landing: 'b.fb', origin: 'alpha', epoch: 'e', seqs: [1], items: [{ queue: 'q', name: 'kept', meta: {} }] }));
    // A journal that is not valid JSON: which files it needs is unknown.
    writeFileSync(join(journalDir, 'c.fb.json'), '{"landing": "c.fb", "items": [');
    await spool.recover();
    expect(names(tmpDir)).toEqual(['debris', 'debris.meta', 'kept', 'kept.meta']);

    writeFileSync(join(journalDir, 'c.fb.json'), JSON.stringify({ landing: 'c.fb', origin: 'alpha', epoch: 'e', seqs: [], items: [] }));
    await spool.recover();
    expect(names(tmpDir)).toEqual(['kept', 'kept.meta']);
  });
});
