// One bounded pass over a peer's landing directory: the bundles waiting, uploads in progress, and whatever else the peer put there.
//
// Everything in a landing directory is the peer's doing and hostile by default. A pass looks at no more than
// `max` entries (a peer can create millions), keeps the bundle names, sweeps uploads abandoned for longer than
// `partStaleMs`, and removes everything else at once — symlinks (the name, never what it points to), FIFOs,
// devices, sockets, directories (each level pinned in turn), dot-files, files under names no sender uses — so
// nothing a peer leaves there stays forever or is ever read.
import { parseBundleName, PART_SUFFIX, RECEIPT_NAME, type BundleNameParts } from '../envelope/index.js';
import type { PinnedDir } from './pinned-dir.js';
import { now } from '../clock.js';

/** A bundle (or gap record) name found in a landing directory. */
export interface Candidate {
  name: string;
  parts: BundleNameParts;
}

/** What one pass found. */
export interface ScanResult {
  candidates: Candidate[];
  /** Uploads in progress (`<name>.part`). */
  uploading: number;
  /** Abandoned uploads removed. */
  staleRemoved: number;
  /** Entries removed that no ferry sender makes (links, FIFOs, directories, junk names, oversized files). */
  junkRemoved: number;
  /** Kinds of junk removed, for the log. */
  junkKinds: string[];
  /** Bundle names whose upload grew past the limit and was cut (the sender is told: a refusal for good). */
  oversized: Array<{ name: string; size: number }>;
  /** Entries seen (at most `max`). */
  seen: number;
}

/** How a pass treats what it finds. */
export interface ScanOptions {
  /** Most entries looked at. */
  max: number;
  /** An upload untouched for this long is abandoned, ms. */
  partStaleMs: number;
  /** Any file larger than this is cut to nothing and removed (an endless upload must not fill the disk). */
  maxFileBytes: number;
}

/** Our own temp files in a landing directory (a receipt being replaced): removed once older than this, ms. */
const OWN_TEMP_STALE_MS = 60_000;

/** Scans `dir` once. */
export function scanLanding(dir: PinnedDir, opts: ScanOptions): ScanResult {
  const r: ScanResult = { candidates: [], uploading: 0, staleRemoved: 0, junkRemoved: 0, junkKinds: [], oversized: [], seen: 0 };
  const t = now();
  r.seen = dir.each(opts.max, (name) => {
    if (name === RECEIPT_NAME) return;
    const parts = parseBundleName(name);
    const st = dir.lstat(name);
    if (st === undefined) return;
    if (parts !== undefined && st.isFile()) {
      r.candidates.push({ name, parts });
      return;
    }
    // Larger than any bundle this host reads, and not a published bundle (those are refused with a receipt entry):
    // cut it to nothing first (unlinking alone leaves the blocks to a writer that keeps it open), then remove it.
    if (st.isFile() && st.size > opts.maxFileBytes) {
      dir.truncate(name);
      if (dir.unlink(name)) {
        r.junkRemoved += 1;
        if (!r.junkKinds.includes('oversized')) r.junkKinds.push('oversized');
        const base = name.endsWith(PART_SUFFIX) ? name.slice(0, -PART_SUFFIX.length) : undefined;
        if (base !== undefined && parseBundleName(base) !== undefined) r.oversized.push({ name: base, size: st.size });
      }
      return;
    }
    if (name.endsWith(PART_SUFFIX) && parseBundleName(name.slice(0, -PART_SUFFIX.length)) !== undefined && st.isFile()) {
      r.uploading += 1;
      if (t - st.mtimeMs > opts.partStaleMs && dir.unlink(name)) r.staleRemoved += 1;
      return;
    }
    if (name.startsWith('.ferry-') && name.endsWith('.tmp') && st.isFile()) {
      if (t - st.mtimeMs > OWN_TEMP_STALE_MS) dir.unlink(name);
      return;
    }
    const kind = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isFile() ? 'file' : 'device';
    const removed = st.isDirectory() ? dir.removeTree(name) : dir.unlink(name);
    if (removed) {
      r.junkRemoved += 1;
      if (!r.junkKinds.includes(kind)) r.junkKinds.push(kind);
    }
  });
  return r;
}
