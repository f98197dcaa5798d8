// One SSH connection with one SFTP channel to a peer: pinned host key, required extensions, every call timed and failed on drop.
import { stat as fsStat, readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { Client as SshClient, ConnectConfig, SFTPWrapper } from 'ssh2';
import { errno, FerryError } from '../errors.js';
import {
  checkHostKey,
  fingerprintSha256,
  hostKeyAlgorithms,
  keyTypeOf,
  parseKnownHosts,
  pinnedKeys,
  readKnownHosts,
  type HostKeyVerdict,
  type KnownHosts,
  type PinnedKeys,
} from './known-hosts.js';
import type { TransportLogger } from './logger.js';
import { remoteError } from './remote-errors.js';

const { Client } = ssh2;

/** The error ssh2 gives every outstanding SFTP request when the channel ends under it. */
const NO_RESPONSE = 'No response from server';

/**
 * SFTP extensions ferry cannot work without: `fsync@openssh.com` (durability of uploads and of the landing
 * directory), `hardlink@openssh.com` (publish without overwriting), `posix-rename@openssh.com` (atomic replace,
 * used by the receiving side's tools and a marker of a modern OpenSSH sftp-server).
 */
export const REQUIRED_SFTP_EXTENSIONS = ['fsync@openssh.com', 'posix-rename@openssh.com', 'hardlink@openssh.com'] as const;

/** Everything needed to open a session. All fields resolved (defaults applied by the transport). */
export interface SessionConfig {
  peer: string;
  host: string;
  port: number;
  username: string;
  identity: string;
  knownHosts: string;
  connectTimeoutMs: number;
  opTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  logger: TransportLogger;
}

/** Callback shape of ssh2 SFTP methods. */
export type SftpCallback<T> = (err: Error | null | undefined, value?: T) => void;

/** An open SSH+SFTP session. Once closed (drop, timeout, close()) every pending and later call rejects with ETRANSPORT. */
export class SftpSession {
  private readonly pending = new Set<(err: FerryError) => void>();
  private closedBy: FerryError | undefined;
  /** Per-session cache slots for the transport (e.g. an open handle on `landing/new`). */
  readonly cache = new Map<string, unknown>();
  private readonly socketClosed: Promise<void>;

  constructor(
    readonly peer: string,
    private readonly client: SshClient,
    /** The SFTP channel; call it through {@link SftpSession.call} so calls are timed and fail on drop. */
    readonly sftp: SFTPWrapper,
    /** SHA256 fingerprint of the verified host key. */
    readonly fingerprint: string,
    /** Type of the verified host key, e.g. `ssh-ed25519`. */
    readonly hostKeyType: string,
    /** Extensions the SFTP server announced (name → version string). */
    readonly extensions: Readonly<Record<string, string>>,
    private readonly opTimeoutMs: number,
    private readonly logger: TransportLogger,
  ) {
    this.socketClosed = new Promise((resolve) => client.once('close', () => resolve()));
    const lost = (why: string) => () => this.fail(new FerryError('ETRANSPORT', `peer ${peer}: SSH connection lost (${why})`, { peer }));
    client.on('close', lost('connection closed'));
    client.on('end', lost('connection ended'));
    client.on('error', (err: Error) => this.fail(remoteError(err, { peer, action: 'SSH connection' })));
    sftp.on('close', lost('SFTP channel closed'));
    sftp.on('error', (err: Error) => this.fail(remoteError(err, { peer, action: 'SFTP channel' })));
  }

  /** True until the session dropped or was closed. */
  get open(): boolean {
    return this.closedBy === undefined;
  }

  /** The largest data length one SFTP write request carries (ssh2 splits longer writes into sequential requests). */
  get maxWriteLength(): number {
    // ssh2 keeps the server's limits@openssh.com answer in a private field; fall back to 32 KiB (RFC minimum-ish).
    const v = (this.sftp as unknown as { _maxWriteLen?: unknown })._maxWriteLen;
    return typeof v === 'number' && v > 0 ? v : 32 * 1024;
  }

  /**
   * Issue one SFTP request. `start` receives the callback to hand to ssh2. Rejects with ETRANSPORT when the session
   * is or becomes closed, or when no answer arrives within `timeoutMs` (0 = no timer; the caller supervises) — a
   * timeout closes the whole session, since its state is unknown. ssh2 `ext_*` methods throw synchronously when the
   * server lacks the extension: that rejects too.
   */
  call<T>(action: string, path: string | undefined, start: (cb: SftpCallback<T>) => void, timeoutMs = this.opTimeoutMs): Promise<T> {
    if (this.closedBy !== undefined) return Promise.reject(this.closedBy);
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const abort = (err: FerryError) => {
        if (timer !== undefined) clearTimeout(timer);
        this.pending.delete(abort);
        reject(err);
      };
      this.pending.add(abort);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const err = new FerryError('ETRANSPORT', `peer ${this.peer}: ${action} got no answer within ${timeoutMs} ms; closing the connection`, {
            peer: this.peer,
            ...(path === undefined ? {} : { path }),
          });
          abort(err);
          this.destroy(err);
        }, timeoutMs);
      }
      const cb: SftpCallback<T> = (err, value) => {
        if (!this.pending.has(abort)) return; // already failed by a drop or a timeout
        if (timer !== undefined) clearTimeout(timer);
        this.pending.delete(abort);
        if (err && err.message === NO_RESPONSE) {
          // ssh2 fails outstanding requests this way when the channel hits EOF, possibly before the close events
          // reach us: the session is gone, mark it now so the caller sees a cut (and resumes next time).
          const lost = new FerryError('ETRANSPORT', `peer ${this.peer}: SSH connection lost during ${action}`, {
            peer: this.peer,
            ...(path === undefined ? {} : { path }),
            cause: err,
          });
          this.fail(lost);
          reject(lost);
        } else if (err) reject(err);
        else resolve(value as T);
      };
      try {
        start(cb);
      } catch (err) {
        if (timer !== undefined) clearTimeout(timer);
        this.pending.delete(abort);
        reject(remoteError(err, { peer: this.peer, action, ...(path === undefined ? {} : { path }) }));
      }
    });
  }

  /** Close the session now (no goodbye): pending calls reject with `reason`. Idempotent. */
  destroy(reason?: FerryError): void {
    this.fail(reason ?? new FerryError('ETRANSPORT', `peer ${this.peer}: connection closed`, { peer: this.peer }));
    this.client.destroy();
  }

  /** Close politely (SSH disconnect), rejecting pending calls; resolves once the socket closed (at most ~2 s). Idempotent. */
  async end(): Promise<void> {
    this.fail(new FerryError('ETRANSPORT', `peer ${this.peer}: connection closed`, { peer: this.peer }));
    this.client.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.socketClosed,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.client.destroy();
          resolve();
        }, 2000);
      }),
    ]);
    clearTimeout(timer);
  }

  private fail(reason: FerryError): void {
    if (this.closedBy !== undefined) return;
    this.closedBy = reason;
    this.logger.debug({ peer: this.peer, reason: reason.message }, 'sftp session closed');
    const aborts = [...this.pending];
    this.pending.clear();
    for (const abort of aborts) abort(reason);
    // Make sure the socket goes too (an SFTP-level failure leaves SSH up otherwise).
    this.client.end();
  }
}

