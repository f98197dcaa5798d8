// `ferry take`, `ferry status` and `ferry keys` run as the operator runs them (node bin/ferry).

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InboxMeta } from '../../src/inbox/meta.js';
import { deliver, names, useTempDir } from '../fixtures/spool.js';
import { ferry, oneErrorLine, prepared, spoolOf, type Install } from './cli.js';

const tmp = useTempDir();

function queueDir(inst: Install, sub: string): string {
  return join(inst.root, 'inbox', 'work', sub);
}

/** Parses `env` output (one VAR=value per line) for the FERRY_ variables. */
function ferryEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(FERRY_[A-Z]+)=(.*)$/.exec(line);
    if (m?.[1] !== undefined) env[m[1]] = m[2] ?? '';
  }
  return env;
}

describe('ferry take --exec', () => {
  it('runs the command with the payload on stdin and the message in its environment, and commits on exit 0', async () => {
    const inst = await prepared(tmp.path);
    const payload = randomBytes(5000);
    await deliver(await spoolOf(inst), 'work', [payload], { origin: 'beta', id: 'msg-1' });
    const out = join(tmp.path, 'seen');
    const cmd = `cat > ${out}.payload && env > ${out}.env && test -f "$FERRY_FILE" && exit 0`;
    const r = await ferry(inst, ['take', 'work', '--exec', cmd]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(readFileSync(`${out}.payload`).equals(payload)).toBe(true);
    const env = ferryEnv(readFileSync(`${out}.env`, 'utf8'));
    expect(env).toMatchObject({ FERRY_ID: 'msg-1', FERRY_ORIGIN: 'beta', FERRY_QUEUE: 'work' });
    expect(env.FERRY_FILE?.startsWith(`${queueDir(inst, 'lease')}/`)).toBe(true);
    for (const sub of ['new', 'lease', 'meta']) expect(names(queueDir(inst, sub))).toEqual([]);
  });

  it('aborts on a non-zero exit: the message is back in the queue with one attempt counted', async () => {
    const inst = await prepared(tmp.path);
    const [name] = await deliver(await spoolOf(inst), 'work', ['try me'], { origin: 'beta', id: 'msg-2' });
    const out = join(tmp.path, 'env');
    const r = await ferry(inst, ['take', 'work', '--exec', `env > ${out}; exit 3`]);
    expect(r.code).not.toBe(0);
    expect(ferryEnv(readFileSync(out, 'utf8'))).toMatchObject({ FERRY_ID: 'msg-2', FERRY_ORIGIN: 'beta', FERRY_QUEUE: 'work' });
    expect(names(queueDir(inst, 'new'))).toEqual([name]);
    expect(names(queueDir(inst, 'lease'))).toEqual([]);
    const meta = JSON.parse(readFileSync(join(queueDir(inst, 'meta'), `${name as string}.json`), 'utf8')) as InboxMeta;
    expect(meta.attempts).toBe(1);
    expect(meta.errors?.[0]).toContain('exited with 3');
  });
});

describe('ferry take', () => {
  it('writes each payload into --out DIR, prints the paths and commits', async () => {
    const inst = await prepared(tmp.path);
    const payloads = [randomBytes(3000), Buffer.from('second')];
    const delivered = await deliver(await spoolOf(inst), 'work', payloads);
    const dir = join(tmp.path, 'out');
    mkdirSync(dir);
    const r = await ferry(inst, ['take', 'work', '--out', dir, '--max', '0']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const paths = r.stdout.trimEnd().split('\n');
    expect(paths).toEqual(delivered.map((n) => join(dir, n)));
    paths.forEach((p, i) => expect(readFileSync(p).equals(payloads[i] as Buffer)).toBe(true));
    expect(names(dir)).toEqual([...(delivered as string[])].sort());
    expect(names(queueDir(inst, 'new'))).toEqual([]);
  });

  it('finishes --out over the temporary file a crashed earlier run left in DIR', async () => {
    const inst = await prepared(tmp.path);
    const [name] = await deliver(await spoolOf(inst), 'work', ['retried']);
    const dir = join(tmp.path, 'out');
    mkdirSync(dir);
    writeFileSync(join(dir, `.${name as string}.ferry-tmp`), 'half of an earlier attempt');
    const r = await ferry(inst, ['take', 'work', '--out', dir]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(readFileSync(join(dir, name as string), 'utf8')).toBe('retried');
    expect(names(dir)).toEqual([name]);
    expect(names(queueDir(inst, 'new'))).toEqual([]);
  });

  it('returns the message to the queue at once when writing into --out fails', async () => {
    const inst = await prepared(tmp.path);
    const [name] = await deliver(await spoolOf(inst), 'work', ['blocked']);
    const dir = join(tmp.path, 'out');
    mkdirSync(join(dir, `.${name as string}.ferry-tmp`), { recursive: true });
    const r = await ferry(inst, ['take', 'work', '--out', dir]);
    expect(r.code).not.toBe(0);
    expect(oneErrorLine(r.stderr), r.stderr).toBe(true);
    expect(names(queueDir(inst, 'new'))).toEqual([name]);
    expect(names(queueDir(inst, 'lease'))).toEqual([]);
  });

  it('writes the payload to stdout, byte for byte, and commits one message by default', async () => {
    const inst = await prepared(tmp.path);
    await deliver(await spoolOf(inst), 'work', ['first line\n', 'second']);
    const r = await ferry(inst, ['take', 'work']);
    expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ code: 0, stderr: '', stdout: 'first line\n' });
    expect(names(queueDir(inst, 'new'))).toHaveLength(1);
  });

  it('exits 0 with no output after --wait 1 on an empty queue', async () => {
    const inst = await prepared(tmp.path);
    const r = await ferry(inst, ['take', 'work', '--wait', '1']);
    expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ code: 0, stderr: '', stdout: '' });
  });

  it.each([
    [['take', '../x'], /queue name "\.\.\/x" is invalid/],
    [['take', 'work', '--wait', 'soon'], /--wait expects a non-negative number/],
    [['take', 'work', '--out', '/nonexistent-dir'], /--out \/nonexistent-dir is not an existing directory/],
  ])('refuses %j with one error line and leaves the queue alone', async (args, message) => {
    const inst = await prepared(tmp.path);
    const [name] = await deliver(await spoolOf(inst), 'work', ['stay']);
    const r = await ferry(inst, args);
    expect(r.code).not.toBe(0);
    expect(oneErrorLine(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toMatch(message);
    expect(names(queueDir(inst, 'new'))).toEqual([name]);
  });
});

describe('ferry status --json', () => {
  it('reports per queue: outbox, inbox, in flight and dead letters', async () => {
    const inst = await prepared(tmp.path);
    const spool = await spoolOf(inst, 1);
    await spool.send('orders', 'o1');
    await spool.send('orders', 'o2');
    await deliver(spool, 'work', ['w1', 'w2', 'w3', 'w4']);
    const held = await spool.take('work');
    await (await spool.take('work'))?.abort('poison'); // maxAttempts 1: straight to dead/
    expect(held).not.toBeNull();

    const r = await ferry(inst, ['status', '--json']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(r.stdout) as { host: string; root: string; time: string; queues: unknown[] };
    expect(report).toMatchObject({ host: 'alpha', root: inst.root, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(report.queues).toEqual([
      { queue: 'orders', outbox: 2, outboxOldestAge: expect.any(Number), inbox: 0, inFlight: 0, dead: 0 },
      { queue: 'work', outbox: 0, outboxOldestAge: null, inbox: 2, inFlight: 1, dead: 1 },
    ]);
  });
});

describe('ferry keys', () => {
  it('generates a 0600 key file for a pair, and lists its id and fingerprint but never its secret', async () => {
    const inst = await prepared(tmp.path);
    const gen = await ferry(inst, ['keys', 'generate', '--peers', 'alpha,beta']);
    expect({ code: gen.code, stderr: gen.stderr }).toEqual({ code: 0, stderr: '' });
    const [path, id, fingerprint] = gen.stdout.trim().split(/\s+/);
    expect(path?.startsWith(`${inst.keys}/`)).toBe(true);
    expect(statSync(path as string).mode & 0o777).toBe(0o600);
    const secret = /^secret = "(.+)"$/m.exec(readFileSync(path as string, 'utf8'))?.[1];
    expect(secret).toBeDefined();

    const list = await ferry(inst, ['keys', 'list']);
    expect({ code: list.code, stderr: list.stderr }).toEqual({ code: 0, stderr: '' });
    expect(list.stdout).toContain(id as string);
    expect(list.stdout).toContain(fingerprint as string);
    expect(list.stdout).toContain('alpha,beta');
    expect(list.stdout).not.toContain(secret as string);
    expect(gen.stdout).not.toContain(secret as string);
  });

  it('refuses --peers that do not name two different hosts, writing nothing', async () => {
    const inst = await prepared(tmp.path);
    const r = await ferry(inst, ['keys', 'generate', '--peers', 'alpha,alpha']);
    expect(r.code).not.toBe(0);
    expect(oneErrorLine(r.stderr), r.stderr).toBe(true);
    expect(names(inst.keys)).toEqual([]);
  });
});
