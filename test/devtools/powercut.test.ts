// The power-cut simulator's self-test: after a cut the backing directory holds exactly what was made durable
// (fsync, fdatasync, fsyncdir, `sync`), the users of the mount are dead, and a remount tracks on from there.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, constants, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, open, readFile, readlink, rename, stat, statfs, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forceUnmountPowercut, mountPowercut, type PowercutMount, type PowercutOptions } from '../../src/devtools/powercut.js';

const root = mkdtempSync(join(tmpdir(), 'ferry-powercut-'));
chmodSync(root, 0o755); // the other-user test walks through it
const mounts: string[] = [];
const binds: string[] = [];
const children: ChildProcess[] = [];
let count = 0;

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const b of binds) spawnQuiet('umount', ['-l', b]);
  for (const m of mounts) await forceUnmountPowercut(m);
  rmSync(root, { recursive: true, force: true });
});

function spawnQuiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

interface Booted {
  pc: PowercutMount;
  backing: string;
  mount: string;
  at(p: string): string;
}

/** A fresh backing directory holding `files` (null: a directory) — the durable initial state — mounted; always unmounted after. */
async function withBoot(files: Record<string, string | null>, options: Partial<PowercutOptions>, fn: (t: Booted) => Promise<void>): Promise<void> {
  const dir = join(root, `t${++count}`);
  const backing = join(dir, 'backing');
  const mount = join(dir, 'mnt');
  mkdirSync(backing, { recursive: true });
  for (const [p, content] of Object.entries(files)) {
    if (content === null) mkdirSync(join(backing, p), { recursive: true });
    else {
      mkdirSync(dirname(join(backing, p)), { recursive: true });
      writeFileSync(join(backing, p), content);
    }
  }
  mounts.push(mount);
  const pc = await mountPowercut({ backing, mount, ...options });
  try {
    await fn({ pc, backing, mount, at: (p) => join(mount, p) });
  } finally {
    await forceUnmountPowercut(mount);
  }
}

/** Every path under `dir`: 'dir', '-> target' for symlinks, else the file's content. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out[r] = 'dir';
        walk(p, r);
      } else if (st.isSymbolicLink()) out[r] = `-> ${readlinkSync(p)}`;
      else out[r] = readFileSync(p, 'utf8');
    }
  };
  walk(dir, '');
  return out;
}

async function fsync(p: string, data = false): Promise<void> {
  const fh = await open(p, 'r'); // a directory too: O_RDONLY|O_DIRECTORY, then fsyncdir
  try {
    await (data ? fh.datasync() : fh.sync());
  } finally {
    await fh.close();
  }
}

async function put(p: string, content: string, sync = false): Promise<void> {
  const fh = await open(p, 'w');
  try {
    await fh.writeFile(content);
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A child process; `ready` resolves when it printed "ready" (`signalsReady`) or else once it runs. */
function child(cmd: string, args: string[], opts: { cwd?: string; uid?: number; gid?: number; signalsReady?: boolean } = {}) {
  const { signalsReady, ...spawnOpts } = opts;
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOpts });
  children.push(c);
  let out = '';
  c.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => c.on('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise<void>((r, j) => {
    c.stdout?.on('data', () => out.includes('ready') && r());
    c.on('spawn', () => signalsReady === true || r());
    void exit.then(() => j(new Error(`${cmd} ended before it was ready: ${out}`)));
  });
  return { c, exit, ready, out: () => out };
}

