// Regression (trust boundary, I11): whatever a peer creates in its landing directory — symlinks, hard links,
// directories full of junk, dot-files, files under names no sender uses, uploads abandoned half-way, a fake receipt —
// is never followed or read as anything but what it is, never left there forever, and never stops the receiver
// delivering the peer's honest messages, anyone else's, or serving its own producers and consumers. FIFOs, devices and
// a hard link to one of the receiver's own files cannot be made through an SFTP login; they are planted as root here
// (a deployment gone wrong) to prove the receiver's side on its own.
import { execFileSync } from 'node:child_process';
import { linkSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ferry, inboxFiles, startDaemons, statusJson, until, useClusters } from '../e2e/fixtures.js';
import { loginAs } from '../helpers/login.js';
import { expectExactly, sendHonest } from '../helpers/traffic.js';

const makeCluster = useClusters();
const BUNDLE_LIKE = '0000000000000001-000000000001-1-c0ffee00c0ffee00.fb';

/** What is left in alpha's landing directory on beta besides its receipt. */
const leftovers = (cluster: Parameters<typeof inboxFiles>[0]) => readdirSync(join(cluster.host('beta').root, 'landing', 'alpha')).filter((n) => n !== 'ferry.receipt').sort();

describe('hostile entries in a peer\'s landing directory', () => {
  it('what the login can make (links, directories, dot-files, junk names, a fake receipt) is removed unread, and delivery goes on', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta', 'gamma'] });
    await startDaemons(cluster, 'alpha', 'beta', 'gamma');
    const s = await loginAs(cluster, 'beta', 'alpha');
    // The receiver removes junk as it sees it, often before the next step here: a step that finds its target gone
    // already is the receiver winning, not a failure of the test.
    const attempt = (p: Promise<unknown>) => p.catch(() => undefined);
    try {
      await s.put(`/landing/${BUNDLE_LIKE}.part`, Buffer.from('mine')); // an upload in progress: left alone until stale
      await attempt(s.hardlink(`/landing/${BUNDLE_LIKE}.part`, `/landing/${BUNDLE_LIKE}`)); // a bundle name with two links
      await attempt(s.symlink('/etc/shadow', '/landing/0000000000000001-000000000002-1-c0ffee00c0ffee00.fb'));
      await attempt(s.symlink('..', '/landing/up'));
      await attempt(s.mkdir('/landing/deep'));
      await attempt(s.mkdir('/landing/deep/deeper'));
      for (let i = 0; i < 50; i++) await attempt(s.put(`/landing/deep/deeper/f${i}`, Buffer.from('x')));
      await attempt(s.put('/landing/.hidden', Buffer.from('dot')));
      await attempt(s.put('/landing/readme.txt', Buffer.from('not a bundle')));
      await attempt(s.put('/landing/ferry.receipt', Buffer.from('a receipt of my own making')));
      await attempt(s.unlink(`/landing/${BUNDLE_LIKE}.part`));
    } finally {
      s.end();
    }
    await until('beta removed everything but what it may keep', () => leftovers(cluster).length === 0, 30_000);
    const landing = (await statusJson(cluster, 'beta')).landing.find((l) => l.peer === 'alpha');
    expect(landing?.hostile ?? 0).toBeGreaterThanOrEqual(4);
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 3, 'alpha'), 'alpha');
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'gamma', 'q', 3, 'gamma'), 'gamma');
    // The fake receipt was replaced by beta's own (sealed) one.
    expect(readFileSync(join(cluster.host('beta').root, 'landing', 'alpha', 'ferry.receipt')).subarray(0, 4).toString()).toBe('FRR1');
  });

  it('what root plants (a FIFO, a device, a hard link to a spool file) is removed, never opened or read, and the linked file is intact', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const beta = cluster.host('beta').root;
    const landing = join(beta, 'landing', 'alpha');
    execFileSync('mkfifo', [join(landing, BUNDLE_LIKE)]);
    execFileSync('mknod', [join(landing, '0000000000000001-000000000002-1-c0ffee00c0ffee00.fb'), 'c', '1', '3']);
    const victim = join(beta, 'state', 'precious');
    writeFileSync(victim, 'a file of the spool that no peer may make the daemon read\n', { mode: 0o600 });
    linkSync(victim, join(landing, '0000000000000001-000000000003-1-c0ffee00c0ffee00.fb'));
    const before = readFileSync(victim, 'utf8');
    await until('beta removed the planted entries', () => leftovers(cluster).length === 0, 30_000);
    expect(readFileSync(victim, 'utf8')).toBe(before);
    expect(readdirSync(join(beta, 'state', 'quarantine'))).toEqual([]); // never read, so never copied anywhere
    await expectExactly(cluster, 'beta', 'q', await sendHonest(cluster, 'alpha', 'q', 2, 'alpha'), 'alpha');
  });

  it('an abandoned upload is swept once stale, and a fresh one is left alone', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const s = await loginAs(cluster, 'beta', 'alpha');
    try {
      await s.put(`/landing/${BUNDLE_LIKE}.part`, Buffer.from('half an upload'));
      await s.put('/landing/0000000000000001-000000000002-1-c0ffee00c0ffee00.fb.part', Buffer.from('in progress'));
    } finally {
      s.end();
    }
    // 37 hours old (the login could not set that itself without also keeping it fresh: it is the receiver's sweep that counts).
    const old = new Date(Date.now() - 37 * 3600_000);
    utimesSync(join(cluster.host('beta').root, 'landing', 'alpha', `${BUNDLE_LIKE}.part`), old, old);
    await until('the stale upload swept', () => !leftovers(cluster).includes(`${BUNDLE_LIKE}.part`), 30_000);
    expect(leftovers(cluster)).toEqual(['0000000000000001-000000000002-1-c0ffee00c0ffee00.fb.part']);
  });

  it('an endless upload is cut at the receiver\'s limit; the disk, local sends and takes and other peers are unaffected', async () => {
    const MiB = 1024 * 1024;
    const cluster = await makeCluster({ hosts: ['alpha', 'beta', 'gamma'], receive: { max_bundle_bytes: 4 * MiB } });
    await startDaemons(cluster, 'alpha', 'beta', 'gamma');
    const s = await loginAs(cluster, 'beta', 'alpha');
    const chunk = Buffer.alloc(MiB, 7);
    let stop = false;
    let written = 0;
    const writer = (async () => {
      // One handle held open for good, written at ever higher offsets: unlinking it alone would keep its blocks.
      const h = await new Promise<Buffer>((resolve, reject) => s.sftp.open(`/landing/${BUNDLE_LIKE}.part`, 'w', (err, handle) => (err ? reject(err) : resolve(handle))));
      while (!stop && written < 400 * MiB) {
        await new Promise<void>((resolve) => s.sftp.write(h, chunk, 0, chunk.length, written, () => resolve()));
        written += chunk.length;
      }
    })();
    const fromGamma = await sendHonest(cluster, 'gamma', 'q', 3, 'gamma');
    await expectExactly(cluster, 'beta', 'q', fromGamma, 'gamma');
    const file = join(cluster.host('beta').dir, 'note');
    writeFileSync(file, 'local');
    const sent = await ferry(cluster, 'beta', ['send', 'local', file, '--to', 'beta'], 20_000);
    expect(sent.code, sent.stderr).toBe(0);
    stop = true;
    await writer;
    s.end();
    // However much was written, what the file holds on disk never grew far past the limit between two passes.
    const du = Number(execFileSync('du', ['-sk', join(cluster.host('beta').root, 'landing', 'alpha')], { encoding: 'utf8' }).split('\t')[0]) * 1024;
    expect(du).toBeLessThan(200 * MiB);
    const l = (await statusJson(cluster, 'beta')).landing.find((x) => x.peer === 'alpha');
    expect(l?.hostile ?? 0).toBeGreaterThanOrEqual(1);
  }, 120_000);
});