/** Read the SSH identity, refusing a private key readable by group or others, like ssh does. */
async function readIdentity(file: string, peer: string): Promise<Buffer> {
  try {
    const st = await fsStat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new FerryError('EKEYPERM', `SSH identity ${file} for peer ${peer} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`, {
        path: file,
        peer,
      });
    }
    return await readFile(file);
  } catch (err) {
    if (err instanceof FerryError) throw err;
    throw new FerryError('ECONFIG', `cannot read SSH identity ${file} for peer ${peer}: ${(err as Error).message}`, { path: file, peer, cause: err });
  }
}

/** Read known_hosts; a missing file pins nothing (every host is then unknown and refused with its fingerprint). */
async function loadKnownHosts(file: string, peer: string): Promise<KnownHosts> {
  try {
    return await readKnownHosts(file);
  } catch (err) {
    if (errno(err) === 'ENOENT') return parseKnownHosts('');
    throw new FerryError('ECONFIG', `cannot read known_hosts ${file} for peer ${peer}: ${(err as Error).message}`, { path: file, peer, cause: err });
  }
}

function hostKeyError(cfg: SessionConfig, verdict: HostKeyVerdict, presented: Buffer, pins: PinnedKeys): FerryError {
  const where = `${cfg.host}:${cfg.port}`;
  const fp = fingerprintSha256(presented);
  const type = keyTypeOf(presented) ?? 'unknown type';
  if (verdict === 'unknown') {
    return new FerryError(
      'EHOSTKEY_UNKNOWN',
      `peer ${cfg.peer} (${where}) presented host key ${fp} (${type}), which is not pinned in ${cfg.knownHosts}; verify it out of band and add it`,
      { peer: cfg.peer, path: cfg.knownHosts },
    );
  }
  if (verdict === 'revoked') {
    return new FerryError('EHOSTKEY', `peer ${cfg.peer} (${where}) presented host key ${fp} (${type}), which is @revoked in ${cfg.knownHosts}`, {
      peer: cfg.peer,
      path: cfg.knownHosts,
    });
  }
  const pinned = pins.keys.map((e) => `${fingerprintSha256(e.key)} at line ${e.line}`).join(', ');
  return new FerryError(
    'EHOSTKEY',
    `peer ${cfg.peer} (${where}) presented host key ${fp} (${type}), which does not match the key pinned in ${cfg.knownHosts} (${pinned}): possible man-in-the-middle, or the host was reinstalled`,
    { peer: cfg.peer, path: cfg.knownHosts },
  );
}

