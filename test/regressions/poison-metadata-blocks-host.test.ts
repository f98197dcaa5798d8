// Regression (trust boundary, attack 4): 20 headers of 4 000 bytes passed `send`'s checks (each header within its
// limit), then sealing refused the metadata (over the 64 KiB frame); the accept pass retried forever and nothing
// committed afterwards, in any queue to any peer, moved — not even to dead letters after `lifetime` (I12).
//
// Now `send` refuses what can never be sealed, with one sentence; and a commit file that gets past it (an older
// ferry, a hand-written file) is dead-lettered with its reason at once, while everything behind it keeps moving.
import { writeFileSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeIndex } from '../../src/outbox/commit-file.js';
import { ferry, startDaemons, until, useClusters } from '../e2e/fixtures.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();
const headerArgs = Array.from({ length: 20 }, (_, i) => ['--header', `h${i}=${'v'.repeat(4000)}`]).flat();

describe('a message whose metadata can never be sealed', () => {
  it('is refused by `ferry send` with one sentence, and nothing is committed', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    const r = await ferry(cluster, 'alpha', ['send', 'q', ...headerArgs], 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry: a message to q cannot be shipped: its metadata \(headers included\) encodes to \d+ bytes, and at most 65536 fit in a sealed frame; send fewer or shorter headers\n$/);
    expect(readdirSync(join(cluster.host('alpha').root, 'state', 'commits', 'new'))).toEqual([]);
  });

  it('a commit file that carries it anyway is dead-lettered with its reason, and every message behind it moves', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    const root = cluster.host('alpha').root;
    // A commit file as an older ferry (or a hand-made script) would have written it: payload, index, footer.
    const payload = Buffer.from('poison');
    const headers = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`h${i}`, 'v'.repeat(4000)]));
    const index = encodeIndex({ v: 1, txid: 'poison-tx', origin: 'alpha', committed: Date.now(), messages: [{ queue: 'q', id: 'poison-1', headers, size: payload.length }] });
    const tmp = join(root, 'state', 'commits', 'tmp', 'poison-tx');
    writeFileSync(tmp, Buffer.concat([payload, index]), { mode: 0o600 });
    renameSync(tmp, join(root, 'state', 'commits', 'new', 'poison-tx'));
    const behind = await sendHonest(cluster, 'alpha', 'q', 3, 'behind');
    const other = await sendHonest(cluster, 'alpha', 'other', 2, 'other');
    await startDaemons(cluster, 'alpha', 'beta');
    await expectExactly(cluster, 'beta', 'q', behind, 'alpha');
    await expectExactly(cluster, 'beta', 'other', other, 'alpha');
    const dead = join(root, 'state', 'dead', 'outbox');
    await until('the poison dead-lettered', () => readdirSync(dead).includes('poison-tx.reason.json'));
    expect(readFileSync(join(dead, 'poison-tx.reason.json'), 'utf8')).toMatch(/at most 65536 fit in a sealed frame/);
  });
});
