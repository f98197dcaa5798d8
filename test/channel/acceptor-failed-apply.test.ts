// An accept pass whose journal committed but whose apply failed (full disk) is finished, never sealed again.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { parseBundleName } from '../../src/envelope/bundle-name.js';
import { ChannelDir } from '../../src/channel/channel-state.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('acceptor after a failed apply', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('finishes the committed pass instead of sealing its sources again under new sequence numbers', async () => {
    await sodiumReady();
    dir = mkdtempSync(join(tmpdir(), 'ferry-accept-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'gamma', create: true });
    const keys: Record<string, SealKey> = {
      alpha: { id: 'ka', secret: randomBytes(32), peers: ['alpha', 'gamma'] },
      beta: { id: 'kb', secret: randomBytes(32), peers: ['beta', 'gamma'] },
    };
    const acceptor = new Acceptor(spool, {
      destinations: () => ['alpha', 'beta'],
      compression: () => 'none',
      sealingKey: (peer) => keys[peer] as SealKey,
      lifetimeMs: 60_000,
    }, quiet);
    await acceptor.recover();
    for (let i = 0; i < 5; i++) await spool.send('from-gamma', `m${i}`);

    // The second peer's sequence write hits a full disk once, after alpha's bundle and sequence are in place.
    const write = ChannelDir.prototype.write;
    // (beta's first write creates its channel; the second is the sequence advance inside apply).
    let betaWrites = 0;
    ChannelDir.prototype.write = async function (this: ChannelDir, state) {
      if (this.peer === 'beta' && ++betaWrites === 2) {
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      }
      return write.call(this, state);
    };
    try {
      await expect(acceptor.acceptOnce()).rejects.toThrow(/no space/);
      expect(readdirSync(spool.layout.state)).toContain('accept.journal'); // committed, not applied
      await acceptor.acceptOnce();
      await acceptor.acceptOnce();
    } finally {
      ChannelDir.prototype.write = write;
    }
    const count = (peer: string) => readdirSync(join(spool.layout.channel(peer), 'out')).reduce((n, b) => n + (parseBundleName(b)?.count ?? 0), 0);
    expect(count('alpha')).toBe(5); // not 10: the sources were not sealed a second time
    expect(count('beta')).toBe(5);
    expect(await spool.outbox.entries()).toEqual([]);
    expect((await acceptor.channel('beta').read()).nextSeq).toBe(6);
  });
});
