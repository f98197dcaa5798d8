// Publishes bundle files into a peer's landing area over SSH/SFTP: windowed upload to tmp/, fsync, hardlink into new/, fsync new/.
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
import type { ProgressFn, PublishResult, Transport } from './transport.js';

/** When a leftover `landing/tmp/<name>` may be continued instead of rewritten from byte 0. */
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
  /** The peer's spool root as seen through the SFTP account (`/` or e.g. `/spool` under a chroot). */
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
   * Start an upload only when the peer keeps enough free space to deliver what its landing area holds, this file
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
  /** True when a file can be created in `landing/tmp` and `landing/new` is a directory. */
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
 * message for partly filled blocks and metadata files (the count is the second field of a bundle name,
 * `<firstSeq>-<count>-…`; 1 when the name says nothing), and a little for journals.
 */
function deliveryRoom(name: string, size: number): number {
  const count = Number(/^\d+-(\d+)-/.exec(name)?.[1] ?? 1);
  return size + count * 8 * KiB + 64 * KiB;
}

/**
 * {@link Transport} over SSH/SFTP (ssh2) to one peer. One SSH connection per transport, opened on first use and
 * reopened on the next call after it drops (the daemon owns backoff). The host key is pinned from known_hosts;
 * the SFTP server must offer fsync, posix-rename and hardlink extensions.
 *
 * Publishing `name`: upload to `<remoteRoot>/landing/tmp/<name>` (mode 0600) with many write requests in flight,
 * `fsync@openssh.com` it, check its size, `hardlink@openssh.com` it to `landing/new/<name>` — which fails if that
 * exists, so a retried publish can never overwrite or duplicate — remove the tmp name, and fsync `landing/new` so
 * the new directory entry survives a crash of the peer. Only then does publish resolve.
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
    this.landing = posix.join(this.opts.remoteRoot, 'landing');
  }

  /** True while an SSH+SFTP session to the peer is up. */
  get connected(): boolean {
    return this.current?.open === true;
  }

  /** A snapshot of the counters. */
  get stats(): SftpTransportStats {
    return { ...this.counters };
  }

  /** See {@link Transport.publish}. Concurrent publishes of different names share the connection; the same name is serialised. */
  async publish(localPath: string, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
    assertBundleName(name, this.peer);
    return this.locks.run(name, () => this.publishOnce(localPath, name, onProgress));
  }

  /** Connect (if needed) and report the host key, extensions and whether the landing area is writable. */
  async probe(): Promise<SftpProbe> {
    const s = await this.session();
    const probeName = posix.join(this.landing, 'tmp', `.ferry-probe-${process.pid}-${Date.now()}`);
    let landingWritable = false;
    try {
      const h = await s.call<Buffer>('probe landing/tmp', probeName, (cb) => s.sftp.open(probeName, 'wx', { mode: 0o600 }, cb));
      await s.call<void>('close probe file', probeName, (cb) => s.sftp.close(h, cb));
      await s.call<void>('remove probe file', probeName, (cb) => s.sftp.unlink(probeName, cb));
      const st = await s.call<Stats>('stat landing/new', this.newDir, (cb) => s.sftp.stat(this.newDir, cb));
      landingWritable = st.isDirectory();
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

  /** Close the connection; pending publishes reject with ETRANSPORT; later publishes too. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.current;
    this.current = undefined;
    const c = this.connecting;
    await Promise.all([s?.end(), c?.then((late) => late.end(), () => undefined)]);
  }

  private get newDir(): string {
    return posix.join(this.landing, 'new');
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

  private async publishOnce(localPath: string, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
    const src = await openLocalSource(localPath, this.peer);
    let s: SftpSession | undefined;
    try {
      s = await this.session();
      const result = await this.upload(s, src, name, onProgress);
      this.lastAttempt.delete(name);
      this.counters.publishes++;
      return result;
    } catch (err) {
      // A dropped or timed-out connection leaves a consistent prefix in tmp/ (sftp-server applies requests in order):
      // worth resuming. Any other failure (size mismatch, remote error) restarts from byte 0 next time.
      if (s !== undefined) this.remember(name, s.open ? 'failed' : 'cut');
      throw err instanceof FerryError ? err : remoteError(err, { peer: this.peer, action: `publish ${name}` });
    } finally {
      this.inFlight.delete(name);
      await src.handle.close();
    }
  }

  private async upload(s: SftpSession, src: LocalSource, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
    const tmp = posix.join(this.landing, 'tmp', name);
    const dst = posix.join(this.newDir, name);
    // One round trip for both questions: published already? a partial upload left over?
    const [dstStat, tmpStat] = await Promise.all([this.statOrUndefined(s, dst), this.statOrUndefined(s, tmp)]);
    if (dstStat !== undefined) {
      if (dstStat.size !== src.size) {
        this.opts.logger.warn({ peer: this.peer, name, remoteSize: dstStat.size, localSize: src.size }, 'landing/new already holds this name with a different size');
      }
      await Promise.all([tmpStat === undefined ? undefined : this.unlinkQuiet(s, tmp), this.fsyncNewDir(s)]);
      this.safeProgress(onProgress)(src.size, src.size);
      return 'already';
    }

    if (this.opts.keepDeliveryRoom) await this.ensureRoom(s, name, src.size, tmpStat?.isFile() ? tmpStat.size : 0);
    const { handle, offset } = await this.openTmp(s, src, name, tmp, tmpStat);
    let closed = false;
    try {
      // Force 0600 even when the tmp file pre-existed with another mode (open's mode only applies on create).
      const chmod = s.call<void>('chmod landing/tmp', tmp, (cb) => s.sftp.fchmod(handle, 0o600, cb));
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
      // fsync before anything can see the file under landing/new: "uploaded" is worth nothing until durable.
      const [, st] = await Promise.all([
        s.call<void>('fsync landing/tmp file', tmp, (cb) => s.sftp.ext_openssh_fsync(handle, cb)),
        s.call<Stats>('fstat landing/tmp file', tmp, (cb) => s.sftp.fstat(handle, cb)),
      ]);
      closed = true;
      await s.call<void>('close landing/tmp file', tmp, (cb) => s.sftp.close(handle, cb));
      if (st.size !== src.size) {
        throw new FerryError('ETRANSPORT', `peer ${this.peer}: ${tmp} holds ${st.size} bytes after upload, expected ${src.size}; will upload again from the start`, {
          peer: this.peer,
          path: tmp,
        });
      }
    } catch (err) {
      if (!closed && s.open) await s.call<void>('close landing/tmp file', tmp, (cb) => s.sftp.close(handle, cb)).catch(() => undefined);
      const mapped = await this.classify(s, err, `upload ${name}`, tmp, src.size);
      // Give the space our partial file holds back to the peer: it needs it to drain its landing area.
      if (mapped.code === 'EREMOTE_FULL' && s.open) await this.unlinkQuiet(s, tmp).catch(() => undefined);
      throw mapped;
    }

    crashPoint('ship.after-upload');
    // Publish without overwriting: hardlink fails when landing/new/<name> exists (an earlier attempt got there).
    try {
      await s.call<void>('hardlink into landing/new', dst, (cb) => s.sftp.ext_openssh_hardlink(tmp, dst, cb));
    } catch (err) {
      if (!s.open) throw err;
      const exists = await this.statOrUndefined(s, dst);
      if (exists === undefined) throw await this.classify(s, err, `publish ${name} into landing/new`, dst, 0);
      await Promise.all([this.unlinkQuiet(s, tmp), this.fsyncNewDir(s)]);
      return 'already';
    }
    // Both requests go out together; the directory fsync is what makes the publish durable.
    await Promise.all([this.unlinkQuiet(s, tmp), this.fsyncNewDir(s)]);
    const room = s.cache.get('landingRoom');
    if (typeof room === 'number') s.cache.set('landingRoom', Math.max(room, deliveryRoom(name, src.size)));
    return 'published';
  }

  /**
   * Refuse (EREMOTE_FULL, retried with backoff) to start an upload that would leave the peer unable to drain its
   * landing area. The peer delivers a bundle by writing its messages into the inbox while the bundle still sits in
   * landing/new, so it needs free space as large as the bundle (plus a block or two per message); a sender that fills
   * the peer's disk with bundles (uploads grab whatever a consumer frees) wedges it for good: nothing can be
   * delivered, so nothing is consumed. So upload only when, after this bundle lands, the free space (minus what this
   * transport's other uploads still have to write) still lets the peer deliver the largest bundle waiting in
   * landing/new, this one and the other uploads included. `partial` is what a leftover tmp file of this name already
   * holds (resumed or removed, never extra). Skipped when the server has no statvfs extension. landing/new is listed
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
          `peer ${this.peer}: the remote disk or quota is too full to take ${name} (${size} bytes; ${free} bytes free) and still deliver what its landing area holds; waiting for it to drain`,
          { peer: this.peer, path: posix.join(this.landing, 'tmp', name) },
        );
      }
    }
    this.inFlight.set(name, { size, sent: partial });
  }

  /** The free space the peer needs to deliver the largest bundle in landing/new (0 when it is empty). */
  private async landingRoom(s: SftpSession): Promise<number> {
    const dir = this.newDir;
    try {
      const list = await s.call<Array<{ filename: string; attrs: Stats }>>('list landing/new', dir, (cb) => s.sftp.readdir(dir, cb));
      return list.reduce((max, e) => Math.max(max, deliveryRoom(e.filename, e.attrs.size ?? 0)), 0);
    } catch (err) {
      throw remoteError(err, { peer: this.peer, action: 'list landing/new', path: dir });
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
        const handle = await s.call<Buffer>('open landing/tmp file', tmp, (cb) => s.sftp.open(tmp, 'r+', cb));
        // sftp-server applies writes in order, so a cut leaves a prefix; still read the tail back and compare, so a
        // peer that crashed (zero-filled or stale tail) or a different file under the same name is never built on.
        if (await this.tailMatches(s, handle, src, tmpStat.size, tmp)) {
          this.counters.resumes++;
          this.opts.logger.info({ peer: this.peer, name, offset: tmpStat.size, size: src.size }, 'resuming upload');
          return { handle, offset: tmpStat.size };
        }
        this.opts.logger.warn({ peer: this.peer, name }, 'partial upload does not match the local file; starting over');
        await s.call<void>('close landing/tmp file', tmp, (cb) => s.sftp.close(handle, cb));
      } catch (err) {
        throw await this.classify(s, err, `resume ${name}`, tmp, 0);
      }
    }
    try {
      // Remove any leftover, then create exclusively: O_EXCL never follows a symlink planted at the tmp name.
      // Both requests go out back to back (sftp-server answers in order), so a leftover costs no extra round trip.
      const [removed, opened] = await Promise.allSettled([
        tmpStat === undefined ? undefined : this.unlinkQuiet(s, tmp),
        s.call<Buffer>('create landing/tmp file', tmp, (cb) => s.sftp.open(tmp, 'wx', { mode: 0o600 }, cb)),
      ]);
      if (removed.status === 'rejected') {
        if (opened.status === 'fulfilled') await s.call<void>('close landing/tmp file', tmp, (cb) => s.sftp.close(opened.value, cb)).catch(() => undefined);
        throw removed.reason;
      }
      if (opened.status === 'rejected') throw opened.reason;
      return { handle: opened.value, offset: 0 };
    } catch (err) {
      if (isNoSuchFile(err)) {
        throw new FerryError('ETRANSPORT', `peer ${this.peer}: ${posix.dirname(tmp)} does not exist (is ferry initialised on the peer, and is remote_root right?)`, {
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
    const len = Math.min(RESUME_CHECK_BYTES, size);
    const start = size - len;
    const remote = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = await s.call<number>('read back landing/tmp file', tmp, (cb) => s.sftp.read(handle, remote, got, len - got, start + got, cb));
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
            .call<number>('write landing/tmp file', tmp, (cb) => s.sftp.write(handle, buf, off, len, at, cb), 0)
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
    const dir = posix.join(this.landing, 'tmp');
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

  /** Remove a tmp name; already gone is fine. */
  private async unlinkQuiet(s: SftpSession, path: string): Promise<void> {
    try {
      await s.call<void>('remove landing/tmp file', path, (cb) => s.sftp.unlink(path, cb));
    } catch (err) {
      if (!isNoSuchFile(err)) throw remoteError(err, { peer: this.peer, action: 'remove', path });
    }
  }

  /**
   * fsync `landing/new` so the hardlink just made survives a crash of the peer. The directory handle is opened once
   * per session and reused: fsync on any descriptor of a directory flushes that directory's entries.
   */
  private async fsyncNewDir(s: SftpSession): Promise<void> {
    const dir = this.newDir;
    let h = s.cache.get('newDirHandle') as Promise<Buffer> | undefined;
    if (h === undefined) {
      h = s.call<Buffer>('open landing/new', dir, (cb) => s.sftp.open(dir, 'r', cb));
      s.cache.set('newDirHandle', h);
      h.catch(() => s.cache.delete('newDirHandle'));
    }
    try {
      const handle = await h;
      await s.call<void>('fsync landing/new', dir, (cb) => s.sftp.ext_openssh_fsync(handle, cb));
    } catch (err) {
      throw remoteError(err, { peer: this.peer, action: 'fsync landing/new', path: dir });
    }
  }
}
