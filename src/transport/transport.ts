// The interface every way of reaching a peer's landing directory implements (SFTP for real, the local fs for this host and fast tests).

/** Progress of one upload, reported as bytes go out. */
export type ProgressFn = (sentBytes: number, totalBytes: number) => void;

/** Outcome of {@link Transport.publish}. */
export type PublishResult =
  /** `<name>` now exists in the landing directory, durably. */
  | 'published'
  /** `<name>` already held these bytes: an earlier attempt published it. */
  | 'already'
  /** `<name>` held other bytes (left by an earlier version of ourselves, or planted through our own login): they were removed and ours published. */
  | 'replaced';

/** One entry of the landing directory. */
export interface LandingEntry {
  name: string;
  size: number;
}

/**
 * Moves sealed bundle files into the landing directory a peer gave this host, and reads that peer's receipt.
 *
 * The landing directory is `remote_root` as the login sees it (e.g. `/landing` under the chroot): it holds
 * `<name>.part` while a bundle uploads, `<name>` once published, and the peer's sealed receipt. A transport never
 * sees plaintext: it copies bytes that are already sealed. "Published" means nothing yet for delivery: only the
 * receipt proves the peer has the messages.
 */
export interface Transport {
  /** The peer this transport reaches. */
  readonly peer: string;
  /**
   * Uploads `localPath` as `<name>.part` and makes it durable (fsync); resumes a partial upload left by a cut
   * connection when it safely can. Rejects with a FerryError (`ETRANSPORT`, `EREMOTE_FULL`, `EHOSTKEY`…).
   */
  upload(localPath: string, name: string, onProgress?: ProgressFn): Promise<void>;
  /**
   * Publishes the uploaded `<name>.part` as `<name>` without overwriting anything the peer may be reading, and makes
   * that directory entry durable. When `<name>` exists, its bytes are compared with `localPath`'s.
   */
  publish(localPath: string, name: string): Promise<PublishResult>;
  /** Every entry of the landing directory (bundles and uploads in progress). */
  list(): Promise<LandingEntry[]>;
  /** The peer's receipt file, or undefined when it has written none yet. At most `maxBytes` are read. */
  readReceipt(maxBytes: number): Promise<Uint8Array | undefined>;
  /** Removes a file of ours from the landing directory; one that is gone already is fine. */
  remove(name: string): Promise<void>;
  /** Optional: open the connection now, ahead of the first upload. Never rejects. */
  warm?(): Promise<void>;
  /** Close connections; pending calls reject. Idempotent. */
  close(): Promise<void>;
}
