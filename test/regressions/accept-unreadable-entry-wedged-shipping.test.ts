// One outbox entry the daemon could not read (a commit file left by `ferry send` run as root, found by the
// operations walk) failed every accept pass: no message from the host shipped until it was chowned.
import { mkdtempSync, promises as fsp, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { parseBundleName } from '../../src/envelope/bundle-name.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('an unreadable outbox entry', () => {
  let dir = '';
  const open = fsp.open;
  afterEach(() => {
    fsp.open = open;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is held while the others ship, and dead-lettered once it outlives the lifetime', async () => {
    await sodiumReady();
    dir = mkdtempSync(join(tmpdir(), 'ferry-unreadable-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'gamma', create: true });
    const key: SealKey = { id: 'ka', secret: randomBytes(32), peers: ['alpha', 'gamma'] };
    let lifetimeMs = 60_000;
    const acceptor = new Acceptor(spool, { destinations: () => ['alpha'], compression: () => 'none', sealingKey: () => key, get lifetimeMs() { return lifetimeMs; } }, quiet);
    await acceptor.recover();
    await spool.send('q', 'root-owned');
    const [unreadable] = readdirSync(spool.layout.commitsNew);
    await spool.send('q', 'fine-1');
    await spool.send('q', 'fine-2');
    fsp.open = (async (path: Parameters<typeof open>[0], ...rest: unknown[]) => {
      if (String(path).endsWith(`/${unreadable}`)) throw Object.assign(new Error(`EACCES: permission denied, open '${String(path)}'`), { code: 'EACCES' });
      return (open as (...a: unknown[]) => ReturnType<typeof open>)(path, ...rest);
    }) as typeof open;

    const r = await acceptor.acceptOnce();
    expect(r.messages).toBe(2);
    expect(r.held).toBe(1);
    const out = join(spool.layout.channel('alpha'), 'out');
    expect(readdirSync(out).reduce((n, b) => n + (parseBundleName(b)?.count ?? 0), 0)).toBe(2);
    expect(readdirSync(spool.layout.commitsNew)).toEqual([unreadable]);

    lifetimeMs = -1; // outlived
    await acceptor.acceptOnce();
    expect(readdirSync(spool.layout.commitsNew)).toEqual([]);
    const dead = readdirSync(join(spool.layout.deadOut, 'outbox'));
    expect(dead).toContain(unreadable);
    expect(dead).toContain(`${unreadable}.reason.json`);
  });
});
