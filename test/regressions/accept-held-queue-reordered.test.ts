// A queue's entry held for want of a route (or key) must still ship before that queue's later entries
// once the route arrives (I9); a review of the paged outbox scan found a later one could go first.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';
import { shippedPayloads } from '../fixtures/bundles.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('held entries and order', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  for (const restart of [true, false]) {
    it(`ships a held queue in commit order once its route appears (${restart ? 'with' : 'without'} a scan restart)`, async () => {
      await sodiumReady();
      dir = mkdtempSync(join(tmpdir(), 'ferry-held-order-'));
      const spool = await Spool.open(join(dir, 'spool'), { host: 'gamma', create: true });
      const key: SealKey = { id: 'ka', secret: randomBytes(32), peers: ['alpha', 'gamma'] };
      let routed = false;
      const acceptor = new Acceptor(spool, {
        destinations: (q) => (q === 'a' && !routed ? [] : ['alpha']), compression: () => 'none', sealingKey: () => key, lifetimeMs: 3_600_000,
      }, quiet, { scanEntries: 50, batchMessages: 3, bundleMessages: 3 });
      await acceptor.recover();
      await spool.send('a', 'a1');
      for (let i = 0; i < 5; i++) await spool.send('b', `b${i}`);
      await spool.send('a', 'a2');

      expect((await acceptor.acceptOnce()).messages).toBe(3); // a1 held, b0..b2 taken; the scan stops mid-way
      routed = true;
      if (restart) acceptor.restartScan();
      for (let i = 0; i < 10 && (await acceptor.acceptOnce()).messages > 0;) i++;
      await acceptor.acceptOnce(); // a new cycle picks up whatever was held behind a1

      const seen = await shippedPayloads(join(spool.layout.channel('alpha'), 'out'), key);
      expect(seen.filter((m) => m.startsWith('a'))).toEqual(['a1', 'a2']);
      expect(seen.filter((m) => m.startsWith('b'))).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
      expect(readdirSync(spool.layout.commitsNew)).toEqual([]);
    });
  }
});
