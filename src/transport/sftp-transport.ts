// Ships bundle files into the landing directory a peer gave this host, over SSH/SFTP: windowed upload to <name>.part, fsync, rename to <name>, fsync the directory.
import { crashPoint } from '../spool/crash-point.js';
import { posix } from 'node:path';
import type { Stats } from 'ssh2';
import { FerryError } from '../errors.js';
import { assertBundleName } from './bundle-name.js';
import { KeyedLock } from './keyed-lock.js';
import { openLocalSource, readExactly, type LocalSource } from './local-source.js';
import { silentLogger, type TransportLogger } from './logger.js';
import { isNoSuchFile, remoteError, SFTP_STATUS, sftpStatus } from './remote-errors.js';
import { openSession, SftpSession } from './sftp-session.js';
import { formatBundleName, parseBundleName, PART_SUFFIX, RECEIPT_NAME } from '../envelope/bundle-name.js';
import type { LandingEntry, ProgressFn, PublishResult, Transport } from './transport.js';

/** When a leftover `<name>.part` may be continued instead of rewritten from byte 0. */
export type ResumePolicy =
  /** Only when this transport's previous attempt at the same name ended with the connection dropping (default). */
  | 'after-cut'
  /** Whenever the leftover is no longer than the local file and its tail matches (e.g. after a daemon restart). */
  | 'always'
  /** Always rewrite from byte 0. */
  | 'never';

/** Options of {@link SftpTransport}. */
export interface SftpTransportOptions {
  /** The peer's name (`peers.<name>` in the config); used in messages and errors. */
  peer: string;
  /** Host name or address to connect to. */
  host: string;
  /** TCP port (usually 22). Also selects the known_hosts name: `host` on 22, `[host]:port` otherwise. */
  port: number;
  /** The SFTP account on the peer. */
  username: string;
  /** Path to the unencrypted private key (OpenSSH format); refused if group/other can access it. */
  identity: string;
  /** Path to the known_hosts file pinning the peer's host key. A missing file pins nothing (every host is refused). */
  knownHosts: string;
  /** The landing directory the peer gave this host, as its SFTP login sees it (`/landing` under the chroot of the README). */
  remoteRoot: string;
  /** Give up connecting (TCP + SSH handshake + auth) after this long. Default 15 000 ms. */
  connectTimeoutMs?: number;
  /** Give up on any single SFTP request — or on an upload that stops making progress — after this long. Default 30 000 ms. */
  opTimeoutMs?: number;
  /** SSH keepalive interval; a peer that misses `keepaliveCountMax` in a row is dropped. 0 disables. Default 5 000 ms. */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection is dropped. Default 3. */
  keepaliveCountMax?: number;
  /** Upload bytes in flight per publish (unacknowledged write requests × chunk). Default 8 MiB (32 × 255 KiB). */
  windowBytes?: number;
  /** Bytes per SFTP write request; clamped to the server's limit. Default 255 KiB (OpenSSH's limit is 255 KiB + header). */
  chunkBytes?: number;
  /** When a leftover partial upload may be resumed; see {@link ResumePolicy}. Default `'after-cut'`. */
  resume?: ResumePolicy;
  /**
   * Start an upload only when the peer keeps enough free space to deliver what its landing directory holds, this file
   * included (see {@link SftpTransport.ensureRoom}); refused uploads reject with EREMOTE_FULL. The daemon turns this on.
   * Default false.
   */
  keepDeliveryRoom?: boolean;
  /** Where to log (pino-compatible). Default: nothing. */
  logger?: TransportLogger;
}

/** Counters since the transport was made (for status output and tests). */
export interface SftpTransportStats {
  /** File bytes acknowledged by the server across all publishes. */
  bytesSent: number;
  /** Publishes that resolved (`published` or `already`). */
  publishes: number;
  /** Uploads that continued a partial remote file instead of starting over. */
  resumes: number;
  /** SSH connections established. */
  connects: number;
}

