// Turn ssh2/SFTP failures into FerryErrors naming the peer: recoverable ETRANSPORT unless the cause is known.
import { FerryError, type FerryErrorCode, messageOf } from '../errors.js';

/** SFTP status codes (draft-ietf-secsh-filexfer) that ferry tells apart. */
export const SFTP_STATUS = {
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
  /** SFTP v5+; some non-OpenSSH servers send it even over v3. */
  NO_SPACE_ON_FILESYSTEM: 14,
  QUOTA_EXCEEDED: 15,
} as const;

/** The numeric SFTP status carried by an ssh2 SFTP error, if any. */
export function sftpStatus(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

/** True for "no such file" from the server. */
export function isNoSuchFile(err: unknown): boolean {
  return sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE;
}

/**
 * True when the server said, in a way we can read, that the disk or a quota is full. OpenSSH's sftp-server maps
 * ENOSPC/EDQUOT to the generic code 4 "Failure", so for OpenSSH this is only decidable with statvfs
 * (see the SFTP transport); other servers send code 14/15 or an strerror text.
 */
export function looksLikeRemoteFull(err: unknown): boolean {
  const status = sftpStatus(err);
  if (status === SFTP_STATUS.NO_SPACE_ON_FILESYSTEM || status === SFTP_STATUS.QUOTA_EXCEEDED) return true;
  const message = messageOf(err);
  return /no space|quota|disk full|ENOSPC|EDQUOT|file too large/i.test(message);
}

/** Context for {@link remoteError}. */
export interface RemoteErrorContext {
  peer: string;
  /** What ferry was doing, e.g. `open landing/tmp/b1`. */
  action: string;
  /** Remote path concerned. */
  path?: string;
  /** Force a code (e.g. EREMOTE_FULL after a statvfs check). */
  code?: FerryErrorCode;
}

/** Wrap an ssh2/SFTP error as a FerryError (ETRANSPORT unless told or evident otherwise). Passes FerryErrors through. */
export function remoteError(err: unknown, ctx: RemoteErrorContext): FerryError {
  if (err instanceof FerryError) return err;
  const code: FerryErrorCode = ctx.code ?? (looksLikeRemoteFull(err) ? 'EREMOTE_FULL' : 'ETRANSPORT');
  const detail = messageOf(err);
  const status = sftpStatus(err);
  const statusText = status === undefined ? '' : ` (SFTP status ${status})`;
  const what = code === 'EREMOTE_FULL' ? 'the remote disk or quota is full' : `${detail}${statusText}`;
  return new FerryError(code, `peer ${ctx.peer}: ${ctx.action} failed: ${what}`, {
    peer: ctx.peer,
    ...(ctx.path === undefined ? {} : { path: ctx.path }),
    cause: err,
  });
}
