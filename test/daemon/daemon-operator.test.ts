// What an operator sees from the daemon: a missing key is a warning and the peer's last error,
// a changed metrics address applies on reload, and drop directories opened to a group stay so.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { Spool } from '../../src/spool/spool.js';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A logger whose JSON lines the test can read. */
function capture(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
  return { logger: pino({ level: 'debug' }, stream) as Logger, lines };
}

const until = async (what: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('the daemon, as an operator sees it', () => {
  let dir = '';
  let daemon: Daemon | undefined;
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function setUp(extra: Record<string, unknown> = {}) {
    dir = mkdtempSync(join(tmpdir(), 'ferry-daemon-op-'));
    const root = join(dir, 'spool');
    const keys = join(dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    await Spool.open(root, { host: 'alpha', create: true });
    const raw = { host: 'alpha', root, keys, routes: { '*': ['alpha'] }, ...extra };
    return { root, keys, raw };
  }

  it('logs "keys loaded" at warn naming a routed peer with no key, and shows "no key" as that peer\'s last error', async () => {
    const { raw } = await setUp({
      peers: { beta: { ssh: 'ferry@127.0.0.1:1', identity: join(tmpdir(), 'none'), known_hosts: join(tmpdir(), 'none') } },
      routes: { greetings: ['beta'] },
    });
    const { logger, lines } = capture();
    daemon = new Daemon(validateConfig(raw, undefined), { logger });
    await daemon.start();
    const loaded = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('keys loaded'));
    expect(loaded).toMatchObject({ level: 40, keys: 0, noKeyFor: ['beta'] });
    const beta = (await daemon.status()).peers.find((p) => p.peer === 'beta');
    expect(beta?.lastError?.message).toMatch(/^no key: no unexpired key binds alpha and beta/);
    expect(beta?.lastError?.message).toContain('ferry keys generate --peers alpha,beta');
  });

  it('serves metrics at a new address after a reload, and stops serving the old one', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const { raw } = await setUp({ metrics: `127.0.0.1:${p1}` });
    const { logger, lines } = capture();
    daemon = new Daemon(validateConfig(raw, undefined), { logger });
    await daemon.start();
    expect((await fetch(`http://127.0.0.1:${p1}/metrics`)).status).toBe(200);
    await daemon.reload(validateConfig({ ...raw, metrics: `127.0.0.1:${p2}` }, undefined));
    expect((await fetch(`http://127.0.0.1:${p2}/metrics`)).status).toBe(200);
    await expect(fetch(`http://127.0.0.1:${p1}/metrics`)).rejects.toThrow();
    expect(lines.some((l) => l.msg === 'metrics served at /metrics' && l.address === `127.0.0.1:${p2}`)).toBe(true);
  });

  it('keeps 0710 on the root and drop/ and 2770 on drop/<queue>/ while ingesting, and commits by marker only when asked', async () => {
    const { root, raw } = await setUp({ queues: { reports: { commit: 'marker', settle: 0.2 } } });
    const drop = join(root, 'drop');
    const q = join(drop, 'reports');
    mkdirSync(q);
    chmodSync(root, 0o710);
    chmodSync(drop, 0o710);
    chmodSync(q, 0o2770);
    daemon = new Daemon(validateConfig(raw, undefined), { logger: pino({ level: 'silent' }), dropScanMs: 50 });
    await daemon.start();
    writeFileSync(join(q, 'slow.tar'), 'part1');
    await new Promise((r) => setTimeout(r, 1_000)); // five settle times: a stalled writer, not a finished one
    expect(readdirSync(q)).toEqual(['slow.tar']);
    writeFileSync(join(q, 'slow.tar'), 'part1part2');
    writeFileSync(join(q, 'slow.tar.done'), '');
    const inbox = join(root, 'inbox', 'reports', 'new');
    await until(() => existsSync(inbox) && readdirSync(inbox).length === 1);
    expect(readdirSync(q)).toEqual([]);
    const mode = (p: string) => statSync(p).mode & 0o7777;
    expect([mode(root), mode(drop), mode(q)]).toEqual([0o710, 0o710, 0o2770]);
  });
});