/** What {@link SftpTransport.probe} found out about a peer, for `ferry doctor`. */
export interface SftpProbe {
  /** SHA256 fingerprint of the peer's (verified) host key, as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** Its key type, e.g. `ssh-ed25519`. */
  hostKeyType: string;
  /** SFTP extensions the server announced. */
  extensions: string[];
  /** True when a file can be created, fsynced and removed in the landing directory. */
  landingWritable: boolean;
  /** Bytes available to the account on the landing filesystem (statvfs), when the server tells. */
  landingFreeBytes: number | undefined;
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** How much of a leftover partial upload is read back and compared before resuming after it. */
const RESUME_CHECK_BYTES = 64 * KiB;
/** Local read size: several write requests per read, bounded so memory stays small (I8). */
const READ_BYTES = 4 * MiB;
/** Names whose last attempt failed, remembered for resume decisions; bounded. */
const MAX_REMEMBERED_ATTEMPTS = 10_000;

type AttemptEnd = 'cut' | 'failed';

/**
 * Free space a peer needs to deliver a landed file of `size` bytes into its inbox: the payloads, a block or two per
 * message for partly filled blocks and metadata files (the count its name says; 1 when it says nothing), and a
 * little for journals.
 */
function deliveryRoom(name: string, size: number): number {
  const count = parseBundleName(name.endsWith(PART_SUFFIX) ? name.slice(0, -PART_SUFFIX.length) : name)?.count ?? 1;
  return size + count * 8 * KiB + 64 * KiB;
}

/**
 * {@link Transport} over SSH/SFTP (ssh2) to one peer. One SSH connection per transport, opened on first use and
 * reopened on the next call after it drops (the daemon owns backoff). The host key is pinned from known_hosts;
 * the SFTP server must offer fsync, posix-rename and hardlink extensions.
 *
 * Uploading `name`: write `<remoteRoot>/<name>.part` (mode 0640, so the receiving daemon's group reads it) with many
 * write requests in flight, `fsync@openssh.com` it, check its size. Publishing it: `posix-rename@openssh.com` it to
 * `<remoteRoot>/<name>` (atomic, one link throughout) and fsync the directory so the new entry survives a crash of
 * the peer.
 */
export class SftpTransport implements Transport {
  readonly peer: string;
  private readonly opts: Required<Omit<SftpTransportOptions, 'logger'>> & { logger: TransportLogger };
  private readonly landing: string;
  private current: SftpSession | undefined;
  private connecting: Promise<SftpSession> | undefined;
  private closed = false;
  private readonly locks = new KeyedLock();
  private readonly lastAttempt = new Map<string, AttemptEnd>();
  /** Uploads under way on this transport: their size and bytes acknowledged so far (for the room check). */
  private readonly inFlight = new Map<string, { size: number; sent: number }>();
  /** Room checks run one at a time, so concurrent uploads each see the ones admitted before them. */
  private roomChecks: Promise<void> = Promise.resolve();
  private readonly counters: SftpTransportStats = { bytesSent: 0, publishes: 0, resumes: 0, connects: 0 };

  constructor(options: SftpTransportOptions) {
    this.opts = {
      peer: options.peer,
      host: options.host,
      port: options.port,
      username: options.username,
      identity: options.identity,
      knownHosts: options.knownHosts,
      remoteRoot: options.remoteRoot,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      opTimeoutMs: options.opTimeoutMs ?? 30_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 5_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      windowBytes: options.windowBytes ?? 8 * MiB,
      chunkBytes: options.chunkBytes ?? 255 * KiB,
      resume: options.resume ?? 'after-cut',
      keepDeliveryRoom: options.keepDeliveryRoom ?? false,
      logger: options.logger ?? silentLogger,
    };
    this.peer = options.peer;
    for (const k of ['connectTimeoutMs', 'opTimeoutMs', 'windowBytes', 'chunkBytes'] as const) {
      const v = this.opts[k];
      if (!Number.isFinite(v) || v <= 0) {
        throw new FerryError('ECONFIG', `expected transport option \`${k}\` for peer ${this.peer} to be a positive number, got ${String(v)}`, { peer: this.peer });
      }
    }
    if (!posix.isAbsolute(this.opts.remoteRoot)) {
      throw new FerryError('ECONFIG', `expected \`peers.${this.peer}.remote_root\` to be an absolute path, got \`${this.opts.remoteRoot}\``, { peer: this.peer });
    }
    this.landing = posix.normalize(this.opts.remoteRoot);
  }

  /** True while an SSH+SFTP session to the peer is up. */
  get connected(): boolean {
    return this.current?.open === true;
  }

