#!/usr/bin/env node
// npm run demo: two hosts on this machine replicating through a private loopback sshd — ferry's main job, visible.
//
// alpha and beta each get a spool, a config and the same pair key; both daemons run as real
// processes and ship over SFTP to a private OpenSSH sshd on 127.0.0.1 (SFTP-only, host key pinned).
// alpha sends a batch of small messages, a transaction over two queues and one large file; beta
// takes them and replies. Everything is removed at the end.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, mkdirSync, writeFileSync, readdirSync, rmSync, createWriteStream, chmodSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSshd } from '../dist/devtools/private-sshd.js';
import { Spool } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const ferryBin = join(here, '..', 'bin', 'ferry');
const tty = process.stdout.isTTY;
const bold = (s) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s) => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const green = (s) => (tty ? `\x1b[32m${s}\x1b[0m` : s);
const say = (s = '') => process.stdout.write(`${s}\n`);
const step = (n, s) => say(`${bold(`[${n}/6]`)} ${s}`);

const SMALL = Number(process.env.DEMO_SMALL ?? 500);
const BIG_MIB = Number(process.env.DEMO_BIG_MIB ?? 64);

function ferry(host, args, opts = {}) {
  return execFileSync(process.execPath, [ferryBin, ...args, '--config', host.config], { encoding: 'utf8', ...opts });
}

async function waitUntil(what, fn, timeoutMs = 120_000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const inboxCount = (host, q) => { try { return readdirSync(join(host.root, 'inbox', q, 'new')).length; } catch { return 0; } };

async function sha256(path) {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c);
  return h.digest('hex');
}

