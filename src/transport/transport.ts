// The interface every way of reaching a peer's landing area implements (SFTP for real, local fs for tests and self-routes).

/** Progress of one upload, reported as bytes go out. */
export type ProgressFn = (sentBytes: number, totalBytes: number) => void;

/** Outcome of {@link Transport.publish}. */
export type PublishResult =
  /** The file is now durable under `landing/new/<name>` on the peer. */
  | 'published'
  /** `landing/new/<name>` already existed: an earlier attempt published it (the receiver still holds it). */
  | 'already';

/**
 * Moves sealed bundle files into a peer's landing area.
 *
 * Remote layout, relative to the peer's spool root (`remote_root`):
 * `landing/tmp/<name>` while uploading, `landing/new/<name>` once published.
 * A transport never sees plaintext: it copies bytes that are already sealed.
 */
export interface Transport {
  /** The peer this transport reaches. */
  readonly peer: string;
  /**
   * Upload `localPath` as `landing/tmp/<name>`, make it durable (fsync), then publish it without
   * overwriting as `landing/new/<name>` and make that directory entry durable too.
   * Resumes a partial upload of the same name left by a cut connection when it safely can.
   * Resolves only once the file is durable on the peer; rejects with a FerryError
   * (`ETRANSPORT`, `EREMOTE_FULL`, `EHOSTKEY`…) otherwise, leaving the local file untouched.
   */
  publish(localPath: string, name: string, onProgress?: ProgressFn): Promise<PublishResult>;
  /**
   * Optional: open the connection now, ahead of the first publish (the daemon calls it at start, so
   * the SSH handshake overlaps with sealing the first bundles). Never rejects; a failure is left
   * for the first publish to report.
   */
  warm?(): Promise<void>;
  /** Close connections; pending publishes reject. Idempotent. */
  close(): Promise<void>;
}