describe('powercut simulator', () => {
  it('a write without fsync is gone after a cut: the file (its directory fsynced) holds its previous durable content', async () => {
    await withBoot({ f: 'v1' }, {}, async (t) => {
      await put(t.at('f'), 'v2');
      await put(t.at('g'), 'new');
      await fsync(t.mount);
      const r = await t.pc.cut();
      expect(tree(t.backing)).toEqual({ f: 'v1', g: '' });
      expect(r.dropped).toEqual(expect.arrayContaining([{ kind: 'content', path: '/f' }, { kind: 'content', path: '/g' }]));
      expect(r.kept).toEqual([]);
    });
  });

  it('a file created and fsynced, but whose directory was never fsynced, is gone after a cut', async () => {
    await withBoot({ 'd/keep': 'k' }, {}, async (t) => {
      await put(t.at('d/new'), 'x', true);
      await t.pc.cut();
      expect(tree(t.backing)).toEqual({ d: 'dir', 'd/keep': 'k' });
    });
  });

  it('a rename without directory fsyncs is undone (old name back, new gone); fsyncing only the source loses the file', async () => {
    await withBoot({ 'a/x': 'X', b: null, tmp: 'T', final: 'F', 'c/y': 'Y', e: null }, {}, async (t) => {
      await rename(t.at('a/x'), t.at('b/x'));
      await rename(t.at('tmp'), t.at('final'));
      await rename(t.at('c/y'), t.at('e/y'));
      await fsync(t.at('c'));
      expect(tree(t.mount)).toMatchObject({ 'b/x': 'X', final: 'T', 'e/y': 'Y' });
      await t.pc.cut();
      expect(tree(t.backing)).toEqual({ a: 'dir', 'a/x': 'X', b: 'dir', tmp: 'T', final: 'F', c: 'dir', e: 'dir' });
    });
  });

  it('a file and its directory both fsynced survive; an fdatasync counts as fsync for content', async () => {
    await withBoot({ d: null }, {}, async (t) => {
      await put(t.at('d/a'), 'A', true);
      const fh = await open(t.at('d/b'), 'w');
      await fh.writeFile('B');
      await fh.datasync();
      await fh.close();
      await fsync(t.at('d'));
      await t.pc.cut();
      expect(tree(t.backing)).toEqual({ d: 'dir', 'd/a': 'A', 'd/b': 'B' });
    });
  });

  it('`sync` makes everything survive', async () => {
    await withBoot({ f: 'v1' }, {}, async (t) => {
      await put(t.at('f'), 'v2');
      await mkdir(t.at('n'));
      await put(t.at('n/x'), 'x');
      await symlink('f', t.at('l'));
      await chmod(t.at('f'), 0o640);
      const now = tree(t.mount);
      await t.pc.sync();
      expect((await t.pc.status()).pending).toEqual({ entries: 0, contents: 0, metadata: 0 });
      await t.pc.cut();
      expect(tree(t.backing)).toEqual(now);
      expect(statSync(join(t.backing, 'f')).mode & 0o777).toBe(0o640);
    });
  });

  it('sync(2)/syncfs(2) never reach the file system (FUSE forwards syncfs only for virtiofs): they make nothing durable', async () => {
    await withBoot({ f: 'v1' }, {}, async (t) => {
      await put(t.at('f'), 'v2');
      execFileSync('sync', ['-f', t.at('f')]); // syncfs(2) on the mount
      const s = await t.pc.status();
      expect({ durable: s.durable, contents: s.pending?.contents }).toEqual({ durable: 0, contents: 1 });
      await t.pc.cut();
      expect(tree(t.backing)).toEqual({ f: 'v1' });
    });
  });

  it('hard links share content durability; unlink of one link without a dir fsync is undone', async () => {
    await withBoot({ a: 'one' }, {}, async (t) => {
      await link(t.at('a'), t.at('b'));
      await fsync(t.mount);
      await put(t.at('b'), 'two', true);
      await unlink(t.at('a'));
      await t.pc.cut();
      expect(tree(t.backing)).toEqual({ a: 'two', b: 'two' });
      expect(statSync(join(t.backing, 'a')).ino).toBe(statSync(join(t.backing, 'b')).ino);
    });
  });

  it('a cut SIGKILLs processes holding a file open, a cwd or a mapping under the mount (sparing its caller), and unmounts bind mounts', async () => {
    await withBoot({ f: 'data', sub: null }, {}, async (t) => {
      const bind = join(dirname(t.mount), 'bind');
      mkdirSync(bind);
      execFileSync('mount', ['--bind', t.at('sub'), bind]);
      binds.push(bind);
      const holder = child('sh', ['-c', 'exec 3<"$0"; echo ready; exec sleep 60', t.at('f')], { signalsReady: true });
      const inCwd = child('sleep', ['60'], { cwd: t.at('sub') });
      await copyFile('/usr/bin/sleep', t.at('sleep')); // run from the mount: mapped, no descriptor, cwd elsewhere
      await chmod(t.at('sleep'), 0o755);
      const mapper = child(t.at('sleep'), ['60'], { cwd: '/' });
      const inBind = child('sleep', ['60'], { cwd: bind });
      await Promise.all([holder.ready, inCwd.ready, mapper.ready, inBind.ready]);
      const mine = await open(t.at('f'), 'r'); // the test itself: spared, as the one who asked for the cut
      const r = await t.pc.cut();
      await mine.close().catch(() => undefined);
      expect(r.spared.map((s) => s.pid)).toEqual([process.pid]);
      for (const p of [holder, inCwd, mapper, inBind]) expect((await p.exit).signal).toBe('SIGKILL');
      const why = Object.fromEntries(r.killed.map((k) => [k.pid, k.why]));
      expect([holder, inCwd, mapper, inBind].map((p) => why[p.c.pid ?? -1])).toEqual(['fd', 'cwd', 'mmap', 'cwd']);
      expect(r.unmounted).toEqual([bind]);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${bind} `);
    });
  });

  it('reorder mode is reproducible per seed, leaves states other than strict and current, and never one the model forbids', async () => {
    const base = { f: 'F1', 'a/old': 'A', b: null, tmp: 'T', keep: 'K' };
    const run = async (options: Partial<PowercutOptions>) => {
      let current: Record<string, string> = {};
      let after: Record<string, string> = {};
      await withBoot(base, options, async (t) => {
        await put(t.at('f'), 'F2'); // content, never fsynced
        await put(t.at('n1'), 'N', true); // content fsynced, its entry not
        await rename(t.at('a/old'), t.at('b/old')); // across directories, neither fsynced
        await mkdir(t.at('c')); // c's entry not fsynced; its own entry x is
        await put(t.at('c/x'), 'X', true);
        await fsync(t.at('c'));
        await rename(t.at('tmp'), t.at('keep')); // inside one directory: atomic
        current = tree(t.backing);
        await t.pc.cut();
        after = tree(t.backing);
      });
      return { current, after };
    };
    const strict = await run({});
    expect(strict.after).toEqual({ f: 'F1', a: 'dir', 'a/old': 'A', b: 'dir', tmp: 'T', keep: 'K' });
    const states = [];
    for (let seed = 1; seed <= 8; seed++) states.push((await run({ mode: 'reorder', seed })).after);
    expect((await run({ mode: 'reorder', seed: 1 })).after).toEqual(states[0]);
    const allowed = new Set(['f', 'a', 'a/old', 'b', 'b/old', 'n1', 'c', 'c/x', 'tmp', 'keep']);
    for (const s of states) {
      expect(Object.keys(s).filter((k) => !allowed.has(k))).toEqual([]);
      expect(['F1', 'F2']).toContain(s.f);
      expect([undefined, 'N']).toContain(s.n1);
      expect([undefined, 'A']).toContain(s['a/old']);
      expect([undefined, 'A']).toContain(s['b/old']);
      expect([s.c, s['c/x']]).toEqual(s.c === undefined ? [undefined, undefined] : ['dir', 'X']);
      expect([['T', 'K'], [undefined, 'T']]).toContainEqual([s.tmp, s.keep]);
    }
    const same = (x: object, y: object) => JSON.stringify(x) === JSON.stringify(y);
    expect(states.filter((s) => !same(s, strict.after) && !same(s, strict.current)).length).toBeGreaterThan(0);
  });

  it('--cut-after N cuts by itself right after the Nth mutating operation', async () => {
    await withBoot({}, { cutAfter: 7 }, async (t) => {
      // 12 operations: mkdir dI (op 2I-1), fsyncdir (op 2I); the cut comes after op 7 = mkdir d4.
      const script = "const fs=require('fs');const d=process.argv[1];const fd=fs.openSync(d,'r');for(let i=1;i<=6;i++){fs.mkdirSync(d+'/d'+i);fs.fsyncSync(fd);console.log(i)}";
      const p = child(process.execPath, ['-e', script, t.mount]);
      const r = await t.pc.exited();
      const end = await p.exit;
      expect(end.code === 0).toBe(false);
      expect(p.out().trim().split('\n')).toEqual(['1', '2', '3']);
      expect(r).toMatchObject({ reason: 'cut-after', ops: 7 });
      expect(tree(t.backing)).toEqual({ d1: 'dir', d2: 'dir', d3: 'dir' });
    });
  });

  it('another (non-root) user can create, write and rename in a 0777 directory and is refused (EACCES) in a 0700 root one', async () => {
    await withBoot({ open: null, closed: null }, {}, async (t) => {
      await chmod(t.at('open'), 0o777);
      await chmod(t.at('closed'), 0o700);
      const script = `const fs=require('fs');const [o,c]=process.argv.slice(1);const out={};
        fs.writeFileSync(o+'/t.tmp','hi');fs.renameSync(o+'/t.tmp',o+'/t');out.read=fs.readFileSync(o+'/t','utf8');
        const fd=fs.openSync(o+'/t','r+');fs.fsyncSync(fd);fs.closeSync(fd);
        for(const [k,f] of [['create',()=>fs.writeFileSync(c+'/x','no')],['list',()=>fs.readdirSync(c)]]){try{f();out[k]='ok'}catch(e){out[k]=e.code}}
        console.log(JSON.stringify(out))`;
      const p = child(process.execPath, ['-e', script, t.at('open'), t.at('closed')], { uid: 65534, gid: 65534, cwd: '/' });
      expect((await p.exit).code).toBe(0);
      expect(JSON.parse(p.out())).toEqual({ read: 'hi', create: 'EACCES', list: 'EACCES' });
      const st = await stat(t.at('open/t'));
      expect([st.uid, st.gid]).toEqual([65534, 65534]);
      await t.pc.unmount();
      expect(statSync(join(t.backing, 'open/t')).uid).toBe(65534);
    });
  });

  it('node fs calls behave as on a normal file system, and a clean unmount keeps everything', async () => {
    await withBoot({ final: 'old' }, {}, async (t) => {
      await writeFile(t.at('tmp'), 'new');
      await rename(t.at('tmp'), t.at('final'));
      expect(await readFile(t.at('final'), 'utf8')).toBe('new');
      await writeFile(t.at('a'), 'a');
      await expect(link(t.at('a'), t.at('final'))).rejects.toMatchObject({ code: 'EEXIST' });
      await link(t.at('a'), t.at('a2'));
      const [sa, sb] = [await stat(t.at('a')), await stat(t.at('a2'))];
      expect([sa.ino, sa.nlink]).toEqual([sb.ino, 2]);
      await expect(writeFile(t.at('a'), 'x', { flag: 'wx' })).rejects.toMatchObject({ code: 'EEXIST' });
      await symlink('a', t.at('l'));
      await symlink('/nowhere/at/all', t.at('dangling'));
      expect([await readlink(t.at('l')), await readlink(t.at('dangling'))]).toEqual(['a', '/nowhere/at/all']);
      await expect(open(t.at('l'), constants.O_RDONLY | constants.O_NOFOLLOW)).rejects.toMatchObject({ code: 'ELOOP' });
      expect((await statfs(t.mount)).bsize).toBeGreaterThan(0);
      const before = tree(t.mount);
      await t.pc.unmount();
      expect(tree(t.backing)).toEqual(before);
    });
  });

  it('a remount after a cut shows exactly the surviving state and the simulator keeps tracking from it', async () => {
    await withBoot({ 'd/a': 'A' }, {}, async (t) => {
      await put(t.at('d/a'), 'A2', true);
      await put(t.at('d/b'), 'B', true);
      await fsync(t.at('d'));
      await put(t.at('d/c'), 'C');
      await t.pc.cut();
      const survived = { d: 'dir', 'd/a': 'A2', 'd/b': 'B' };
      await t.pc.remount();
      expect(tree(t.mount)).toEqual(survived);
      expect(await t.pc.status()).toMatchObject({ ops: 0, pending: { entries: 0, contents: 0, metadata: 0 } });
      await put(t.at('d/a'), 'A3');
      await unlink(t.at('d/b'));
      await t.pc.cut();
      expect(tree(t.backing)).toEqual(survived);
    });
  });
});
