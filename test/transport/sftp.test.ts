// SftpTransport against a real OpenSSH sshd on loopback: host-key pinning, cuts, resume, frozen servers, restricted accounts.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isFerryError, type FerryError } from '../../src/errors.js';
import { fingerprintSha256, SftpTransport } from '../../src/transport/index.js';
import { generateKey, startSshd, type Sshd } from '../helpers/sshd.js';
import { makeLanding, parts, published, randomFile, removeDir, sftpTransportFor, sha256File, ship, tempDir } from './fixtures.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

/** The fingerprint `ssh-keygen -lf` prints for a public key file. */
async function sshKeygenFingerprint(pubFile: string): Promise<string> {
  const { stdout } = await execFileP('ssh-keygen', ['-lf', pubFile]);
  const fp = stdout.split(/\s+/)[1];
  if (fp === undefined) throw new Error(`unexpected ssh-keygen output: ${stdout}`);
  return fp;
}

async function rejection(p: Promise<unknown>): Promise<FerryError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isFerryError(err)) throw new Error(`expected a FerryError, got ${String(err)}`);
  return err;
}

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('SftpTransport against OpenSSH sshd', () => {
  let sshd: Sshd;
  let work: string;
  let root: string;
  const transports: SftpTransport[] = [];
  const make = (extra: Parameters<typeof sftpTransportFor>[2] = {}) => {
    const t = sftpTransportFor(sshd, root, extra);
    transports.push(t);
    return t;
  };

  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });
  beforeEach(async () => {
    work = await tempDir();
    root = path.join(work, 'spool');
    await makeLanding(root);
  });
  afterEach(async () => {
    await sshd.signalConnections('SIGCONT');
    await Promise.all(transports.splice(0).map((t) => t.close()));
    await removeDir(work);
  });

  describe('host key pinning', () => {
    it('refuses a host that known_hosts does not list (EHOSTKEY_UNKNOWN), naming the peer and the presented fingerprint', async () => {
      const kh = path.join(work, 'known_hosts');
      // An entry for another port of the same address must not count for this one.
      const [type, b64] = sshd.hostKeyPub.split(/\s+/);
      await writeFile(kh, `# only another port\n[127.0.0.1]:1 ${type} ${b64}\n`);
      const t = make({ knownHosts: kh });
      const src = await randomFile(path.join(work, 'b'), 10);
      const err = await rejection(ship(t, src, 'b1'));
      const fp = await sshKeygenFingerprint(`${sshd.hostKeyPath}.pub`);
      expect(err.code).toBe('EHOSTKEY_UNKNOWN');
      expect(err.message).toContain('beta');
      expect(err.message).toContain(fp);
      expect(err.recoverable).toBe(false);
      expect(t.connected).toBe(false);
      expect(await parts(root)).toEqual([]);
    });

    it('refuses a missing known_hosts file the same way', async () => {
      const t = make({ knownHosts: path.join(work, 'does-not-exist') });
      const err = await rejection(ship(t, await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('EHOSTKEY_UNKNOWN');
      expect(err.message).toContain(await sshKeygenFingerprint(`${sshd.hostKeyPath}.pub`));
    });

    it('refuses a host whose key changed (EHOSTKEY), naming the presented fingerprint', async () => {
      const otherPub = await generateKey(path.join(work, 'other_host_key'));
      const [type, b64] = otherPub.split(/\s+/);
      const kh = path.join(work, 'known_hosts');
      await writeFile(kh, `[127.0.0.1]:${sshd.port} ${type} ${b64}\n`);
      const t = make({ knownHosts: kh });
      const err = await rejection(ship(t, await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('EHOSTKEY');
      expect(err.message).toContain('beta');
      expect(err.message).toContain(await sshKeygenFingerprint(`${sshd.hostKeyPath}.pub`));
      expect(err.message).toContain(fingerprintSha256(Buffer.from(b64!, 'base64')));
      expect(await parts(root)).toEqual([]);
    });

    it('refuses a key listed @revoked even when it is also pinned', async () => {
      const [type, b64] = sshd.hostKeyPub.split(/\s+/);
      const kh = path.join(work, 'known_hosts');
      await writeFile(kh, `[127.0.0.1]:${sshd.port} ${type} ${b64}\n@revoked * ${type} ${b64}\n`);
      const err = await rejection(ship(make({ knownHosts: kh }), await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('EHOSTKEY');
      expect(err.message).toContain('revoked');
    });

    it('accepts a hashed known_hosts entry (ssh-keygen -H)', async () => {
      const kh = path.join(work, 'known_hosts');
      await copyFile(sshd.knownHostsPath, kh);
      await execFileP('ssh-keygen', ['-H', '-f', kh]);
      const t = make({ knownHosts: kh });
      await expect(ship(t, await randomFile(path.join(work, 'b'), 10), 'b1')).resolves.toBe('published');
    });

    it('probe reports the same fingerprint as ssh-keygen -lf, the extensions and a writable landing area', async () => {
      const p = await make().probe();
      expect(p.fingerprint).toBe(await sshKeygenFingerprint(`${sshd.hostKeyPath}.pub`));
      expect(p.hostKeyType).toBe('ssh-ed25519');
      expect(p.extensions).toEqual(expect.arrayContaining(['fsync@openssh.com', 'posix-rename@openssh.com', 'hardlink@openssh.com']));
      expect(p.landingWritable).toBe(true);
      expect(p.landingFreeBytes).toBeGreaterThan(0);
      expect(await parts(root)).toEqual([]);
    });
  });

  describe('authentication', () => {
    it('fails with ETRANSPORT_AUTH when the identity is not authorized', async () => {
      const id = path.join(work, 'stranger');
      await generateKey(id);
      const err = await rejection(ship(make({ identity: id }), await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('ETRANSPORT_AUTH');
      expect(err.message).toContain('beta');
    });

    it('refuses an identity readable by group or others (EKEYPERM), like ssh', async () => {
      const id = path.join(work, 'loose');
      await copyFile(sshd.identityPath, id);
      await chmod(id, 0o644);
      const err = await rejection(ship(make({ identity: id }), await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('EKEYPERM');
    });
  });

  describe('connection cuts and resume', () => {
    it('rejects with ETRANSPORT when the connection is cut at ~30% of a 64 MiB upload, then resumes and publishes it byte-identical', async () => {
      const size = 64 * MiB;
      const src = await randomFile(path.join(work, 'big'), size);
      const t = make();
      let cutAt = -1;
      const err = await rejection(
        ship(t, src, 'cut-1', (sent, total) => {
          if (cutAt < 0 && sent >= total * 0.3) {
            cutAt = sent;
            void sshd.killConnections();
          }
        }),
      );
      expect(err.code).toBe('ETRANSPORT');
      expect(err.recoverable).toBe(true);
      expect(cutAt).toBeGreaterThan(0);
      expect(t.connected).toBe(false);
      const partial = (await stat(path.join(root, 'cut-1' + '.part'))).size;
      expect(partial).toBeGreaterThan(0);
      expect(partial).toBeLessThan(size);
      expect(await published(root)).toEqual([]);

      const before = t.stats.bytesSent;
      const progress: number[] = [];
      await expect(ship(t, src, 'cut-1', (sent) => progress.push(sent))).resolves.toBe('published');
      const sentSecondTime = t.stats.bytesSent - before;
      expect(sentSecondTime).toBe(size - partial);
      expect(sentSecondTime).toBeLessThan(size);
      expect(progress[0]).toBe(partial);
      expect(t.stats.resumes).toBe(1);
      expect(t.stats.connects).toBe(2);
      expect(await sha256File(path.join(root, 'cut-1'))).toBe(await sha256File(src));
      expect(await parts(root)).toEqual([]);
    });

    it('starts over instead of resuming when the partial file does not match the local bytes', async () => {
      const src = await randomFile(path.join(work, 'b'), 4 * MiB);
      // A leftover of the same name with other content (e.g. from another process), resumed only under 'always'.
      await randomFile(path.join(root, 'mixed' + '.part'), 1 * MiB);
      const t = make({ resume: 'always' });
      await expect(ship(t, src, 'mixed')).resolves.toBe('published');
      expect(t.stats.resumes).toBe(0);
      expect(t.stats.bytesSent).toBe(4 * MiB);
      expect(await sha256File(path.join(root, 'mixed'))).toBe(await sha256File(src));
    });

    it('resumes a matching leftover from an earlier process under resume: always, and rewrites it under the default', async () => {
      const src = await randomFile(path.join(work, 'b'), 4 * MiB);
      await writeFile(path.join(root, 'left' + '.part'), (await readFile(src)).subarray(0, 3 * MiB));
      const always = make({ resume: 'always' });
      await expect(ship(always, src, 'left')).resolves.toBe('published');
      expect(always.stats.bytesSent).toBe(1 * MiB);
      await writeFile(path.join(root, 'left2' + '.part'), (await readFile(src)).subarray(0, 3 * MiB));
      const byDefault = make();
      await expect(ship(byDefault, src, 'left2')).resolves.toBe('published');
      expect(byDefault.stats.bytesSent).toBe(4 * MiB);
      expect(await sha256File(path.join(root, 'left2'))).toBe(await sha256File(src));
    });

    it('reconnects on the next publish after the connection dropped while idle', async () => {
      const t = make();
      const src = await randomFile(path.join(work, 'b'), 1000);
      await ship(t, src, 'r1');
      expect(t.connected).toBe(true);
      await sshd.killConnections();
      await waitUntil(() => !t.connected);
      await expect(ship(t, src, 'r2')).resolves.toBe('published');
      expect(t.stats.connects).toBe(2);
    });

    it('fails pending publishes when closed', async () => {
      const t = make();
      const src = await randomFile(path.join(work, 'big'), 32 * MiB);
      const p = ship(t, src, 'closing', (sent) => {
        if (sent > 0) void t.close();
      });
      expect((await rejection(p)).code).toBe('ETRANSPORT');
    });
  });

  describe('a frozen server', () => {
    it('makes a publish reject within the op timeout when the server stops mid-upload', async () => {
      const t = make({ opTimeoutMs: 2000, keepaliveIntervalMs: 1000, keepaliveCountMax: 3 });
      const src = await randomFile(path.join(work, 'big'), 64 * MiB);
      let frozenAt = 0;
      const started = Date.now();
      const err = await rejection(
        ship(t, src, 'frozen-1', (sent, total) => {
          if (frozenAt === 0 && sent >= total * 0.2) {
            frozenAt = Date.now();
            void sshd.signalConnections('SIGSTOP');
          }
        }),
      );
      const waited = Date.now() - (frozenAt || started);
      expect(err.code, err.message).toBe('ETRANSPORT');
      // 2 s op timeout; generous slack for a loaded CI box — the point is "rejects", not "hangs until keepalive or forever".
      expect(waited, `rejected after ${waited} ms: ${err.message}`).toBeLessThan(2000 * 3);
      expect(t.connected).toBe(false);
    });

    it('makes a publish reject within the op timeout when an idle connection is frozen', async () => {
      const t = make({ opTimeoutMs: 1500, keepaliveIntervalMs: 0 });
      const src = await randomFile(path.join(work, 'b'), 1000);
      await ship(t, src, 'f1');
      await sshd.signalConnections('SIGSTOP');
      const started = Date.now();
      const err = await rejection(ship(t, src, 'f2'));
      expect(err.code).toBe('ETRANSPORT');
      expect(err.message).toMatch(/no answer within 1500 ms/);
      const waited = Date.now() - started;
      expect(waited, `rejected after ${waited} ms`).toBeLessThan(1500 * 3);
      await sshd.signalConnections('SIGCONT');
      await expect(ship(t, src, 'f3')).resolves.toBe('published');
    });
  });
});

describe('SftpTransport against an SFTP-only account (ForceCommand internal-sftp)', () => {
  let sshd: Sshd;
  let work: string;
  beforeAll(async () => {
    sshd = await startSshd({ forceCommand: true });
    work = await tempDir();
  });
  afterAll(async () => {
    await sshd?.stop();
    await removeDir(work);
  });

  it('publishes', async () => {
    const root = path.join(work, 'spool');
    await makeLanding(root);
    const t = sftpTransportFor(sshd, root);
    try {
      const src = await randomFile(path.join(work, 'b'), 3 * MiB);
      await expect(ship(t, src, 'forced-1')).resolves.toBe('published');
      await expect(ship(t, src, 'forced-1')).resolves.toBe('already');
      expect(await sha256File(path.join(root, 'forced-1'))).toBe(await sha256File(src));
    } finally {
      await t.close();
    }
  });
});

describe('SftpTransport against a chrooted account (ChrootDirectory, remote_root "/spool")', () => {
  let sshd: Sshd;
  let work: string;
  beforeAll(async () => {
    sshd = await startSshd({ chroot: true });
    work = await tempDir();
  });
  afterAll(async () => {
    await sshd?.stop();
    await removeDir(work);
  });

  it('publishes inside the chroot', async () => {
    const chroot = sshd.chrootDir!;
    // The chroot itself stays root-owned 0755 (sshd insists); the spool inside it belongs to the account.
    expect((await stat(chroot)).mode & 0o777).toBe(0o755);
    await mkdir(path.join(chroot, 'spool'), { mode: 0o700 });
    await makeLanding(path.join(chroot, 'spool'));
    const t = sftpTransportFor(sshd, '/spool');
    try {
      const src = await randomFile(path.join(work, 'b'), 2 * MiB + 3);
      await expect(ship(t, src, 'chrooted-1')).resolves.toBe('published');
      expect(await sha256File(path.join(chroot, 'spool', 'chrooted-1'))).toBe(await sha256File(src));
      expect((await t.probe()).landingWritable).toBe(true);
    } finally {
      await t.close();
    }
  });
});

describe('SftpTransport when the remote disk fills up', () => {
  let sshd: Sshd;
  let work: string;
  let mnt: string;
  let mounted = false;
  beforeAll(async () => {
    sshd = await startSshd();
    work = await tempDir();
    mnt = path.join(work, 'small');
    await mkdir(mnt);
  });
  afterAll(async () => {
    if (mounted) await execFileP('umount', [mnt]);
    await sshd?.stop();
    await removeDir(work);
  });

  // Needs root to mount a small tmpfs (tests and CI run as root); without it the test fails saying so.
  it('rejects with EREMOTE_FULL (recoverable), then publishes once space is back', async () => {
    try {
      await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', mnt]);
      mounted = true;
    } catch (err) {
      throw new Error(`this test mounts an 8 MiB tmpfs and needs root: ${(err as Error).message}`);
    }
    await makeLanding(mnt);
    const t = sftpTransportFor(sshd, mnt);
    try {
      const big = await randomFile(path.join(work, 'big'), 12 * MiB);
      const err = await rejection(ship(t, big, 'full-1'));
      expect(err.code).toBe('EREMOTE_FULL');
      expect(err.recoverable).toBe(true);
      expect(err.message).toContain('beta');
      // The partial file was removed to give the space back; a file that fits goes through.
      expect(await parts(mnt)).toEqual([]);
      const fits = await randomFile(path.join(work, 'fits'), 4 * MiB);
      await expect(ship(t, fits, 'full-1')).resolves.toBe('published');
      expect(await parts(mnt)).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

describe('SftpTransport against a server without the OpenSSH extensions', () => {
  it('refuses with ESFTP_EXTENSION naming the peer and the missing extension', async () => {
    const work = await tempDir();
    const hostKeyPub = await generateKey(path.join(work, 'host'));
    const clientKey = path.join(work, 'id');
    await generateKey(clientKey);
    // ssh2's own SFTP server announces no extensions at all.
    const server = new ssh2.Server({ hostKeys: [await readFile(path.join(work, 'host'))] }, (client) => {
      client.on('error', () => {});
      client.on('authentication', (ctx) => ctx.accept());
      client.on('ready', () => {
        client.on('session', (accept) => {
          accept().on('sftp', (acceptSftp) => {
            acceptSftp();
          });
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as { port: number }).port;
    const [type, b64] = hostKeyPub.split(/\s+/);
    await writeFile(path.join(work, 'known_hosts'), `[127.0.0.1]:${port} ${type} ${b64}\n`);
    const t = new SftpTransport({
      peer: 'gamma',
      host: '127.0.0.1',
      port,
      username: 'x',
      identity: clientKey,
      knownHosts: path.join(work, 'known_hosts'),
      remoteRoot: '/spool',
      connectTimeoutMs: 5000,
      opTimeoutMs: 5000,
    });
    try {
      const err = await rejection(ship(t, await randomFile(path.join(work, 'b'), 10), 'b1'));
      expect(err.code).toBe('ESFTP_EXTENSION');
      expect(err.recoverable).toBe(false);
      expect(err.message).toContain('gamma');
      expect(err.message).toContain('fsync@openssh.com');
      expect(t.connected).toBe(false);
    } finally {
      await t.close();
      await new Promise((r) => server.close(r));
      await removeDir(work);
    }
  });
});
