// Publishes bundle files into a landing area on this host's filesystem: the same steps and guarantees as SFTP, no network.
import { constants as fsConstants } from 'node:fs';
import { link, open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { errno, FerryError } from '../errors.js';
import { assertBundleName } from './bundle-name.js';
import { KeyedLock } from './keyed-lock.js';
import { openLocalSource, readExactly } from './local-source.js';
import type { ProgressFn, PublishResult, Transport } from './transport.js';

/** Options of {@link LocalTransport}. */
export interface LocalTransportOptions {
  /** Name used in messages and errors (the host itself, for a self-route). */
  peer: string;
  /** The receiving spool root: files land in `<root>/landing/tmp`, then `<root>/landing/new`. */
  root: string;
  /** Copy buffer size. Default 1 MiB. */
  chunkBytes?: number;
}

/**
 * {@link Transport} into a local directory, for queues routed to this host and for fast tests. Copies to
 * `landing/tmp/<name>` (mode 0600), fsyncs it, `link()`s it to `landing/new/<name>` — EEXIST means an earlier
 * attempt published it: `'already'` — unlinks the tmp name and fsyncs `landing/new`.
 */
export class LocalTransport implements Transport {
  readonly peer: string;
  private readonly root: string;
  private readonly chunkBytes: number;
  private readonly locks = new KeyedLock();
  private closed = false;

  constructor(options: LocalTransportOptions) {
    this.peer = options.peer;
    this.root = path.resolve(options.root);
    this.chunkBytes = options.chunkBytes ?? 1024 * 1024;
  }

  /** See {@link Transport.publish}. */
  async publish(localPath: string, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
    assertBundleName(name, this.peer);
    if (this.closed) throw new FerryError('ETRANSPORT', `peer ${this.peer}: transport closed`, { peer: this.peer });
    return this.locks.run(name, () => this.publishOnce(localPath, name, onProgress));
  }

  /** Nothing to close; later publishes reject. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private async publishOnce(localPath: string, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
    const tmpDir = path.join(this.root, 'landing', 'tmp');
    const newDir = path.join(this.root, 'landing', 'new');
    const tmp = path.join(tmpDir, name);
    const dst = path.join(newDir, name);
    const src = await openLocalSource(localPath, this.peer);
    try {
      // A leftover (even a planted symlink) is removed, then the tmp file is created exclusively: O_EXCL never
      // follows a symlink, so nothing outside the landing area can be written through it.
      await this.fsCall('unlink', tmp, () => unlink(tmp).catch((err: unknown) => (errno(err) === 'ENOENT' ? undefined : Promise.reject(err))));
      const out = await this.fsCall('open', tmp, () =>
        open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600),
      );
      try {
        await this.fsCall('chmod', tmp, () => out.chmod(0o600));
        await this.copy(src, out, onProgress);
        // fsync before the link: nothing may appear in landing/new that a crash could still lose or truncate.
        await this.fsCall('fsync', tmp, () => out.sync());
      } finally {
        await out.close();
      }
      let result: PublishResult = 'published';
      try {
        await link(tmp, dst);
      } catch (err) {
        if (errno(err) !== 'EEXIST') throw this.fsError('link', dst, err);
        result = 'already';
      }
      await this.fsCall('unlink', tmp, () => unlink(tmp));
      // The link is durable only once its directory is: fsync landing/new (also on 'already', which may follow a crash
      // between an earlier link and its directory fsync).
      await this.fsyncDir(newDir);
      return result;
    } finally {
      await src.handle.close();
    }
  }

  private async copy(src: Awaited<ReturnType<typeof openLocalSource>>, out: FileHandle, onProgress?: ProgressFn): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(this.chunkBytes, Math.max(1, src.size)));
    let pos = 0;
    const progress: ProgressFn = (sent, total) => {
      try {
        onProgress?.(sent, total);
      } catch {
        // a throwing callback is the caller's bug; it must not break the publish midway
      }
    };
    progress(0, src.size);
    while (pos < src.size) {
      const n = Math.min(buf.length, src.size - pos);
      const view = buf.subarray(0, n);
      await readExactly(src, view, pos, this.peer);
      let written = 0;
      while (written < n) {
        const { bytesWritten } = await this.fsCall('write', src.path, () => out.write(view, written, n - written, pos + written));
        written += bytesWritten;
      }
      pos += n;
      progress(pos, src.size);
    }
  }

  private async fsyncDir(dir: string): Promise<void> {
    const d = await this.fsCall('open', dir, () => open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY));
    try {
      await this.fsCall('fsync', dir, () => d.sync());
    } finally {
      await d.close();
    }
  }

  private async fsCall<T>(syscall: string, file: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.fsError(syscall, file, err);
    }
  }

  /** ENOSPC/EDQUOT → EREMOTE_FULL (recoverable: the receiver drains its landing area); everything else ETRANSPORT. */
  private fsError(syscall: string, file: string, err: unknown): FerryError {
    if (err instanceof FerryError) return err;
    const code = errno(err);
    const full = code === 'ENOSPC' || code === 'EDQUOT';
    const hint = code === 'ENOENT' ? ' (is the landing area initialised?)' : '';
    return new FerryError(
      full ? 'EREMOTE_FULL' : 'ETRANSPORT',
      `peer ${this.peer}: ${syscall} ${file} failed: ${full ? 'the landing filesystem is full' : (err as Error).message}${hint}`,
      { peer: this.peer, path: file, syscall, cause: err },
    );
  }
}