/**
 * Connect, verify the host key against known_hosts, authenticate with the identity, open the SFTP channel and
 * check the required extensions. Rejects with EHOSTKEY_UNKNOWN / EHOSTKEY / ETRANSPORT_AUTH / ESFTP_EXTENSION /
 * ETRANSPORT; never leaves a connection behind on failure.
 */
export async function openSession(cfg: SessionConfig): Promise<SftpSession> {
  const [privateKey, known] = await Promise.all([readIdentity(cfg.identity, cfg.peer), loadKnownHosts(cfg.knownHosts, cfg.peer)]);
  const pins = pinnedKeys(known, cfg.host, cfg.port);
  for (const p of known.problems) cfg.logger.warn({ peer: cfg.peer, path: cfg.knownHosts, line: p.line }, `known_hosts line skipped: ${p.reason}`);
  // Offer only the pinned key types, so a server holding several host keys presents the one we pinned.
  const pinnedTypes = [...new Set(pins.keys.map((e) => e.keyType))];
  const serverHostKey = pins.keys.length > 0 ? hostKeyAlgorithms(pinnedTypes) : undefined;
  if (serverHostKey !== undefined && serverHostKey.length === 0) {
    throw new FerryError(
      'EHOSTKEY',
      `peer ${cfg.peer}: the host key types pinned for it in ${cfg.knownHosts} (${pinnedTypes.join(', ')}) cannot be verified by ferry; pin an ed25519, ecdsa or rsa host key`,
      { peer: cfg.peer, path: cfg.knownHosts },
    );
  }

  const client = new Client();
  let presented: Buffer | undefined;
  let verdict: HostKeyVerdict | undefined;

  return new Promise<SftpSession>((resolve, reject) => {
    let settled = false;
    const guard = setTimeout(
      () => fail(new FerryError('ETRANSPORT', `peer ${cfg.peer}: no SFTP session with ${cfg.host}:${cfg.port} within ${cfg.connectTimeoutMs} ms`, { peer: cfg.peer })),
      cfg.connectTimeoutMs + cfg.opTimeoutMs,
    );
    const fail = (err: FerryError) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      client.destroy();
      reject(err);
    };
    const mapConnectError = (err: Error & { level?: string }): FerryError => {
      if (presented !== undefined && verdict !== undefined && verdict !== 'match') return hostKeyError(cfg, verdict, presented, pins);
      if (/no matching host key/i.test(err.message)) {
        return new FerryError(
          'EHOSTKEY',
          `peer ${cfg.peer} (${cfg.host}:${cfg.port}) offers none of the host key types pinned in ${cfg.knownHosts} (${serverHostKey?.join(', ') ?? 'none'})`,
          { peer: cfg.peer, path: cfg.knownHosts, cause: err },
        );
      }
      if (err.level === 'client-authentication') {
        return new FerryError(
          'ETRANSPORT_AUTH',
          `peer ${cfg.peer}: ${cfg.username}@${cfg.host}:${cfg.port} did not accept the SSH identity ${cfg.identity}`,
          { peer: cfg.peer, path: cfg.identity, cause: err },
        );
      }
      return new FerryError('ETRANSPORT', `peer ${cfg.peer}: cannot connect to ${cfg.host}:${cfg.port}: ${err.message}`, { peer: cfg.peer, cause: err });
    };
    client.on('error', (err: Error) => fail(mapConnectError(err)));
    client.on('close', () => fail(mapConnectError(new Error('connection closed during setup'))));
    client.once('ready', () => {
      // Without TCP_NODELAY, small SFTP requests wait on Nagle + delayed ACK: loopback uploads drop to 1–2 MB/s.
      client.setNoDelay(true);
      client.sftp((err, sftp) => {
        if (settled) return;
        if (err) return fail(remoteError(err, { peer: cfg.peer, action: 'start the SFTP subsystem' }));
        // ssh2 keeps the server's VERSION extensions in a private field; it is the only way to probe without side effects.
        const extensions = { ...((sftp as unknown as { _extensions?: Record<string, string> })._extensions ?? {}) };
        const missing = REQUIRED_SFTP_EXTENSIONS.filter((e) => extensions[e] !== '1');
        if (missing.length > 0) {
          return fail(
            new FerryError(
              'ESFTP_EXTENSION',
              `peer ${cfg.peer}: the SFTP server lacks ${missing.join(', ')}; ferry needs ${REQUIRED_SFTP_EXTENSIONS.join(', ')} (OpenSSH sftp-server has them)`,
              { peer: cfg.peer },
            ),
          );
        }
        settled = true;
        clearTimeout(guard);
        client.removeAllListeners('error');
        client.removeAllListeners('close');
        const key = presented ?? Buffer.alloc(0);
        resolve(new SftpSession(cfg.peer, client, sftp, fingerprintSha256(key), keyTypeOf(key) ?? 'unknown', extensions, cfg.opTimeoutMs, cfg.logger));
      });
    });

    const config: ConnectConfig = {
      host: cfg.host,
      port: cfg.port,
      username: cfg.username,
      privateKey,
      readyTimeout: cfg.connectTimeoutMs,
      keepaliveInterval: cfg.keepaliveIntervalMs,
      keepaliveCountMax: cfg.keepaliveCountMax,
      // Pinning: the raw key must equal a known_hosts entry for [host]:port byte for byte. Never accept blindly.
      hostVerifier: (key: Buffer): boolean => {
        presented = Buffer.from(key);
        verdict = checkHostKey(pins, presented);
        return verdict === 'match';
      },
      ...(serverHostKey === undefined ? {} : { algorithms: { serverHostKey: serverHostKey as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } }),
    };
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 throws synchronously on an unparsable private key (or an encrypted one without a passphrase).
      fail(
        new FerryError('EKEYFORMAT', `cannot use SSH identity ${cfg.identity} for peer ${cfg.peer}: ${(err as Error).message}`, {
          peer: cfg.peer,
          path: cfg.identity,
          cause: err,
        }),
      );
    }
  });
}
