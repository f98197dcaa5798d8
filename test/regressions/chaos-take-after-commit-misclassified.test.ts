// Regression (of the chaos checker, not of ferry): a 1000-kill chaos run (seed 20261128) reported
// taken-after-commit=1 from this history in one host's consumer log, which both of its consumers append to:
//
//   take from-beta beta-5756 <name>     consumer A
//   commit from-beta beta-5756          consumer A
//   take from-beta beta-5756 <name>     consumer B
//   lost from-beta beta-5756            consumer B: its commit refused, ELEASE_LOST
//
// B's take came first. The file only ever moves by rename, so for A's commit (the unlink of A's lease) to succeed
// and B's read (an open of B's lease) to succeed as well, the order must have been: B claims (new/ → B's lease),
// B opens the payload, A's process — its clock ahead of B's stamped expiry — reclaims B's lease (→ new/), A claims
// (→ A's lease), reads, commits; B's read finishes and B logs its take line (written after the read, as the id is
// in the payload); B's commit finds its lease gone. A lease ending early on a skewed clock is the documented effect
// of a clock jump; no one read the message after its commit. The checker ordered the take by its line, written
// after the read. Now the consumer logs `open <q> <leaseFile>` before opening the payload, and the checker orders
// the read by that line (scripts/chaos/history.mjs), which still flags a real read after a commit.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { consumerHistory } from '../../scripts/chaos/history.mjs';
import { childEnv, deliver, FIXTURES, names, openSpool, runNode, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const CHILD = join(FIXTURES, 'clock-consumer.mjs');
const HOUR = 3600_000;
const clockDir = mkdtempSync(join(tmpdir(), 'ferry-chaos-history-'));
afterAll(() => rmSync(clockDir, { recursive: true, force: true }));

function aheadEnv(offsetMs: number): NodeJS.ProcessEnv {
  const file = join(clockDir, `offset-${offsetMs}`);
  writeFileSync(file, String(offsetMs));
  return childEnv({ FERRY_CLOCK_FILE: file });
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The old checker: a take counted from its take line (written after the read). */
function oldAfterCommit(text: string): Set<string> {
  const commits = new Map<string, number>();
  const after = new Set<string>();
  for (const line of text.split('\n')) {
    const [verb, , id] = line.split(' ');
    if (!id) continue;
    if (verb === 'take' && (commits.get(id) ?? 0) > 0) after.add(id);
    else if (verb === 'commit') commits.set(id, (commits.get(id) ?? 0) + 1);
  }
  return after;
}

describe('chaos checker: taken after commit', () => {
  it('a read that began before another consumer stole the lease and committed is not a take after commit, though its take line comes after the commit', async () => {
    const spool = await openSpool(tmp.path);
    const [name] = await deliver(spool, 'from-beta', [JSON.stringify({ id: 'beta-5756' })]);
    const log = join(tmp.path, 'consumer-alpha.log');
    const line = (s: string) => appendFileSync(log, `${s}\n`);

    // Consumer B (true clock) takes and opens the payload, as TakenMessage.read does before its readFile.
    const b = await spool.take('from-beta', { leaseMs: 2000 });
    expect(b).not.toBeNull();
    const leaseFile = basename(b!.path);
    line(`open from-beta ${leaseFile}`);
    const opened = b!.stream();

    // Consumer A, 2 h ahead: B's lease has expired by its clock; it returns the message, takes it, reads, commits.
    const a = await runNode([CHILD, 'take', spool.root, 'from-beta', '2000'], { env: aheadEnv(2 * HOUR) });
    expect(a.stdout.trim()).toBe('committed {"id":"beta-5756"}');
    line(`open from-beta ${name}~PA-0`);
    line(`take from-beta beta-5756 ${name} ${name}~PA-0`);
    line('commit from-beta beta-5756');

    // B's read finishes from the descriptor it opened before, then its take line, then its refused commit.
    const { id } = JSON.parse(await readAll(opened)) as { id: string };
    line(`take from-beta ${id} ${name} ${leaseFile}`);
    await expect(b!.commit()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    line(`lost from-beta ${id}`);

    // The invariant itself: once committed, the message cannot be read through B's lease, nor taken again.
    await expect(b!.read()).rejects.toMatchObject({ code: 'ELEASE_LOST' });
    expect(await spool.take('from-beta')).toBeNull();
    for (const sub of ['new', 'lease'] as const) expect(names(spool.layout.inboxDir('from-beta', sub))).toEqual([]);

    // The chaos run's history: the old checker flagged it; ordered by the open lines, it is one commit and no late read.
    const text = readFileSync(log, 'utf8');
    expect([...oldAfterCommit(text)]).toEqual(['beta-5756']);
    const h = consumerHistory(text);
    expect([...h.afterCommit]).toEqual([]);
    expect(h.commits.get('beta-5756')).toBe(1);
    expect(h.takes.get('beta-5756')).toBe(2);
  });

  it('still flags a payload opened after another take of it committed', () => {
    const n = '1795854813.M758887P20705Q121R8f3dd9c7.alpha';
    const real = [
      `open from-beta ${n}~P1-aa`,
      `take from-beta beta-1 ${n} ${n}~P1-aa`,
      'commit from-beta beta-1',
      `open from-beta ${n}~P2-bb`,
      `take from-beta beta-1 ${n} ${n}~P2-bb`,
      'commit from-beta beta-1',
    ].join('\n');
    expect([...consumerHistory(real).afterCommit]).toEqual(['beta-1']);
    // Also when the late read's take is refused at commit: the read itself is the violation.
    const refused = [`open from-beta ${n}~P1-aa`, `take from-beta beta-2 ${n} ${n}~P1-aa`, 'commit from-beta beta-2', `open from-beta ${n}~P2-bb`, `take from-beta beta-2 ${n} ${n}~P2-bb`, 'lost from-beta beta-2'].join('\n');
    expect([...consumerHistory(refused).afterCommit]).toEqual(['beta-2']);
    // Logs without open lines (before this fix) keep the old, stricter reading.
    expect([...consumerHistory(`take from-beta beta-3 ${n}\ncommit from-beta beta-3\ntake from-beta beta-3 ${n}`).afterCommit]).toEqual(['beta-3']);
  });
});
