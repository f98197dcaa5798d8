// Acting through a peer's real login: an SFTP session as the chrooted account a receiver gave a sender, for tests that play the hostile peer.
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import type { SFTPWrapper, Stats } from 'ssh2';
import type { Cluster } from '../../src/devtools/cluster.js';

/** An open SFTP session as one login, with promise-returning calls (paths as the login sees them: `/landing/...`). */
export interface PeerSession {
  readonly sftp: SFTPWrapper;
  put(path: string, bytes: Uint8Array, mode?: number): Promise<void>;
  /** Appends `bytes` to an open-ended file (creates it). */
  append(path: string, bytes: Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  hardlink(from: string, to: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<Stats>;
  lstat(path: string): Promise<Stats>;
  get(path: string): Promise<Buffer>;
  chmod(path: string, mode: number): Promise<void>;
  end(): void;
}

function cb<T>(fn: (done: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

/** Logs in as `sender`'s login on `receiver` (its identity, the pinned host key) and opens SFTP. */
export async function loginAs(cluster: Cluster, receiver: string, sender: string): Promise<PeerSession> {
  const l = cluster.deployment.login(receiver, sender);
  const pinned = (readFileSync(l.knownHosts, 'utf8').split('\n')[0] ?? '').split(/\s+/)[2] ?? '';
  const client = new ssh2.Client();
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
    client.once('error', reject);
    client.once('ready', () => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
    client.connect({
      host: l.host, port: l.port, username: l.user, privateKey: readFileSync(l.identity), readyTimeout: 10_000,
      hostVerifier: (key: Buffer) => key.toString('base64') === pinned,
    });
  });
  const session: PeerSession = {
    sftp,
    put: async (path, bytes, mode = 0o640) => {
      const h = await cb<Buffer>((d) => sftp.open(path, 'w', { mode }, d));
      let at = 0;
      while (at < bytes.length) {
        const n = Math.min(255 * 1024, bytes.length - at);
        await cb<void>((d) => sftp.write(h, Buffer.from(bytes.buffer, bytes.byteOffset + at, n), 0, n, at, d));
        at += n;
      }
      await cb<void>((d) => sftp.close(h, d));
    },
    append: async (path, bytes) => {
      const h = await cb<Buffer>((d) => sftp.open(path, 'a', { mode: 0o640 }, d));
      await cb<void>((d) => sftp.write(h, Buffer.from(bytes), 0, bytes.length, null as unknown as number, d));
      await cb<void>((d) => sftp.close(h, d));
    },
    rename: (from, to) => cb<void>((d) => sftp.rename(from, to, d)),
    unlink: (path) => cb<void>((d) => sftp.unlink(path, d)),
    symlink: (target, path) => cb<void>((d) => sftp.symlink(target, path, d)),
    hardlink: (from, to) => cb<void>((d) => sftp.ext_openssh_hardlink(from, to, d)),
    mkdir: (path) => cb<void>((d) => sftp.mkdir(path, d)),
    rmdir: (path) => cb<void>((d) => sftp.rmdir(path, d)),
    readdir: async (path) => (await cb<Array<{ filename: string }>>((d) => sftp.readdir(path, d))).map((e) => e.filename).sort(),
    stat: (path) => cb<Stats>((d) => sftp.stat(path, d)),
    lstat: (path) => cb<Stats>((d) => sftp.lstat(path, d)),
    get: async (path) => {
      const h = await cb<Buffer>((d) => sftp.open(path, 'r', d));
      const st = await cb<Stats>((d) => sftp.fstat(h, d));
      const buf = Buffer.alloc(st.size ?? 0);
      let at = 0;
      while (at < buf.length) {
        const n = await cb<number>((d) => sftp.read(h, buf, at, buf.length - at, at, d));
        if (!n) break;
        at += n;
      }
      await cb<void>((d) => sftp.close(h, d));
      return buf.subarray(0, at);
    },
    chmod: (path, mode) => cb<void>((d) => sftp.chmod(path, mode, d)),
    end: () => client.end(),
  };
  return session;
}
