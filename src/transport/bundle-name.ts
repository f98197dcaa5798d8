// The names a transport accepts for landing files: one path component, no dot-files, nothing a shell or SFTP server could misread.
import { FerryError } from '../errors.js';

/** A landing file name: starts with an ASCII letter or digit, then up to 200 of `[A-Za-z0-9._-]`. */
export const BUNDLE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/**
 * Throw unless `name` matches {@link BUNDLE_NAME_RE}. Fatal (`EUSAGE`): a bad name is a caller bug, retrying cannot help.
 * The rule keeps names a single path component (no `/`, no `..`), never a dot-file (the receiver ignores those).
 */
export function assertBundleName(name: string, peer: string): void {
  if (typeof name !== 'string' || !BUNDLE_NAME_RE.test(name)) {
    throw new FerryError('EUSAGE', `expected a landing file name matching ${BUNDLE_NAME_RE.source} for peer ${peer}, got ${JSON.stringify(name)}`, { peer });
  }
}
