// /metrics: served only on loopback, counting what the daemon really did.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { parseLoopback } from '../../src/daemon/metrics.js';
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

describe('metrics', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it.each([
    ['127.0.0.1:9464', true], ['localhost:9464', true], ['[::1]:9464', true], ['127.1.2.3:1', true],
    ['0.0.0.0:9464', false], ['10.0.0.1:9464', false], ['example.com:80', false], ['127.0.0.1', false], ['127.0.0.1:70000', false],
  ])('accepts only loopback addresses: %s → %s', (address, ok) => {
    if (ok) expect(() => parseLoopback(address)).not.toThrow();
    else expect(() => parseLoopback(address)).toThrow(expect.objectContaining({ code: 'ECONFIG' }));
  });

  it('refuses a non-loopback metrics address in the config, naming the field', () => {
    expect(() => validateConfig({ host: 'a', metrics: '0.0.0.0:9464' }, '/x.toml')).toThrow(/`metrics`/);
  });

  it('serves counters and gauges that follow deliveries through a local route', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-metrics-'));
    const port = await freePort();
    const root = join(dir, 'spool');
    const keys = join(dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    const spool = await Spool.open(root, { host: 'solo', create: true });
    const config = validateConfig({ host: 'solo', root, keys, metrics: `127.0.0.1:${port}`, routes: { '*': ['solo'] } }, undefined);
    const daemon = new Daemon(config, { logger: pino({ level: 'silent' }) });
    await daemon.start();
    try {
      for (let i = 0; i < 5; i++) await spool.send('jobs', `job ${i}`);
      const deadline = Date.now() + 20_000;
      let text = '';
      while (Date.now() < deadline) {
        text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        // Sent counts what the receipt proves delivered: it follows the delivery by one receipt poll.
        if (/^ferry_delivered_messages_total 5$/m.test(text) && /^ferry_sent_messages_total\{peer="solo"\} 5$/m.test(text)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(text).toMatch(/^ferry_delivered_messages_total 5$/m);
      expect(text).toMatch(/^ferry_inbox_messages\{queue="jobs"\} 5$/m);
      expect(text).toMatch(/^ferry_sent_messages_total\{peer="solo"\} 5$/m);
      expect(text).toMatch(/^ferry_bundle_ship_seconds_count\{peer="solo"\} [1-5]$/m);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    } finally {
      await daemon.stop();
    }
  });
});
