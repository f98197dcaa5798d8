// Two spools on this host, shipped through the local transport: the receipt protocol end to end, without SSH.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { useLocalPairs } from '../fixtures/local-pair.js';

const makePair = useLocalPairs();

describe('local smoke', () => {
  it('alpha ships to beta and every message arrives once, in order, and alpha forgets only what receipts prove', async () => {
    const { roots, alpha: a, beta: b } = await makePair();
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
