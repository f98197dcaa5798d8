// `ferry init` and `ferry send` run as the operator runs them (node bin/ferry): layout, ids, one transaction per
// command, and one clear error line — with nothing created or committed — when the input or config is wrong.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SpoolLayout } from '../../src/spool/layout.js';
import { Spool } from '../../src/spool/spool.js';
import { childEnv, filesBelow, readOutbox, runNode, useTempDir } from '../fixtures/spool.js';
import { BIN, ferry, install, oneErrorLine, prepared, spoolOf } from './cli.js';

const tmp = useTempDir();

describe('ferry init', () => {
  it('creates the spool layout (0700) and a starter config naming the host, root and keys', async () => {
    const inst = install(tmp.path);
    const r = await ferry(inst, ['init', '--host', 'alpha']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toContain(`spool ready at ${inst.root}`);
    for (const dir of new SpoolLayout(inst.root).fixedDirs) expect((statSync(dir).mode & 0o777).toString(8)).toBe('700');
    const config = readFileSync(inst.config, 'utf8');
    expect(config).toContain('host = "alpha"');
    expect(config).toContain(`root = "${inst.root}"`);
    expect(config).toContain(`keys = "${inst.keys}"`);
    expect((statSync(inst.keys).mode & 0o777).toString(8)).toBe('700');

    // Run again: still fine, and the operator's config is left alone.
    writeFileSync(inst.config, `${config}# edited by the operator\n`);
    const again = await ferry(inst, ['init']);
    expect(again.code).toBe(0);
    expect(readFileSync(inst.config, 'utf8')).toContain('# edited by the operator');
  });
});

describe('ferry send', () => {
  it('sends several files as one transaction and prints one id per line', async () => {
    const inst = await prepared(tmp.path);
    const files = [['a.json', Buffer.from('{"n":1}')], ['b.bin', randomBytes(70_000)], ['c.txt', Buffer.from('')]] as const;
    for (const [name, data] of files) writeFileSync(join(tmp.path, name), data);
    const r = await ferry(inst, ['send', 'orders', ...files.map(([name]) => join(tmp.path, name))]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const ids = r.stdout.trimEnd().split('\n');
    expect(ids).toHaveLength(3);
    const spool = await spoolOf(inst);
    expect(await spool.outbox.entries()).toHaveLength(1);
    const messages = await readOutbox(spool);
    expect(messages.map((m) => m.id)).toEqual(ids);
    messages.forEach((m, i) => {
      expect(m.queue).toBe('orders');
      expect(m.payload.equals(files[i]?.[1] as Buffer)).toBe(true);
    });
  });

  it('sends stdin when no file (or "-") is given', async () => {
    const inst = await prepared(tmp.path);
    const payload = Buffer.concat([Buffer.from('from a pipe\n'), randomBytes(1000)]);
    const plain = await ferry(inst, ['send', 'greetings'], { input: payload });
    const dash = await ferry(inst, ['send', 'greetings', '-'], { input: 'dash' });
    for (const r of [plain, dash]) expect({ code: r.code, stderr: r.stderr, lines: r.stdout.trimEnd().split('\n').length }).toEqual({ code: 0, stderr: '', lines: 1 });
    const messages = await readOutbox(await spoolOf(inst));
    expect(messages.map((m) => m.payload)).toEqual([payload, Buffer.from('dash')]);
    expect(messages[0]?.id).toBe(plain.stdout.trim());
  });

  it('keeps --header values with each message, not in the payload', async () => {
    const inst = await prepared(tmp.path);
    writeFileSync(join(tmp.path, 'x'), 'payload');
    const r = await ferry(inst, ['send', 'orders', join(tmp.path, 'x'), join(tmp.path, 'x'), '--header', 'kind=order', '--header', 'trace=a=b']);
    expect(r.code).toBe(0);
    const messages = await readOutbox(await spoolOf(inst));
    expect(messages.map((m) => [m.headers, m.payload.toString()])).toEqual([
      [{ kind: 'order', trace: 'a=b' }, 'payload'],
      [{ kind: 'order', trace: 'a=b' }, 'payload'],
    ]);
  });

  it('accepts the global flags after the command too', async () => {
    const inst = await prepared(tmp.path);
    writeFileSync(join(tmp.path, 'x'), 'payload');
    const r = await runNode([BIN, 'send', 'orders', join(tmp.path, 'x'), '--config', inst.config, '--root', inst.root], { env: childEnv() });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(await readOutbox(await spoolOf(inst))).toHaveLength(1);
  });

  it.each<[string, (dir: string) => string[], RegExp]>([
    ['the queue name ../x', (d) => ['send', '../x', join(d, 'good')], /queue name "\.\.\/x" is invalid/],
    ['an empty queue name', (d) => ['send', '', join(d, 'good')], /queue name "" is invalid/],
    ['the queue name a/b', (d) => ['send', 'a/b', join(d, 'good')], /queue name "a\/b" is invalid/],
    ['the queue name .hidden', (d) => ['send', '.hidden', join(d, 'good')], /queue name "\.hidden" is invalid/],
    ['a 129-character queue name', (d) => ['send', 'q'.repeat(129), join(d, 'good')], /queue name "q+"… is invalid/],
    ['a missing file after a valid one', (d) => ['send', 'orders', join(d, 'good'), join(d, 'missing')], /input file .*missing does not exist/],
    ['a directory as input', (d) => ['send', 'orders', join(d, 'good'), d], /is not a regular file/],
    ['a malformed --header', (d) => ['send', 'orders', join(d, 'good'), '--header', 'novalue'], /header "novalue" is malformed/],
    ['an invalid --header name', (d) => ['send', 'orders', join(d, 'good'), '--header', 'bad key=v'], /header name "bad key" is invalid/],
    ['--to naming an unknown peer', (d) => ['send', 'orders', join(d, 'good'), '--to', 'nobody'], /--to nobody names neither this host/],
  ])('refuses %s: exit non-zero, one error line, nothing committed', async (_what, args, message) => {
    const inst = await prepared(tmp.path);
    writeFileSync(join(tmp.path, 'good'), 'good payload');
    const before = filesBelow(inst.root);
    const r = await ferry(inst, args(tmp.path));
    expect(r.code).not.toBe(0);
    expect(oneErrorLine(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
    expect(filesBelow(inst.root)).toEqual(before);
  });
});

describe('a bad configuration', () => {
  it.each<[string, (config: string) => void, RegExp]>([
    ['is not valid TOML', (c) => writeFileSync(c, 'host = "alpha\nroot = [\n'), /config file .*ferry\.toml is not valid TOML/],
    ['has an unknown field', (c) => writeFileSync(c, 'host = "alpha"\ncolour = "red"\n'), /`\(top level\)`.*no unknown field \(colour\)/],
    ['has a field of the wrong type', (c) => writeFileSync(c, 'host = "alpha"\nlease = "long"\n'), /expected `lease` .*to be a number, got `long`/],
    ['has a wrong nested field', (c) => writeFileSync(c, 'host = "alpha"\n[peers.beta]\nssh = "beta"\nidentity = "/k"\nknown_hosts = "/kh"\n'), /`peers\.beta\.ssh`.*user@host:port.*got `beta`/],
    ['routes to an unknown peer', (c) => writeFileSync(c, 'host = "alpha"\n[routes]\norders = ["gamma"]\n'), /`routes\.orders`.*names "gamma"/],
    ['is a directory (unreadable)', (c) => mkdirSync(c), /config file .*ferry\.toml is a directory/],
  ])('that %s makes init and send exit non-zero with one line naming the problem, creating and committing nothing', async (_what, write, message) => {
    const inst = install(tmp.path);
    write(inst.config);
    writeFileSync(join(tmp.path, 'good'), 'payload');
    const init = await ferry(inst, ['init', '--host', 'alpha']);
    expect(init.code).not.toBe(0);
    expect(oneErrorLine(init.stderr), init.stderr).toBe(true);
    expect(init.stderr).toMatch(message);
    expect(existsSync(inst.root)).toBe(false);

    await Spool.open(inst.root, { host: 'alpha', create: true });
    const before = filesBelow(inst.root);
    const send = await ferry(inst, ['send', 'orders', join(tmp.path, 'good')]);
    expect(send.code).not.toBe(0);
    expect(oneErrorLine(send.stderr), send.stderr).toBe(true);
    expect(send.stderr).toMatch(message);
    expect(filesBelow(inst.root)).toEqual(before);
  });

  it('that does not exist makes send exit non-zero with one line naming it, committing nothing (init writes it instead)', async () => {
    const inst = install(tmp.path);
    await Spool.open(inst.root, { host: 'alpha', create: true });
    writeFileSync(join(tmp.path, 'good'), 'payload');
    const before = filesBelow(inst.root);
    const send = await ferry(inst, ['send', 'orders', join(tmp.path, 'good')]);
    expect(send.code).not.toBe(0);
    expect(oneErrorLine(send.stderr), send.stderr).toBe(true);
    expect(send.stderr).toMatch(/config file .*ferry\.toml does not exist/);
    expect(filesBelow(inst.root)).toEqual(before);
  });

  it('is reported with a stack trace only under --debug', async () => {
    const inst = install(tmp.path);
    writeFileSync(inst.config, 'colour = "red"\n');
    const r = await ferry(inst, ['--debug', 'init']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^ferry: /);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('refuses to send to a spool that was never initialised, creating nothing', async () => {
    const inst = install(tmp.path);
    writeFileSync(inst.config, `host = "alpha"\n`);
    writeFileSync(join(tmp.path, 'good'), 'payload');
    const r = await ferry(inst, ['send', 'orders', join(tmp.path, 'good')]);
    expect(r.code).not.toBe(0);
    expect(oneErrorLine(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toMatch(/no spool at .*run `ferry init`/);
    expect(existsSync(inst.root)).toBe(false);
  });
});
