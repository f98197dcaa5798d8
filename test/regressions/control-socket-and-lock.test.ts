// Regression (red team, findings 5 and 6): the daemon's control socket is an abstract Unix socket, which has no file
// mode: any local user could ask for `status` (peer names, errors, paths) and `resync` a stopped channel — clearing
// the EDEDUPE_ROLLBACK alarm that keeps a restored spool from delivering twice. And the socket was the only
// one-daemon lock: a second daemon started in another network namespace did not see it and ran on the same spool.
//
// Now a request must carry the token in state/control.token (0600, read only by the spool's user), and the lock is
// also an flock(2) on state/daemon.lock, which namespaces do not split.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock, askDaemon, controlAddress } from '../../src/daemon/lock.js';
import { REPO, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const LOCK_JS = join(REPO, 'dist', 'daemon', 'lock.js');

function spoolRoot(name: string): string {
  const root = join(tmp.path, name);
  mkdirSync(join(root, 'state'), { recursive: true, mode: 0o700 });
  return root;
}

/** What a raw connection to the control socket gets back for `line`. */
function raw(root: string, line: string): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection(controlAddress(root));
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${line}\n`));
    s.on('data', (d: string) => { buf += d; });
    s.on('error', () => resolve(buf));
    s.on('close', () => resolve(buf));
  });
}

/** Runs `code` (with `lock` imported from dist) in a child, optionally in a new network namespace; its stdout. */
function child(code: string, opts: { netns?: boolean } = {}): { stdout: string; status: number | null } {
  const argv = [process.execPath, '--input-type=module', '-e', `import * as lock from ${JSON.stringify(LOCK_JS)}; ${code}`];
  const r = opts.netns ? spawnSync('unshare', ['--net', '--', ...argv], { encoding: 'utf8' }) : spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8' });
  return { stdout: r.stdout.trim(), status: r.status };
}

describe('the control socket', () => {
  it('answers a request with the token, and nothing without it', async () => {
    const root = spoolRoot('a');
    const lock = await acquireLock(root, async (line) => ({ got: line }));
    try {
      expect(await askDaemon(root, 'status')).toEqual({ got: 'status' });
      expect(await raw(root, 'status')).toBe('');
      expect(await raw(root, 'resync beta')).toBe('');
      expect(await raw(root, `${'0'.repeat(48)} resync beta`)).toBe('');
      // Another local user cannot read the token, so it gets nothing (askDaemon treats that as "no daemon").
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '--input-type=module', '-e',
        `import * as lock from ${JSON.stringify(LOCK_JS)}; console.log(JSON.stringify(await lock.askDaemon(${JSON.stringify(root)}, 'resync beta')))`], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe('undefined');
      expect(statSync(join(root, 'state', 'control.token')).mode & 0o777).toBe(0o600);
    } finally {
      await new Promise<void>((resolve) => lock.close(() => resolve()));
    }
  });
});

describe('the one-daemon lock', () => {
  it('a second lock on the spool fails with ELOCKED, in this network namespace and in another', async () => {
    const root = spoolRoot('b');
    const lock = await acquireLock(root, async () => ({}));
    try {
      await expect(acquireLock(root, async () => ({}))).rejects.toMatchObject({ code: 'ELOCKED' });
      const other = child(`try { await lock.acquireLock(${JSON.stringify(root)}, async () => ({})); console.log('LOCKED'); process.exit(0); } catch (e) { console.log(e.code); }`, { netns: true });
      expect(other.stdout).toBe('ELOCKED');
    } finally {
      await new Promise<void>((resolve) => lock.close(() => resolve()));
    }
    // Released: another namespace takes it now.
    const after = child(`const s = await lock.acquireLock(${JSON.stringify(root)}, async () => ({})); console.log('LOCKED'); s.close();`, { netns: true });
    expect(after.stdout).toBe('LOCKED');
  });

  it('a holder killed with SIGKILL leaves no stale lock', async () => {
    const root = spoolRoot('c');
    const holder = spawn('unshare', ['--net', '--', process.execPath, '--input-type=module', '-e',
      `import * as lock from ${JSON.stringify(LOCK_JS)}; await lock.acquireLock(${JSON.stringify(root)}, async () => ({})); console.log('HELD'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.on('data', (d: Buffer) => { if (d.toString().includes('HELD')) resolve(); }));
    await expect(acquireLock(root, async () => ({}))).rejects.toMatchObject({ code: 'ELOCKED' });
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    const lock = await acquireLock(root, async () => ({}));
    await new Promise<void>((resolve) => lock.close(() => resolve()));
  });
});
