// Refused bundles, kept with their reason: copied in from a peer's landing directory, never renamed out of it.
//
// A landing directory is the peer's: nothing is ever renamed or linked between it and the spool's state (a rename
// would follow whatever the peer made of its path, and a link would hand the peer a name for one of our files). So a
// refused bundle is copied — from the descriptor the receiver already holds, at most `maxCopyBytes` of it — into
// state/quarantine/<peer>/, its reason written beside it, and only then is the landing entry removed.
import { closeSync, constants, openSync, readSync, writeSync, fsyncSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { FerryError, errno } from '../errors.js';
import { ensureDir, fsyncDir, listDir, replaceFileDurable, unlinkIfExists } from '../maildir/fsx.js';
import { now } from '../clock.js';

const REASON = '.reason.json';
const COPY_CHUNK = 1024 * 1024;

/** What is written beside a quarantined bundle. */
export interface QuarantineReason {
  code: string;
  reason: string;
  at: number;
  /** The peer whose landing directory it came from. */
  peer: string;
  /** Its name there. */
  landing: string;
  /** The key id its clear prefix names, when readable. */
  keyId?: string;
  /** Bytes of the landing file, and whether the copy holds only the first `maxCopyBytes` of them. */
  size: number;
  truncated: boolean;
}

/** One quarantined bundle on disk. */
export interface QuarantinedBundle {
  path: string;
  reason: QuarantineReason;
}

/** How much quarantine keeps per peer; past either bound the oldest entries of that peer go. */
export interface QuarantineBounds {
  /** Most bytes of one refused bundle copied in (its first bytes: enough to see what it was). Default 1 MiB. */
  maxCopyBytes: number;
  /** Most entries kept per peer. Default 1 000. */
  maxEntries: number;
  /** Most bytes of copies kept per peer. Default 1 GiB. */
  maxBytes: number;
}

export const DEFAULT_QUARANTINE_BOUNDS: Readonly<QuarantineBounds> = Object.freeze({ maxCopyBytes: 2 ** 20, maxEntries: 1_000, maxBytes: 2 ** 30 });

/** A peer's quarantine as this process knows it: entry names oldest first (they start with the time), and their sizes. */
interface Tally {
  names: string[];
  sizes: Map<string, number>;
  bytes: number;
}

/**
 * state/quarantine/: one directory per peer, bounded per peer. What fills it is what a peer's login uploads, and the
 * daemon writes it under its own user, outside the login's quota: without a bound a peer could fill the spool's disk
 * with junk refused one file at a time. Past the bound the peer's oldest entries are removed (and counted, and
 * logged): the evidence kept is the newest, the room it takes is known.
 */
export class Quarantine {
  private readonly bounds: QuarantineBounds;
  private readonly tallies = new Map<string, Tally>();
  constructor(private readonly dir: string, bounds: Partial<QuarantineBounds> = {}) {
    this.bounds = { ...DEFAULT_QUARANTINE_BOUNDS, ...bounds };
  }

  /**
   * Copies `size` bytes (at most `maxCopyBytes`) of the open file `fd` into quarantine/<peer>/ with `err` as its
   * reason. The caller removes the landing entry afterwards, so a crash in between only quarantines it twice. Returns
   * how many of the peer's oldest entries went to keep within the bounds.
   */
  async copyIn(peer: string, landing: string, fd: number, size: number, err: FerryError, keyId?: string): Promise<number> {
    const dir = join(this.dir, peer);
    await ensureDir(dir);
    const t = await this.tally(peer); // before the copy, so the listing does not count it too
    const qname = `${now()}.${landing}`;
    const path = join(dir, qname);
    const copy = Math.min(size, this.bounds.maxCopyBytes, this.bounds.maxBytes);
    try {
      await this.copy(fd, `${path}.tmp`, copy);
      await fsp.rename(`${path}.tmp`, path);
    } catch (err) {
      await unlinkIfExists(`${path}.tmp`).catch(() => undefined); // a full disk must not keep half a copy
      throw err;
    }
    const reason: QuarantineReason = { code: err.code, reason: err.message, at: now(), peer, landing, size, truncated: copy < size, ...(keyId ? { keyId } : {}) };
    await replaceFileDurable(`${path}${REASON}`, JSON.stringify(reason));
    t.names.push(qname);
    t.sizes.set(qname, copy);
    t.bytes += copy;
    return this.prune(peer, t);
  }

  /** The peer's entries, read from disk once per process, kept up to date by copyIn and remove after that. */
  private async tally(peer: string): Promise<Tally> {
    let t = this.tallies.get(peer);
    if (t !== undefined) return t;
    t = { names: [], sizes: new Map(), bytes: 0 };
    const dir = join(this.dir, peer);
    for (const name of (await listDir(dir).catch(() => [] as string[])).sort()) {
      if (!isEntry(name)) continue;
      const size = (await fsp.lstat(join(dir, name)).catch(() => undefined))?.size ?? 0;
      t.names.push(name);
      t.sizes.set(name, size);
      t.bytes += size;
    }
    this.tallies.set(peer, t);
    return t;
  }

  /** Removes the peer's oldest entries while it holds more than the bounds allow (never the one just copied in). */
  private async prune(peer: string, t: Tally): Promise<number> {
    let removed = 0;
    while (t.names.length > 1 && (t.names.length > this.bounds.maxEntries || t.bytes > this.bounds.maxBytes)) {
      const oldest = t.names.shift() as string;
      t.bytes -= t.sizes.get(oldest) ?? 0;
      t.sizes.delete(oldest);
      const path = join(this.dir, peer, oldest);
      await unlinkIfExists(path);
      await unlinkIfExists(`${path}${REASON}`);
      removed += 1;
    }
    if (removed > 0) await fsyncDir(join(this.dir, peer));
    return removed;
  }

  private async copy(fd: number, to: string, copy: number): Promise<void> {
    const out = openSync(to, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(1, copy)));
      let pos = 0;
      while (pos < copy) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, copy - pos), pos);
        if (n === 0) break; // the peer truncated it meanwhile: keep what there was
        let w = 0;
        while (w < n) w += writeSync(out, buf, w, n - w);
        pos += n;
      }
      fsyncSync(out);
    } finally {
      closeSync(out);
    }
  }

  /** Every quarantined bundle with its reason (bundles whose reason file is missing get a placeholder one). */
  async list(): Promise<QuarantinedBundle[]> {
    const out: QuarantinedBundle[] = [];
    for (const peer of await listDir(this.dir)) {
      const dir = join(this.dir, peer);
      let names: string[];
      try {
        names = await listDir(dir);
      } catch (err) {
        if (errno(err) === 'ENOTDIR') continue;
        throw err;
      }
      for (const name of names) {
        if (!isEntry(name)) continue;
        const path = join(dir, name);
        let reason: QuarantineReason;
        try {
          reason = JSON.parse(await fsp.readFile(`${path}${REASON}`, 'utf8')) as QuarantineReason;
        } catch {
          reason = { code: 'EENVELOPE_FORMAT', reason: 'no reason file (a crash between the copy and its reason)', at: 0, peer, landing: name, size: 0, truncated: false };
        }
        out.push({ path, reason });
      }
    }
    return out;
  }

  /** Number of quarantined bundles (not counting reason files): directory listings only, no file is read. */
  async count(): Promise<number> {
    let n = 0;
    for (const peer of await listDir(this.dir)) {
      try {
        for (const name of await listDir(join(this.dir, peer))) if (isEntry(name)) n += 1;
      } catch (err) {
        if (errno(err) !== 'ENOTDIR') throw err;
      }
    }
    return n;
  }

  /** Removes a quarantined bundle and its reason (after it was delivered from its copy). */
  async remove(path: string): Promise<void> {
    await unlinkIfExists(path);
    await unlinkIfExists(`${path}${REASON}`);
    await fsyncDir(join(path, '..'));
    this.tallies.clear(); // the next copy reads the directory again
  }
}

/** Whether a name in a peer's quarantine directory is a copied bundle (not its reason, not a copy in progress). */
function isEntry(name: string): boolean {
  return !(name.endsWith(REASON) || name.endsWith('.tmp') || name.includes(`${REASON}.tmp-`));
}

/** Opens a quarantined copy for reading (it is ours: a plain path under the spool). */
export function openQuarantined(path: string): number {
  return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
}
