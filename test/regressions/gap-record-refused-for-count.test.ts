// Regression (red team 2, finding 1; fixed: the message limit does not apply to gap records, and a gap record is never
// given up by its sender).
// Red team 2: a bundle refused (authentic) for its message count is replaced by a gap record of the same count;
// the receiver applies the same count limit to the gap record, refuses it authentically, the sender "gives it up"
// and deadLetterWithGap moves the gap record itself to dead/: the channel waits for the gap forever.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/spool/spool.js';
import { useLocalPairs } from '../fixtures/local-pair.js';

const makePair = useLocalPairs();
const ls = (p: string) => (existsSync(p) ? readdirSync(p).sort() : []);

describe('gap record refused for the count of the bundle it replaces', () => {
  it('was dead-lettered itself and stalled the channel for ever; now the gap is accepted and the message behind it delivered', async () => {
    const { roots, alpha: a, beta: b } = await makePair({ receive: { beta: { max_bundle_messages: 2 } } });
    const spool = await Spool.open(roots.alpha, { host: 'alpha' });
    // three messages in one transaction: one bundle of 3 (over beta's limit of 2)
    const tx = spool.transaction();
    for (let i = 0; i < 3; i++) await tx.send('q', `big${i}`);
    await tx.commit();
    await a.start();
    await b.start();
    await new Promise((r) => setTimeout(r, 4000));
    await spool.send('q', 'after');   // a message behind the gap
    const inbox = join(roots.beta, 'inbox', 'q', 'new');
    const t0 = Date.now();
    while (Date.now() - t0 < 15_000 && ls(inbox).length === 0) await new Promise((r) => setTimeout(r, 100));
    // The gap record is accepted and 'after' is delivered behind it (before the fix it never was).
    expect(ls(inbox).length, JSON.stringify((await b.status()).landing[0])).toBe(1);
  }, 40_000);
});
