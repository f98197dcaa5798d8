#!/usr/bin/env node
// npm run demo: two hosts on this machine replicating through a private loopback sshd — ferry's main job, visible.
//
// alpha and beta each get a spool, a config and the same pair key, on the deployment the README documents: each
// daemon runs as its host's own system user, and alpha logs in to beta as its own chrooted SFTP-only login that
// reaches nothing but its landing directory there (private OpenSSH sshd on 127.0.0.1, host key pinned).
// alpha sends a batch of small messages, a transaction over two queues and one large file; beta
// takes them and replies. Everything is removed at the end.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, mkdirSync, writeFileSync, readdirSync, rmSync, createWriteStream, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster } from '../dist/devtools/cluster.js';

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

/** Runs `ferry ARGS` as the host's daemon user (as every ferry command must run), returning its stdout. */
function runAs(c, name, args, opts = {}) {
  const h = c.host(name);
  const u = h.daemonUser;
  return execFileSync('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', '--', process.execPath, ferryBin, ...args, '--config', h.config], { encoding: 'utf8', cwd: '/', ...opts });
}
const ferry = (host, args, opts) => host.run(args, opts);

async function waitUntil(what, fn, timeoutMs = 120_000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const inboxCount = (host, q) => { try { return readdirSync(join(host.root, 'inbox', q, 'new')).filter((n) => !n.startsWith('.')).length; } catch { return 0; } };

async function sha256(path) {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c);
  return h.digest('hex');
}

const work = mkdtempSync(join(tmpdir(), 'ferry-demo-'));
let cluster;
try {
  say(bold('ferry demo — two hosts on this machine, replicating over SSH/SFTP'));
  say(dim(`scratch: ${work}`));
  say();
  if (process.getuid?.() !== 0) {
    throw new Error('the demo builds the confined deployment of the README (system users, chroots, bind mounts): run it as root, e.g. `sudo npm run demo`');
  }
  // The documented deployment: each host's daemon as its own system user, each sender its own chrooted SFTP-only
  // login on the receiver (the steps `ferry peer add --print` prints), one private sshd on 127.0.0.1.
  cluster = await Cluster.create({ hosts: ['alpha', 'beta'], dir: work, daemonUsers: true, logLevel: 'warn' });
  const login = cluster.deployment.login('beta', 'alpha');
  const fp = execFileSync('ssh-keygen', ['-lf', '-'], { input: cluster.deployment.hostKeyPub, encoding: 'utf8' }).split(' ')[1];
  step(1, `private sshd on 127.0.0.1:${cluster.deployment.port}, host key pinned (${fp}); alpha logs in to beta as ${login.user}: SFTP only, chrooted to ${login.chroot}, which holds only /landing`);
  const hosts = {};
  for (const name of ['alpha', 'beta']) {
    const h = cluster.host(name);
    hosts[name] = { ...h, run: (args, opts = {}) => runAs(cluster, name, args, opts) };
  }
  step(2, `hosts alpha and beta: spools owned by ${hosts.alpha.daemonUser.name} and ${hosts.beta.daemonUser.name}, configs (remote_root = "${login.remoteRoot}"), one pair key on both`);
  await cluster.startDaemon('alpha');
  await cluster.startDaemon('beta');
  step(3, `daemons running as their own users: alpha (pid ${cluster.host('alpha').daemon.pid}), beta (pid ${cluster.host('beta').daemon.pid})`);

  // One message, timed end to end.
  const t1 = Date.now();
  ferry(hosts.alpha, ['send', 'greetings'], { input: 'hello from alpha\n' });
  await waitUntil('the first message', () => inboxCount(hosts.beta, 'greetings') === 1);
  const firstMs = Date.now() - t1;

  // A batch of small messages: `ferry send` with 100 files commits them as one transaction.
  const batchDir = join(hosts.alpha.dir, 'batch');
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
  // (through the library, run as alpha's user: `ferry send` takes one queue per call).
  execFileSync('setpriv', [`--reuid=${hosts.alpha.daemonUser.uid}`, `--regid=${hosts.alpha.daemonUser.gid}`, '--init-groups', '--', process.execPath, '--input-type=module', '-e', `
    import { Spool } from ${JSON.stringify(join(here, '..', 'dist', 'index.js'))};
    const spool = await Spool.open(${JSON.stringify(hosts.alpha.root)}, { host: 'alpha' });
    const tx = spool.transaction();
    await tx.send('orders', '{"order": 42, "items": 3}\\n', { headers: { kind: 'order' } });
    await tx.send('audit', 'order 42 placed\\n');
    await tx.commit();`], { cwd: '/' });
  // One large file, streamed and sealed in chunks.
  const big = join(hosts.alpha.dir, 'big.bin');
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
  const outDir = join(hosts.beta.dir, 'received');
  mkdirSync(outDir);
  chownSync(outDir, hosts.beta.daemonUser.uid, hosts.beta.daemonUser.gid);
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
  // Stops the daemons and removes everything the deployment made: users, mounts, chroots, sshd, the directory.
  await cluster?.stopAll('SIGTERM').catch(() => undefined);
  await cluster?.destroy().catch((e) => say(`cleanup failed: ${e.message}`));
  rmSync(work, { recursive: true, force: true });
}
