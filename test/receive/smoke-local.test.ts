// Two spools on this host, shipped through the local transport: the receipt protocol end to end, without SSH.
import { mkdtempSync, rmSync, readdirSync, mkdirSync, chmodSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { generatePairKey, keyFileName, writeKeyFile } from '../../src/keys/index.js';
import { Spool } from '../../src/spool/spool.js';
import { LocalTransport } from '../../src/transport/index.js';

const dirs: string[] = [];
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('local smoke', () => {
  it('alpha ships to beta and every message arrives once, in order, and alpha forgets only what receipts prove', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ferry-smoke-'));
    dirs.push(dir);
    const roots = { alpha: join(dir, 'alpha'), beta: join(dir, 'beta') };
    const keys = join(dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    const key = await generatePairKey('alpha', 'beta');
    await writeKeyFile(join(keys, keyFileName(key)), key);
    for (const [h, r] of Object.entries(roots)) await Spool.open(r, { host: h, create: true });
    mkdirSync(join(roots.beta, 'landing', 'alpha'), { mode: 0o700 });
    chmodSync(join(roots.beta, 'landing', 'alpha'), 0o2770);
    const cfg = (host: string, peer: string) => validateConfig({ host, root: roots[host as 'alpha'], keys, peers: { [peer]: { ssh: `x@127.0.0.1:22`, identity: '/x', known_hosts: '/x' } }, routes: { '*': [peer] } }, undefined);
    const log = pino({ level: process.env.SMOKE_LOG ?? 'silent' });
    const a = new Daemon(cfg('alpha', 'beta'), { logger: log, rescanMs: 200, transportFor: (p) => new LocalTransport({ peer: p, dir: join(roots[p as 'beta'], 'landing', 'alpha') }) });
    const b = new Daemon(cfg('beta', 'alpha'), { logger: log, rescanMs: 200, transportFor: (p) => new LocalTransport({ peer: p, dir: join(roots[p as 'alpha'], 'landing', 'beta') }) });
    daemons.push(a, b);
    mkdirSync(join(roots.alpha, 'landing', 'beta'), { mode: 0o2770 });
    await a.start();
    await b.start();
    const spool = await Spool.open(roots.alpha, { host: 'alpha' });
    for (let i = 0; i < 50; i++) await spool.send('q', `m${i}`);
    const inbox = join(roots.beta, 'inbox', 'q', 'new');
    const t0 = Date.now();
    while (Date.now() - t0 < 20_000) {
      const n = (() => { try { return readdirSync(inbox).length; } catch { return 0; } })();
      const out = readdirSync(join(roots.alpha, 'state', 'channels', 'beta', 'out')).length;
      if (n === 50 && out === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const beta = await Spool.open(roots.beta, { host: 'beta' });
    const got: string[] = [];
    for (;;) {
      const m = await beta.take('q');
      if (!m) break;
      got.push((await m.read()).toString());
      await m.commit();
    }
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    expect(readdirSync(join(roots.alpha, 'state', 'channels', 'beta', 'out'))).toEqual([]);
    expect(readdirSync(join(roots.beta, 'landing', 'alpha')).sort()).toEqual(['ferry.receipt']);
  });
});
