// Whether a file somewhere holds exactly the bytes of a local one: the check behind "already published" versus a name collision.
import { readExactly, type LocalSource } from './local-source.js';

const CHUNK = 256 * 1024;

/**
 * Compares `size` bytes of `src` with the other file, read through `readAt(buf, position) → bytes read`, chunk by
 * chunk (memory stays at two chunks whatever the size). A short read of the other file is a difference.
 */
export async function sameBytes(src: LocalSource, size: number, readAt: (buf: Buffer, position: number) => Promise<number>, peer: string): Promise<boolean> {
  if (src.size !== size) return false;
  const mine = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, size)));
  const theirs = Buffer.allocUnsafe(mine.length);
  for (let pos = 0; pos < size; pos += mine.length) {
    const n = Math.min(mine.length, size - pos);
    await readExactly(src, mine.subarray(0, n), pos, peer);
    let got = 0;
    while (got < n) {
      const r = await readAt(theirs.subarray(got, n), pos + got);
      if (r === 0) return false;
      got += r;
    }
    if (!mine.subarray(0, n).equals(theirs.subarray(0, n))) return false;
  }
  return true;
}
