// Hostile entries in outbox/<q>/new: a symlink, a FIFO or a hard-linked file is never read or shipped.
// The first two are dead-lettered with a reason; a hard link is held (and dead-lettered after a minute).
import { execFileSync } from 'node:child_process';
import { linkSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Acceptor } from '../../src/channel/acceptor.js';
import { sodiumReady, type SealKey } from '../../src/envelope/index.js';
import { Spool } from '../../src/spool/spool.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe('hostile outbox entries', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  async function setup() {
    await sodiumReady();
    dir = mkdtempSync(join(tmpdir(), 'ferry-outbox-hostile-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'alpha', create: true });
    const key: SealKey = { id: 'k', secret: randomBytes(32), peers: ['alpha', 'beta'] };
    const acceptor = new Acceptor(spool, { destinations: () => ['beta'], compression: () => 'none', sealingKey: () => key, lifetimeMs: 60_000 }, quiet);
    await acceptor.recover();
    await spool.outbox.ensureQueue('q');
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'must never leave this host');
    return { spool, acceptor, secret, newDir: spool.layout.outboxNew('q') };
  }
  const shipped = (spool: Spool) => { try { return readdirSync(join(spool.layout.channel('beta'), 'out')); } catch { return []; } };

  it('dead-letters a symlink with a reason and ships nothing', async () => {
    const { spool, acceptor, secret, newDir } = await setup();
    symlinkSync(secret, join(newDir, 'link'));
    const r = await acceptor.acceptOnce();
    expect(r.messages).toBe(0);
    expect(readdirSync(join(spool.layout.deadOut, 'outbox')).sort()).toEqual(['q.link', 'q.link.reason.json']);
    expect(shipped(spool)).toEqual([]);
  });

  it('dead-letters a FIFO without blocking on it', async () => {
    const { spool, acceptor, newDir } = await setup();
    execFileSync('mkfifo', [join(newDir, 'fifo')]);
    await acceptor.acceptOnce();
    expect(readdirSync(join(spool.layout.deadOut, 'outbox'))).toContain('q.fifo.reason.json');
    expect(shipped(spool)).toEqual([]);
  });

  it('holds a hard-linked file, then dead-letters it, never shipping a file linked from elsewhere', async () => {
    const { spool, acceptor, secret, newDir } = await setup();
    linkSync(secret, join(newDir, 'hard'));
    // A fresh second link may be a maildir producer between link() and unlink(): held, not shipped.
    // (After a minute it is dead-lettered; ctime cannot be set back, so that branch is left to the code.)
    for (let i = 0; i < 3; i++) {
      const r = await acceptor.acceptOnce();
      expect(r.messages).toBe(0);
      expect(r.held).toBe(1);
    }
    expect(shipped(spool)).toEqual([]);
    expect(readdirSync(newDir)).toEqual(['hard']);
  });
});