  /** A snapshot of the counters. */
  get stats(): SftpTransportStats {
    return { ...this.counters };
  }

  /** See {@link Transport.upload}. Concurrent uploads of different names share the connection; the same name is serialised. */
  async upload(localPath: string, name: string, onProgress?: ProgressFn): Promise<void> {
    assertBundleName(name, this.peer);
    await this.locks.run(name, () => this.uploadOnce(localPath, name, onProgress));
  }

  /**
   * See {@link Transport.publish}. An atomic rename (`posix-rename@openssh.com`, rename(2) on the peer): the bundle never
   * has a second link, which the receiver would refuse to read (a hard link is how a peer could expose another file).
   * Nothing but this host's own login writes bundle names in its landing directory, so an existing name is compared
   * first and then replaced, never taken for delivered.
   */
  async publish(localPath: string, name: string): Promise<PublishResult> {
    assertBundleName(name, this.peer);
    return this.locks.run(name, async () => {
      const s = await this.session();
      const part = this.path(name + PART_SUFFIX);
      const dst = this.path(name);
      const [exists, partStat] = await Promise.all([this.statOrUndefined(s, dst), this.statOrUndefined(s, part)]);
      let result: PublishResult = 'published';
      if (exists !== undefined) {
        if (await this.remoteHolds(s, dst, exists, localPath)) {
          if (partStat !== undefined) await this.unlinkQuiet(s, part);
          await this.fsyncLanding(s);
          this.counters.publishes++;
          return 'already';
        }
        // Not ours (an earlier version of ourselves, or something planted through our own login): never "delivered".
        this.opts.logger.warn({ peer: this.peer, name, remoteSize: exists.size }, 'the landing directory held other bytes under this bundle\'s name; replacing them');
        result = 'replaced';
      }
      if (partStat === undefined) throw new FerryError('ETRANSPORT', `peer ${this.peer}: the upload ${part} is gone before it was published; uploading it again`, { peer: this.peer, path: part });
      try {
        await s.call<void>('rename the upload to its name', dst, (cb) => s.sftp.ext_openssh_rename(part, dst, cb));
      } catch (err) {
        throw await this.classify(s, err, `publish ${name}`, dst, 0);
      }
      // The rename is durable only once the directory is.
      await this.fsyncLanding(s);
      this.counters.publishes++;
      return result;
    });
  }

  /** See {@link Transport.list}. */
  async list(): Promise<LandingEntry[]> {
    const s = await this.session();
    try {
      const list = await s.call<Array<{ filename: string; attrs: Stats }>>('list the landing directory', this.landing, (cb) => s.sftp.readdir(this.landing, cb));
      return list.filter((e) => e.attrs.isFile()).map((e) => ({ name: e.filename, size: e.attrs.size ?? 0 }));
    } catch (err) {
      throw remoteError(err, { peer: this.peer, action: 'list the landing directory', path: this.landing });
    }
  }

  /** See {@link Transport.readReceipt}. */
  async readReceipt(maxBytes: number): Promise<Uint8Array | undefined> {
    const s = await this.session();
    const file = this.path(RECEIPT_NAME);
    let handle: Buffer;
    try {
      handle = await s.call<Buffer>('open the receipt', file, (cb) => s.sftp.open(file, 'r', cb));
    } catch (err) {
      if (isNoSuchFile(err)) return undefined;
      throw remoteError(err, { peer: this.peer, action: 'open the receipt', path: file });
    }
    try {
      const st = await s.call<Stats>('fstat the receipt', file, (cb) => s.sftp.fstat(handle, cb));
      const size = st.size ?? 0;
      if (!st.isFile() || size > maxBytes) throw new FerryError('ERECEIPT', `peer ${this.peer}: ${file} is not a receipt (${st.isFile() ? `${size} bytes` : 'not a regular file'})`, { peer: this.peer, path: file });
      const buf = Buffer.alloc(size);
      let at = 0;
      while (at < size) {
        const n = await s.call<number>('read the receipt', file, (cb) => s.sftp.read(handle, buf, at, size - at, at, cb));
        if (!n) break;
        at += n;
      }
      return buf.subarray(0, at);
    } catch (err) {
      throw err instanceof FerryError ? err : remoteError(err, { peer: this.peer, action: 'read the receipt', path: file });
    } finally {
      if (s.open) await s.call<void>('close the receipt', file, (cb) => s.sftp.close(handle, cb)).catch(() => undefined);
    }
  }