const work = mkdtempSync(join(tmpdir(), 'ferry-demo-'));
const daemons = [];
let sshd;
try {
  say(bold('ferry demo — two hosts on this machine, replicating over SSH/SFTP'));
  say(dim(`scratch: ${work}`));
  say();
  sshd = await startSshd({ forceCommand: true });
  const fp = execFileSync('ssh-keygen', ['-lf', `${sshd.hostKeyPath}.pub`], { encoding: 'utf8' }).split(' ')[1];
  step(1, `private sshd on 127.0.0.1:${sshd.port} — SFTP-only account, host key pinned (${fp})`);

  const hosts = {};
  for (const name of ['alpha', 'beta']) {
    const dir = join(work, name);
    mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
    hosts[name] = { name, dir, root: join(dir, 'spool'), keys: join(dir, 'keys'), config: join(dir, 'ferry.toml') };
  }
  for (const [self, peer] of [['alpha', 'beta'], ['beta', 'alpha']]) {
    const h = hosts[self];
    writeFileSync(h.config, [
      `host = "${self}"`,
      `root = "${h.root}"`,
      `keys = "${h.keys}"`,
      `log_level = "warn"`,
      ``,
      `[peers.${peer}]`,
      `ssh = "${sshd.user}@127.0.0.1:${sshd.port}"`,
      `identity = "${sshd.identityPath}"`,
      `known_hosts = "${sshd.knownHostsPath}"`,
      `remote_root = "${hosts[peer].root}"`,
      ``,
      `[routes]`,
      `"*" = ["${peer}"]`,
      ``,
    ].join('\n'));
    ferry(h, ['init']);
  }
  const keyLine = ferry(hosts.alpha, ['keys', 'generate', '--peers', 'alpha,beta']).trim();
  const keyPath = keyLine.split(/\s+/)[0];
  // Keys are plain files: production deploys them with rsync-over-ssh; here a local copy keeps the mode.
  const betaKey = join(hosts.beta.keys, keyPath.split('/').pop());
  try {
    execFileSync('rsync', ['-a', keyPath, betaKey]);
  } catch {
    copyFileSync(keyPath, betaKey);
    chmodSync(betaKey, 0o600);
  }
  step(2, `hosts alpha and beta: spools, configs, one pair key (${keyLine.split(/\s+/)[2]}) deployed to both`);

  for (const h of Object.values(hosts)) {
    const log = createWriteStream(join(h.dir, 'daemon.log'));
    const child = spawn(process.execPath, [ferryBin, 'daemon', '--config', h.config], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    daemons.push(child);
    h.daemon = child;
  }
  await new Promise((r) => setTimeout(r, 800));
  step(3, `daemons running: alpha (pid ${hosts.alpha.daemon.pid}), beta (pid ${hosts.beta.daemon.pid})`);

  // One message, timed end to end.
  const t1 = Date.now();
  ferry(hosts.alpha, ['send', 'greetings'], { input: 'hello from alpha\n' });
  await waitUntil('the first message', () => inboxCount(hosts.beta, 'greetings') === 1);
  const firstMs = Date.now() - t1;

  // A batch of small messages: `ferry send` with 100 files commits them as one transaction.
  const batchDir = join(work, 'batch');
  mkdirSync(batchDir);
  const files = [];
  for (let i = 0; i < SMALL; i++) {
    const f = join(batchDir, `m${String(i).padStart(5, '0')}.json`);
    writeFileSync(f, JSON.stringify({ n: i, pad: randomBytes(400).toString('base64') }));
    files.push(f);
  }
  const tBatch = Date.now();
  for (let i = 0; i < files.length; i += 100) ferry(hosts.alpha, ['send', 'events', ...files.slice(i, i + 100)]);
  // A transaction over two queues: both messages become visible to shipping together.
  // (through the library: `ferry send` takes one queue per call).
  const alphaSpool = await Spool.open(hosts.alpha.root, { host: 'alpha' });
  const tx = alphaSpool.transaction();
  await tx.send('orders', '{"order": 42, "items": 3}\n', { headers: { kind: 'order' } });
  await tx.send('audit', 'order 42 placed\n');
  await tx.commit();
  // One large file, streamed and sealed in chunks.
  const big = join(work, 'big.bin');
  const ws = createWriteStream(big);
  for (let i = 0; i < BIG_MIB; i++) ws.write(randomBytes(1024 * 1024));
  await new Promise((r) => ws.end(r));
  const bigSum = await sha256(big);
  const tBig = Date.now();
  ferry(hosts.alpha, ['send', 'files', big, '--header', 'name=big.bin']);
  step(4, `alpha sent: 1 greeting, ${SMALL} events (1 KiB each), an order with its audit line, a ${BIG_MIB} MiB file`);

  await waitUntil('the events', () => inboxCount(hosts.beta, 'events') === SMALL);
  const batchMs = Date.now() - tBatch;
  await waitUntil('the order', () => inboxCount(hosts.beta, 'orders') === 1 && inboxCount(hosts.beta, 'audit') === 1);
  await waitUntil('the big file', () => inboxCount(hosts.beta, 'files') === 1);
  const bigMs = Date.now() - tBig;
  const outDir = join(work, 'received');
  mkdirSync(outDir);
  const got = ferry(hosts.beta, ['take', 'files', '--out', outDir]).trim();
  const gotSum = await sha256(got);
  say(`${bold('[5/6]')} arrived in beta's inbox, byte-identical:`);
  say(`      first message         ${green(`${firstMs} ms`)} from send to beta's inbox`);
  say(`      ${SMALL} events            ${green(`${batchMs} ms`)} (${Math.round(SMALL / (batchMs / 1000))} msg/s, including ${Math.ceil(SMALL / 100)} CLI runs)`);
  say(`      order + audit          both delivered`);
  say(`      ${BIG_MIB} MiB file           ${green(`${bigMs} ms`)}, sha256 ${gotSum === bigSum ? green('matches') : 'DIFFERS'} (${gotSum.slice(0, 16)}…)`);
  const order = ferry(hosts.beta, ['take', 'orders', '--exec', 'echo "      beta consumed $FERRY_QUEUE message $FERRY_ID from $FERRY_ORIGIN: $(cat)"']);
  process.stdout.write(order);
  if (gotSum !== bigSum) throw new Error('the large file arrived corrupted');

  // beta answers; the reply crosses back to alpha's inbox.
  const tReply = Date.now();
  ferry(hosts.beta, ['send', 'replies', '--header', 'in-reply-to=order-42'], { input: 'order 42 accepted by beta\n' });
  await waitUntil('the reply', () => inboxCount(hosts.alpha, 'replies') === 1);
  const reply = ferry(hosts.alpha, ['take', 'replies']);
  step(6, `beta replied; alpha took it ${Date.now() - tReply} ms later: ${reply.trim()}`);
  say();
  say(ferry(hosts.beta, ['status']).trimEnd().split('\n').map((l) => `      ${l}`).join('\n'));
  say();
  say(green('demo complete: every message delivered exactly once, sealed in transit, over a pinned SSH host key.'));
} catch (err) {
  process.exitCode = 1;
  say(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  for (const name of ['alpha', 'beta']) {
    try { say(dim(execFileSync('tail', ['-5', join(work, name, 'daemon.log')], { encoding: 'utf8' }))); } catch { /* no log */ }
  }
} finally {
  for (const d of daemons) d.kill('SIGTERM');
  await Promise.all(daemons.map((d) => new Promise((r) => (d.exitCode !== null ? r() : d.on('exit', r)))));
  await sshd?.stop();
  rmSync(work, { recursive: true, force: true });
}
