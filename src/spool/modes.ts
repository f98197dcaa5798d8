// Which permission bits each spool directory may carry beyond 0700, and which are too loose.
//
// Everything is private to the spool's owner (0700), with one exception so that legacy scripts
// running as another user can drop files: the root and drop/ may grant their group search
// access (0710), and drop/<queue>/ may grant its group rwx and setgid (2770), so a script user
// in the daemon's group can write there and the daemon can still read and move what it wrote.
import type { SpoolLayout } from './layout.js';

/** Group search on the way to drop/<queue>/ (0710), setgid tolerated. */
export const PASSAGE_BITS = 0o2010;
/** Group read/write/search on drop/<queue>/ and setgid, so drops belong to the daemon's group (2770). */
export const DROP_QUEUE_BITS = 0o2070;

/** Bits beyond 0700 that `dir` (one of the layout's fixed directories) may keep. */
export function allowedBits(layout: SpoolLayout, dir: string): number {
  return dir === layout.root || dir === layout.drop ? PASSAGE_BITS : 0;
}

/** The group/other bits of `mode` that `allowed` does not cover (0 when the mode is fine). */
export function looseBits(mode: number, allowed: number): number {
  return mode & 0o077 & ~allowed;
}

/** `0710`-style text of a mode's permission bits (setgid included). */
export function modeText(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}
