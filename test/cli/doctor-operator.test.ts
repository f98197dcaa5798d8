// ferry doctor and the CLI on a host set up the way the README's Operations section sets one up:
// each precondition an operator can get wrong fails with its own fix, and a healthy host passes.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { runChecks, type Check } from '../../src/cli/doctor.js';
import { gatherStatus } from '../../src/cli/status.js';
import { validateConfig } from '../../src/config/config.js';
import { Daemon, type DaemonStatus } from '../../src/daemon/daemon.js';
import { acquireLock } from '../../src/daemon/lock.js';
import { collect, childEnv, filesBelow, useTempDir } from '../fixtures/spool.js';
import { BIN, ferry, oneErrorLine, prepared, type Install } from './cli.js';

const tmp = useTempDir();
const NOBODY = 65534;
const failing = (checks: Check[]) => checks.filter((c) => !c.ok && !c.warning).map((c) => c.name);
const check = (checks: Check[], name: string) => checks.find((c) => c.name === name);
const modeOf = (path: string) => statSync(path).mode & 0o7777;

/** A host with a spool and a local route (no peers: nothing here needs sshd). */
async function host(): Promise<Install> {
  const inst = await prepared(tmp.path, 'routes = { "*" = ["alpha"] }\n');
  mkdirSync(inst.keys, { mode: 0o700 });
  return inst;
}
const doctor = (inst: Install) => runChecks({ config: inst.config });

