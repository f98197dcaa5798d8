// Publishes bundle files into a landing directory on this host's filesystem: the same steps and guarantees as SFTP, no network.
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PART_SUFFIX, RECEIPT_NAME } from '../envelope/bundle-name.js';
import { errno, FerryError } from '../errors.js';
import { assertBundleName } from './bundle-name.js';
import { KeyedLock } from './keyed-lock.js';
import { openLocalSource, readExactly, type LocalSource } from './local-source.js';
import { sameBytes } from './same-bytes.js';
import type { LandingEntry, ProgressFn, PublishResult, Transport } from './transport.js';

/** Options of {@link LocalTransport}. */
export interface LocalTransportOptions {
  /** Name used in messages and errors (the host itself, for a self-route). */
  peer: string;
  /** The landing directory: `<receiving spool>/landing/<this host>`. */
  dir: string;
  /** Copy buffer size. Default 1 MiB. */
  chunkBytes?: number;
}

/**
 * {@link Transport} into a local directory, for queues routed to this host and for fast tests. Copies to
 * `<name>.part` (mode 0640), fsyncs it, renames it to `<name>` (an existing name compared first, see
 * {@link Transport.publish}) and fsyncs the directory.
 */
export class LocalTransport implements Transport {
  readonly peer: string;
  private readonly dir: string;
  private readonly chunkBytes: number;
  private readonly locks = new KeyedLock();
  private closed = false;

  constructor(options: LocalTransportOptions) {
    this.peer = options.peer;
    this.dir = path.resolve(options.dir);
    this.chunkBytes = options.chunkBytes ?? 1024 * 1024;
  }

  /** See {@link Transport.upload}. */
  async upload(localPath: string, name: string, onProgress?: ProgressFn): Promise<void> {
    this.check(name);
    await this.locks.run(name, async () => {
      const part = path.join(this.dir, name + PART_SUFFIX);
      const src = await openLocalSource(localPath, this.peer);
      try {
        // A leftover (even a planted symlink) is removed, then the part is created exclusively: O_EXCL never
        // follows a symlink, so nothing outside the landing directory can be written through it.
        await this.fsCall('unlink', part, () => unlink(part).catch((err: unknown) => (errno(err) === 'ENOENT' ? undefined : Promise.reject(err))));
        const out = await this.fsCall('open', part, () => open(part, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o640));
        try {
          await this.copy(src, out, onProgress);
          // fsync before the link: nothing may appear under the bundle's name that a crash could still lose or truncate.
          await this.fsCall('fsync', part, () => out.sync());
        } finally {
          await out.close();
        }
      } finally {
        await src.handle.close();
      }
    });
  }

  /** See {@link Transport.publish}: compare an existing name, then an atomic rename (the bundle never has a second link). */
  async publish(localPath: string, name: string): Promise<PublishResult> {
    this.check(name);
    return this.locks.run(name, async () => {
      const part = path.join(this.dir, name + PART_SUFFIX);
      const dst = path.join(this.dir, name);
      let result: PublishResult = 'published';
      if (await lstat(dst).then(() => true, () => false)) {
        if (await this.holds(dst, localPath)) {
          await this.fsCall('unlink', part, () => unlink(part).catch((err: unknown) => (errno(err) === 'ENOENT' ? undefined : Promise.reject(err))));
          await this.fsyncDir();
          return 'already';
        }
        result = 'replaced';
      }
      await this.fsCall('rename', part, () => rename(part, dst));
      // The rename is durable only once its directory is.
      await this.fsyncDir();
      return result;
    });
  }

  /** See {@link Transport.list}. */
  async list(): Promise<LandingEntry[]> {
    const out: LandingEntry[] = [];
    for (const name of await this.fsCall('readdir', this.dir, () => readdir(this.dir))) {
      try {
        const st = await lstat(path.join(this.dir, name));
        if (st.isFile()) out.push({ name, size: st.size });
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw this.fsError('lstat', name, err);
      }
    }
    return out;
  }

  /** See {@link Transport.readReceipt}. */
  async readReceipt(maxBytes: number): Promise<Uint8Array | undefined> {
    const file = path.join(this.dir, RECEIPT_NAME);
    let fh: FileHandle;
    try {
      fh = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw this.fsError('open', file, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > maxBytes) throw new FerryError('ERECEIPT', `peer ${this.peer}: ${file} is not a receipt (${st.isFile() ? `${st.size} bytes` : 'not a regular file'})`, { peer: this.peer, path: file });
      const buf = Buffer.alloc(st.size);
      let at = 0;
      while (at < st.size) {
        const { bytesRead } = await fh.read(buf, at, st.size - at, at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
      return buf.subarray(0, at);
    } finally {
      await fh.close();
    }
  }

  /** See {@link Transport.remove}. */
  async remove(name: string): Promise<void> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,205}$/.test(name)) throw new FerryError('EUSAGE', `refusing to remove ${JSON.stringify(name)} from the landing directory of ${this.peer}`, { peer: this.peer });
    const file = path.join(this.dir, name);
    await this.fsCall('unlink', file, () => unlink(file).catch((err: unknown) => (errno(err) === 'ENOENT' ? undefined : Promise.reject(err))));
  }

  /** Nothing to close; later calls reject. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private check(name: string): void {
    assertBundleName(name, this.peer);
    if (this.closed) throw new FerryError('ETRANSPORT', `peer ${this.peer}: transport closed`, { peer: this.peer });
  }

  /** True when `file` holds the same bytes as `localPath` (size, then the whole content compared in chunks). */
  private async holds(file: string, localPath: string): Promise<boolean> {
    const src = await openLocalSource(localPath, this.peer);
    try {
      const fh = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
      try {
        const st = await fh.stat();
        if (!st.isFile() || st.size !== src.size) return false;
        return await sameBytes(src, st.size, (buf, pos) => fh.read(buf, 0, buf.length, pos).then((r) => r.bytesRead), this.peer);
      } finally {
        await fh.close();
      }
    } finally {
      await src.handle.close();
    }
  }

  private async copy(src: LocalSource, out: FileHandle, onProgress?: ProgressFn): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(this.chunkBytes, Math.max(1, src.size)));
    let pos = 0;
    const progress: ProgressFn = (sent, total) => {
      try {
        onProgress?.(sent, total);
      } catch {
        // a throwing callback is the caller's bug; it must not break the upload midway
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

  private async fsyncDir(): Promise<void> {
    const d = await this.fsCall('open', this.dir, () => open(this.dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY));
    try {
      await this.fsCall('fsync', this.dir, () => d.sync());
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

  /** ENOSPC/EDQUOT → EREMOTE_FULL (recoverable: the receiver drains its landing directory); everything else ETRANSPORT. */
  private fsError(syscall: string, file: string, err: unknown): FerryError {
    if (err instanceof FerryError) return err;
    const code = errno(err);
    const full = code === 'ENOSPC' || code === 'EDQUOT';
    const hint = code === 'ENOENT' ? ' (does the landing directory exist? the receiving daemon makes it at start)' : '';
    return new FerryError(
      full ? 'EREMOTE_FULL' : 'ETRANSPORT',
      `peer ${this.peer}: ${syscall} ${file} failed: ${full ? 'the landing filesystem is full' : (err as Error).message}${hint}`,
      { peer: this.peer, path: file, syscall, cause: err },
    );
  }
}