  /** See {@link Transport.remove}. */
  async remove(name: string): Promise<void> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,205}$/.test(name)) throw new FerryError('EUSAGE', `refusing to remove ${JSON.stringify(name)} from the landing directory of ${this.peer}`, { peer: this.peer });
    const s = await this.session();
    await this.unlinkQuiet(s, this.path(name));
  }

  /** A path in the landing directory. */
  private path(name: string): string {
    return posix.join(this.landing, name);
  }

  /** Whether the remote file `dst` (stat `st`) holds the bytes of `localPath`: same size, same first and last 64 KiB. */
  private async remoteHolds(s: SftpSession, dst: string, st: Stats, localPath: string): Promise<boolean> {
    const src = await openLocalSource(localPath, this.peer);
    try {
      if (!st.isFile() || st.size !== src.size) return false;
      const handle = await s.call<Buffer>('open the published file', dst, (cb) => s.sftp.open(dst, 'r', cb));
      try {
        const head = Math.min(RESUME_CHECK_BYTES, src.size);
        return (await this.rangeMatches(s, handle, src, 0, head, dst)) && (await this.rangeMatches(s, handle, src, Math.max(head, src.size - RESUME_CHECK_BYTES), src.size, dst));
      } finally {
        await s.call<void>('close the published file', dst, (cb) => s.sftp.close(handle, cb)).catch(() => undefined);
      }
    } finally {
      await src.handle.close();
    }
  }

  /** Connect (if needed) and report the host key, extensions and whether the landing directory is writable. */
  async probe(): Promise<SftpProbe> {
    const s = await this.session();
    // Shaped like an upload in progress (epoch 1 of a channel of zeros, which no sender uses): the receiving daemon
    // leaves those alone, where it would sweep a dot-file at once.
    const probeName = this.path(`${formatBundleName({ epoch: 1, channel: '0000000000000000', firstSeq: 1 + Math.floor(Math.random() * 1e11), count: 1, gap: false })}${PART_SUFFIX}`);
    let landingWritable = false;
    try {
      const h = await s.call<Buffer>('probe the landing directory', probeName, (cb) => s.sftp.open(probeName, 'wx', { mode: 0o640 }, cb));
      await s.call<void>('fsync the probe file', probeName, (cb) => s.sftp.ext_openssh_fsync(h, cb));
      await s.call<void>('close the probe file', probeName, (cb) => s.sftp.close(h, cb));
      await this.unlinkQuiet(s, probeName);
      landingWritable = true;
    } catch (err) {
      if (!s.open) throw remoteError(err, { peer: this.peer, action: 'probe' });
    }
    return {
      fingerprint: s.fingerprint,
      hostKeyType: s.hostKeyType,
      extensions: Object.keys(s.extensions).sort(),
      landingWritable,
      landingFreeBytes: await this.freeBytes(s),
    };
  }

  /** The open SFTP channel, for `ferry doctor`'s confinement probe. Connects if needed. */
  async sftpChannel(): Promise<SftpSession['sftp']> {
    return (await this.session()).sftp;
  }

  /** Close the connection; pending publishes reject with ETRANSPORT; later publishes too. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.current;
    this.current = undefined;
    const c = this.connecting;
    await Promise.all([s?.end(), c?.then((late) => late.end(), () => undefined)]);
  }

  /** See {@link Transport.warm}. */
  async warm(): Promise<void> {
    await this.session().catch(() => undefined);
  }

  /** The live session, connecting if there is none. Concurrent callers share one connection attempt. */
  private async session(): Promise<SftpSession> {
    if (this.closed) throw this.closedError();
    if (this.current?.open) return this.current;
    if (this.connecting === undefined) {
      const { logger, ...rest } = this.opts;
      this.connecting = openSession({ ...rest, logger })
        .then((s) => {
          if (this.closed) {
            void s.end();
            throw this.closedError();
          }
          this.current = s;
          this.counters.connects++;
          logger.info({ peer: this.peer, fingerprint: s.fingerprint }, 'sftp connected');
          return s;
        })
        .finally(() => {
          this.connecting = undefined;
        });
    }
    return this.connecting;
  }

  private closedError(): FerryError {
    return new FerryError('ETRANSPORT', `peer ${this.peer}: transport closed`, { peer: this.peer });
  }

  private remember(name: string, end: AttemptEnd): void {
    this.lastAttempt.delete(name);
    this.lastAttempt.set(name, end);
    if (this.lastAttempt.size > MAX_REMEMBERED_ATTEMPTS) {
      const oldest = this.lastAttempt.keys().next().value;
      if (oldest !== undefined) this.lastAttempt.delete(oldest);
    }
  }

  private async uploadOnce(localPath: string, name: string, onProgress?: ProgressFn): Promise<void> {
    const src = await openLocalSource(localPath, this.peer);
    let s: SftpSession | undefined;
    try {
      s = await this.session();
      await this.writePart(s, src, name, onProgress);
      this.lastAttempt.delete(name);
    } catch (err) {
      // A dropped or timed-out connection leaves a consistent prefix (sftp-server applies requests in order):
      // worth resuming. Any other failure (size mismatch, remote error) restarts from byte 0 next time.
      if (s !== undefined) this.remember(name, s.open ? 'failed' : 'cut');
      throw err instanceof FerryError ? err : remoteError(err, { peer: this.peer, action: `upload ${name}` });
    } finally {
      this.inFlight.delete(name);
      await src.handle.close();
    }
  }

  private async writePart(s: SftpSession, src: LocalSource, name: string, onProgress?: ProgressFn): Promise<void> {
    const tmp = this.path(name + PART_SUFFIX);
    const tmpStat = await this.statOrUndefined(s, tmp);
    if (this.opts.keepDeliveryRoom) await this.ensureRoom(s, name, src.size, tmpStat?.isFile() ? tmpStat.size : 0);
    const { handle, offset } = await this.openTmp(s, src, name, tmp, tmpStat);
    let closed = false;
    try {
      // Force 0640 even when the part pre-existed with another mode (open's mode only applies on create).
      const chmod = s.call<void>('chmod the upload', tmp, (cb) => s.sftp.fchmod(handle, 0o640, cb));
      chmod.catch(() => undefined); // awaited below; this only keeps an early write failure from orphaning it
      const report = this.safeProgress(onProgress);
      const progress: ProgressFn = (sent, total) => {
        const f = this.inFlight.get(name);
        if (f) f.sent = sent;
        report(sent, total);
      };
      progress(offset, src.size);
      await this.writeRange(s, handle, src, offset, tmp, progress);
      await chmod;
      // fsync before anything can see the file under its name: "uploaded" is worth nothing until durable.
      const [, st] = await Promise.all([
        s.call<void>('fsync the upload', tmp, (cb) => s.sftp.ext_openssh_fsync(handle, cb)),
        s.call<Stats>('fstat the upload', tmp, (cb) => s.sftp.fstat(handle, cb)),
      ]);
      closed = true;
      await s.call<void>('close the upload', tmp, (cb) => s.sftp.close(handle, cb));
      if (st.size !== src.size) {
        throw new FerryError('ETRANSPORT', `peer ${this.peer}: ${tmp} holds ${st.size} bytes after upload, expected ${src.size}; will upload again from the start`, {
          peer: this.peer,
          path: tmp,
        });
      }
    } catch (err) {
      if (!closed && s.open) await s.call<void>('close the upload', tmp, (cb) => s.sftp.close(handle, cb)).catch(() => undefined);
      const mapped = await this.classify(s, err, `upload ${name}`, tmp, src.size);
      // Give the space our partial file holds back to the peer: it needs it to drain its landing directory.
      if (mapped.code === 'EREMOTE_FULL' && s.open) await this.unlinkQuiet(s, tmp).catch(() => undefined);
      throw mapped;
    }
    crashPoint('ship.after-upload');
    const room = s.cache.get('landingRoom');
    if (typeof room === 'number') s.cache.set('landingRoom', Math.max(room, deliveryRoom(name, src.size)));
  }

  /**
   * Refuse (EREMOTE_FULL, retried with backoff) to start an upload that would leave the peer unable to drain its
   * landing directory. The peer delivers a bundle by writing its messages into the inbox while the bundle still sits
   * there, so it needs free space as large as the bundle (plus a block or two per message); a sender that fills
   * the peer's disk with bundles (uploads grab whatever a consumer frees) wedges it for good: nothing can be
   * delivered, so nothing is consumed. So upload only when, after this bundle lands, the free space (minus what this
   * transport's other uploads still have to write) still lets the peer deliver the largest bundle waiting in
   * the landing directory, this one and the other uploads included. `partial` is what a leftover part of this name
   * already holds (resumed or removed, never extra). Skipped when the server has no statvfs extension. It is listed
   * once per connection, and again only when the figure at hand would refuse the upload.
   */
  private ensureRoom(s: SftpSession, name: string, size: number, partial: number): Promise<void> {
    const check = this.roomChecks.then(() => this.checkRoom(s, name, size, partial));
    this.roomChecks = check.catch(() => undefined);
    return check;
  }

  private async checkRoom(s: SftpSession, name: string, size: number, partial: number): Promise<void> {
    const free = await this.freeBytes(s);
    if (free === undefined) return;
    let pending = 0;
    let largest = deliveryRoom(name, size);
    for (const [other, f] of this.inFlight) {
      if (other === name) continue;
      pending += Math.max(0, f.size - f.sent);
      largest = Math.max(largest, deliveryRoom(other, f.size));
    }
    const after = free - pending - Math.max(0, size - partial);
    const fits = (landing: number) => after >= Math.max(largest, landing);
    const cached = s.cache.get('landingRoom');
    if (typeof cached !== 'number' || !fits(cached)) {
      const listed = await this.landingRoom(s);
      s.cache.set('landingRoom', listed);
      if (!fits(listed)) {
        throw new FerryError(
          'EREMOTE_FULL',
          `peer ${this.peer}: the remote disk or quota is too full to take ${name} (${size} bytes; ${free} bytes free) and still deliver what its landing directory holds; waiting for it to drain`,
          { peer: this.peer, path: this.path(name) },
        );
      }
    }
    this.inFlight.set(name, { size, sent: partial });
  }

  /** The free space the peer needs to deliver the largest bundle in the landing directory (0 when it is empty). */
  private async landingRoom(s: SftpSession): Promise<number> {
    const dir = this.landing;
    try {
      const list = await s.call<Array<{ filename: string; attrs: Stats }>>('list the landing directory', dir, (cb) => s.sftp.readdir(dir, cb));
      return list.reduce((max, e) => Math.max(max, deliveryRoom(e.filename, e.attrs.size ?? 0)), 0);
    } catch (err) {
      throw remoteError(err, { peer: this.peer, action: 'list the landing directory', path: dir });
    }
  }

  /** Open the tmp file: continue a leftover when allowed and its tail matches the local bytes, else create it afresh. */
  private async openTmp(s: SftpSession, src: LocalSource, name: string, tmp: string, tmpStat: Stats | undefined): Promise<{ handle: Buffer; offset: number }> {
    const policy = this.opts.resume;
    const prior = this.lastAttempt.get(name);
    const resumable =
      tmpStat !== undefined &&
      tmpStat.isFile() &&
      tmpStat.size > 0 &&
      tmpStat.size <= src.size &&
      (policy === 'always' || (policy === 'after-cut' && prior === 'cut'));
    if (resumable) {
      try {
        const handle = await s.call<Buffer>('open the upload', tmp, (cb) => s.sftp.open(tmp, 'r+', cb));
        // sftp-server applies writes in order, so a cut leaves a prefix; still read the tail back and compare, so a
        // peer that crashed (zero-filled or stale tail) or a different file under the same name is never built on.
        if (await this.tailMatches(s, handle, src, tmpStat.size, tmp)) {
          this.counters.resumes++;
          this.opts.logger.info({ peer: this.peer, name, offset: tmpStat.size, size: src.size }, 'resuming upload');
          return { handle, offset: tmpStat.size };
        }
        this.opts.logger.warn({ peer: this.peer, name }, 'partial upload does not match the local file; starting over');
        await s.call<void>('close the upload', tmp, (cb) => s.sftp.close(handle, cb));
      } catch (err) {
        throw await this.classify(s, err, `resume ${name}`, tmp, 0);
      }
    }
    try {
      // Remove any leftover, then create exclusively: O_EXCL never follows a symlink planted at the tmp name.
      // Both requests go out back to back (sftp-server answers in order), so a leftover costs no extra round trip.
      const [removed, opened] = await Promise.allSettled([
        tmpStat === undefined ? undefined : this.unlinkQuiet(s, tmp),
        s.call<Buffer>('create the upload', tmp, (cb) => s.sftp.open(tmp, 'wx', { mode: 0o640 }, cb)),
      ]);
      if (removed.status === 'rejected') {
        if (opened.status === 'fulfilled') await s.call<void>('close the upload', tmp, (cb) => s.sftp.close(opened.value, cb)).catch(() => undefined);
        throw removed.reason;
      }
      if (opened.status === 'rejected') throw opened.reason;
      return { handle: opened.value, offset: 0 };
    } catch (err) {
      if (isNoSuchFile(err)) {
        throw new FerryError('ETRANSPORT', `peer ${this.peer}: the landing directory ${posix.dirname(tmp)} does not exist for this login (is \`peers.${this.peer}.remote_root\` right? it is the landing directory as the login sees it, e.g. /landing)`, {
          peer: this.peer,
          path: tmp,
          cause: err,
        });
      }
      throw await this.classify(s, err, `create ${name}`, tmp, src.size);
    }
  }

  /** The caller's progress callback, made harmless: a throwing callback is logged, never breaks an upload midway. */
  private safeProgress(onProgress: ProgressFn | undefined): ProgressFn {
    return (sent, total) => {
      try {
        onProgress?.(sent, total);
      } catch (err) {
        this.opts.logger.warn({ peer: this.peer, err }, 'progress callback threw');
      }
    };
  }

  /** Compare the last bytes of the remote prefix `[0, size)` with the local file. */
  private async tailMatches(s: SftpSession, handle: Buffer, src: LocalSource, size: number, tmp: string): Promise<boolean> {
    return this.rangeMatches(s, handle, src, Math.max(0, size - RESUME_CHECK_BYTES), size, tmp);
  }

  /** Compare bytes `[start, end)` of the remote file with the local file. */
  private async rangeMatches(s: SftpSession, handle: Buffer, src: LocalSource, start: number, end: number, path: string): Promise<boolean> {
    const len = end - start;
    if (len <= 0) return true;
    const remote = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = await s.call<number>('read back', path, (cb) => s.sftp.read(handle, remote, got, len - got, start + got, cb));
      if (!n) return false;
      got += n;
    }
    const local = Buffer.alloc(len);
    await readExactly(src, local, start, this.peer);
    return local.equals(remote);
  }

  /**
   * Write `[offset, size)` of the local file with up to `windowBytes / chunk` requests in flight. A watchdog (not a
   * per-request timer, which a slow but healthy link would trip) drops the connection when no write has been
   * acknowledged for `opTimeoutMs`.
   */
  private async writeRange(s: SftpSession, handle: Buffer, src: LocalSource, offset: number, tmp: string, onProgress: ProgressFn): Promise<void> {
    const chunk = Math.max(1, Math.min(this.opts.chunkBytes, s.maxWriteLength));
    const maxInFlight = Math.max(1, Math.floor(this.opts.windowBytes / chunk));
    const readBytes = Math.max(chunk, Math.floor(Math.min(READ_BYTES, this.opts.windowBytes) / chunk) * chunk);
    const inFlight = new Set<Promise<void>>();
    let acked = offset;
    let failure: unknown;
    let lastAck = performance.now(); // a timeout: monotonic, a clock jump must not fire it
    const watchdog = setInterval(
      () => {
        if (inFlight.size > 0 && performance.now() - lastAck > this.opts.opTimeoutMs) {
          s.destroy(new FerryError('ETRANSPORT', `peer ${this.peer}: upload of ${tmp} made no progress for ${this.opts.opTimeoutMs} ms; closing the connection`, { peer: this.peer, path: tmp }));
        }
      },
      Math.max(50, Math.min(1000, this.opts.opTimeoutMs / 4)),
    );
    try {
      let pos = offset;
      while (pos < src.size && failure === undefined) {
        const want = Math.min(readBytes, src.size - pos);
        const buf = Buffer.allocUnsafe(want);
        await readExactly(src, buf, pos, this.peer);
        for (let off = 0; off < want && failure === undefined; off += chunk) {
          while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
          if (failure !== undefined) break;
          const len = Math.min(chunk, want - off);
          const at = pos + off;
          if (inFlight.size === 0) lastAck = performance.now();
          const p: Promise<void> = s
            .call<number>('write the upload', tmp, (cb) => s.sftp.write(handle, buf, off, len, at, cb), 0)
            .then(
              () => {
                acked += len;
                lastAck = performance.now();
                this.counters.bytesSent += len;
                onProgress(acked, src.size);
              },
              (err: unknown) => {
                failure ??= err;
              },
            )
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        pos += want;
      }
      await Promise.all(inFlight);
    } finally {
      clearInterval(watchdog);
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * Name the failure: a dropped session stays ETRANSPORT; an SFTP generic failure while the landing filesystem has
   * less free space than still needed becomes EREMOTE_FULL (OpenSSH reports ENOSPC/EDQUOT only as "Failure").
   */
  private async classify(s: SftpSession, err: unknown, action: string, path: string, bytesNeeded: number): Promise<FerryError> {
    if (err instanceof FerryError) return err;
    if (s.open && sftpStatus(err) === SFTP_STATUS.FAILURE) {
      const free = await this.freeBytes(s);
      const inodesFree = await this.freeInodes(s);
      if ((free !== undefined && free < Math.max(bytesNeeded, 64 * KiB)) || inodesFree === 0) {
        return remoteError(err, { peer: this.peer, action, path, code: 'EREMOTE_FULL' });
      }
    }
    return remoteError(err, { peer: this.peer, action, path });
  }

  private async statvfs(s: SftpSession): Promise<{ f_frsize: number; f_bavail: number; f_favail: number } | undefined> {
    if (s.extensions['statvfs@openssh.com'] === undefined) return undefined;
    const dir = this.landing;
    try {
      const v = await s.call<Record<string, number | bigint>>('statvfs landing', dir, (cb) => s.sftp.ext_openssh_statvfs(dir, cb), Math.min(this.opts.opTimeoutMs, 5000));
      return { f_frsize: Number(v.f_frsize), f_bavail: Number(v.f_bavail), f_favail: Number(v.f_favail) };
    } catch {
      return undefined;
    }
  }

  private async freeBytes(s: SftpSession): Promise<number | undefined> {
    const v = await this.statvfs(s);
    return v === undefined ? undefined : v.f_frsize * v.f_bavail;
  }

  private async freeInodes(s: SftpSession): Promise<number | undefined> {
    return (await this.statvfs(s))?.f_favail;
  }

  private async statOrUndefined(s: SftpSession, path: string): Promise<Stats | undefined> {
    try {
      return await s.call<Stats>('lstat', path, (cb) => s.sftp.lstat(path, cb));
    } catch (err) {
      if (isNoSuchFile(err)) return undefined;
      throw remoteError(err, { peer: this.peer, action: 'lstat', path });
    }
  }

  /** Remove a name; already gone is fine. */
  private async unlinkQuiet(s: SftpSession, path: string): Promise<void> {
    try {
      await s.call<void>('remove', path, (cb) => s.sftp.unlink(path, cb));
    } catch (err) {
      if (!isNoSuchFile(err)) throw remoteError(err, { peer: this.peer, action: 'remove', path });
    }
  }

  /**
   * fsync the landing directory so the hardlink just made survives a crash of the peer. The directory handle is
   * opened once per session and reused: fsync on any descriptor of a directory flushes that directory's entries.
   */
  private async fsyncLanding(s: SftpSession): Promise<void> {
    const dir = this.landing;
    let h = s.cache.get('landingHandle') as Promise<Buffer> | undefined;
    if (h === undefined) {
      h = s.call<Buffer>('open the landing directory', dir, (cb) => s.sftp.open(dir, 'r', cb));
      s.cache.set('landingHandle', h);
      h.catch(() => s.cache.delete('landingHandle'));
    }
    try {
      const handle = await h;
      await s.call<void>('fsync the landing directory', dir, (cb) => s.sftp.ext_openssh_fsync(handle, cb));
    } catch (err) {
      throw remoteError(err, { peer: this.peer, action: 'fsync the landing directory', path: dir });
    }
  }
}