/** Runs `ferry <args>` as another user (runuser). */
function runAs(user: string, args: readonly string[]) {
  return collect(spawn('runuser', ['-u', user, '--', process.execPath, BIN, ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
}
const hasUser = (user: string) => { try { execFileSync('id', ['-u', user], { stdio: 'ignore' }); return true; } catch { return false; } };

describe('ferry doctor on an operator\'s host', () => {
  it('says ok (not warn) for a running daemon, and passes every check on a healthy host', async () => {
    const inst = await host();
    const daemon = new Daemon(validateConfig({ host: 'alpha', root: inst.root, keys: inst.keys, routes: { '*': ['alpha'] } }, undefined), { logger: pino({ level: 'silent' }) });
    await daemon.start();
    try {
      const checks = await doctor(inst);
      expect(failing(checks)).toEqual([]);
      expect(check(checks, 'daemon')).toMatchObject({ ok: true });
      expect(check(checks, 'daemon')?.warning).toBeFalsy();
      expect(check(checks, 'spool')?.detail).toContain('one mount (link probe)');
    } finally {
      await daemon.stop();
    }
  });

  it('accepts 0710 on the root and drop/ and 2770 on drop/<queue>/, and neither doctor nor status changes them', async () => {
    const inst = await host();
    const drop = join(inst.root, 'drop');
    mkdirSync(join(drop, 'reports'));
    chmodSync(inst.root, 0o710);
    chmodSync(drop, 0o710);
    chmodSync(join(drop, 'reports'), 0o2770);
    const checks = await doctor(inst);
    expect(failing(checks)).toEqual([]);
    await gatherStatus({ config: inst.config });
    expect([modeOf(inst.root), modeOf(drop), modeOf(join(drop, 'reports'))]).toEqual([0o710, 0o710, 0o2770]);
  });

  it('fails the spool check for a drop queue open to others, without chmod-ing anything', async () => {
    const inst = await host();
    const q = join(inst.root, 'drop', 'reports');
    mkdirSync(q);
    chmodSync(q, 0o2777);
    const checks = await doctor(inst);
    expect(failing(checks)).toContain('spool');
    expect(check(checks, 'spool')?.fix).toContain('2770');
    expect(modeOf(q)).toBe(0o2777);
  });

  it('fails with a chown fix when a file in the spool belongs to another user (a root `ferry send`)', async () => {
    const inst = await host();
    const commit = join(inst.root, 'state', 'commits', 'new', 'foreign');
    writeFileSync(commit, 'x', { mode: 0o600 });
    chownSync(commit, NOBODY, NOBODY);
    const checks = await doctor(inst);
    expect(failing(checks)).toContain('spool owner');
    expect(check(checks, 'spool owner')?.detail).toContain(commit);
    expect(check(checks, 'spool owner')?.fix).toMatch(/^`chown -R root: /);
  });

  it('reports the running daemon\'s failing accept pass, with a chown fix for EACCES', async () => {
    const inst = await host();
    const fake: DaemonStatus = {
      pid: 1, host: 'alpha', started: Date.now(), updated: Date.now(), peers: [],
      receiver: { delivered: 0, duplicates: 0, quarantined: 0, bundles: 0 } as DaemonStatus['receiver'], landing: [], quarantine: 0,
      lastAcceptError: { at: Date.now(), message: `EACCES: permission denied, open '${inst.root}/state/commits/new/x'` },
    };
    const lock = await acquireLock(inst.root, () => Promise.resolve(fake));
    try {
      const checks = await doctor(inst);
      expect(failing(checks)).toContain('daemon accept');
      expect(check(checks, 'daemon accept')?.fix).toContain(`chown -R root: ${inst.root}`);
    } finally {
      await new Promise((resolve) => lock.close(resolve));
    }
  });

  it('fails the keys check for a key file of another owner with a chown fix, loading keys as the spool\'s owner', async () => {
    const inst = await host();
    const r = await ferry(inst, ['keys', 'generate', '--peers', 'alpha,beta']);
    expect(r.code).toBe(0);
    const file = join(inst.keys, readdirSync(inst.keys)[0] as string);
    chownSync(file, NOBODY, NOBODY);
    const checks = await doctor(inst);
    expect(failing(checks)).toContain('keys');
    expect(check(checks, 'keys')?.fix).toContain(`chown root: ${file}`);
  });

  it('fails the spool check, saying what to unmount, when a directory is mounted onto the spool\'s inbox', async () => {
    const inst = await host();
    const elsewhere = join(tmp.path, 'elsewhere');
    mkdirSync(join(elsewhere, 'q'), { recursive: true });
    const inbox = join(inst.root, 'inbox');
    // Needs root (tests and CI run as root): without it the mount fails and so does this test, saying why.
    execFileSync('mount', ['--bind', elsewhere, inbox], { stdio: 'ignore' });
    try {
      const checks = await doctor(inst);
      expect(failing(checks)).toContain('spool');
      expect(check(checks, 'spool')?.fix).toContain('must share one mount');
      expect(check(checks, 'spool')?.fix).toContain('ferry peer add PEER --print');
      expect(filesBelow(elsewhere)).toEqual(['q']);
    } finally {
      execFileSync('umount', [inbox]);
    }
  });

  it('tells a user who cannot read the spool to chown it to themselves (the daemon\'s user)', async (ctx) => {
    if (!hasUser('ferry') || process.geteuid?.() !== 0) { ctx.skip(); return; }
    const inst = await host();
    chmodSync(tmp.path, 0o755);
    chmodSync(inst.config, 0o644);
    const done = await runAs('ferry', ['doctor', '--config', inst.config]);
    expect(done?.code).toBe(1);
    expect(done?.stdout).toMatch(/FAIL {2}spool: .*EACCES/);
    expect(done?.stdout).toContain(`fix: the spool must belong to the user the daemon runs as: \`chown -R ferry: ${inst.root}\``);
  });

  it('says why the config file is not readable: the directory that cannot be searched', async (ctx) => {
    if (!hasUser('ferry') || process.geteuid?.() !== 0) { ctx.skip(); return; }
    const inst = await host();
    chmodSync(tmp.path, 0o700);
    const done = await runAs('ferry', ['status', '--config', inst.config]);
    expect(done?.code).toBe(1);
    expect(oneErrorLine(done?.stderr ?? '')).toBe(true);
    expect(done?.stderr).toContain(`config file ${inst.config} is not readable by uid`);
    expect(done?.stderr).toContain(`directory ${tmp.path} (mode 0700, owner uid 0) is not searchable`);
  });
});

describe('ferry CLI as an operator runs it', () => {
  it('refuses `ferry send` by a user other than the spool\'s owner in one sentence naming the owner and sudo -u, committing nothing', async () => {
    const inst = await host();
    chownSync(inst.root, NOBODY, NOBODY);
    const before = filesBelow(inst.root);
    const r = await ferry(inst, ['send', 'greetings'], { input: 'hello' });
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toBe(true);
    expect(r.stderr).toContain('belongs to uid 65534 (nobody) but this command runs as uid 0 (root)');
    expect(r.stderr).toContain('`sudo -u nobody ferry …`');
    expect(filesBelow(inst.root)).toEqual(before);
    // Looking is still allowed.
    expect((await ferry(inst, ['status'])).code).toBe(0);
  });

  it('exits quietly with status 0 when its reader goes away (ferry status --watch | head -1)', async () => {
    const inst = await host();
    const child = spawn(process.execPath, [BIN, '--config', inst.config, 'status', '--watch', '0.05'], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdout.destroy();
    const code = await new Promise((resolve) => child.once('close', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('`ferry keys generate` creates missing parents 0755 and only the key directory 0700', async () => {
    const inst = await host();
    const keys = join(tmp.path, 'etc', 'ferry', 'keys');
    const r = await ferry({ ...inst, keys }, ['keys', 'generate', '--peers', 'alpha,beta']);
    expect(r.code).toBe(0);
    expect(modeOf(join(tmp.path, 'etc'))).toBe(0o755);
    expect(modeOf(join(tmp.path, 'etc', 'ferry'))).toBe(0o755);
    expect(modeOf(keys)).toBe(0o700);
  });

  it('`ferry take --help` lists every FERRY_* variable --exec sets', async () => {
    const inst = await host();
    const r = await ferry(inst, ['take', '--help']);
    for (const v of ['FERRY_FILE', 'FERRY_ID', 'FERRY_ORIGIN', 'FERRY_QUEUE', 'FERRY_HEADERS', 'FERRY_ATTEMPT', 'FERRY_REPLY_TO', 'FERRY_CORRELATION_ID']) {
      expect(r.stdout.replace(/\s+/g, ' ')).toContain(v);
    }
  });
});
