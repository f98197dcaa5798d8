// The file one send transaction commits: payloads back to back, then an index, then a footer.
//
// Layout: payload₀ ‖ payload₁ ‖ … ‖ index JSON (UTF-8) ‖ u32 BE index length ‖ "FRYC"
// The index is written last because payload sizes (stdin, streams) are known only once written;
// readers start from the footer. A commit file is written in state/commits/tmp/ and committed by
// one rename into state/commits/new/ — the single step that makes every message of the
// transaction visible to shipping at once (invariant I1).
import { z } from 'zod';
import type { FileHandle } from 'node:fs/promises';
import { FerryError } from '../errors.js';
import { openRegularForRead } from '../maildir/fsx.js';

const FOOTER_MAGIC = Buffer.from('FRYC');
const FOOTER_BYTES = 8;
/** Commit files up to this size are read in one call (payloads kept in memory); larger ones stream. */
export const SMALL_COMMIT_BYTES = 1024 * 1024;
/** Largest index a commit file may carry; bounds what a reader allocates. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;

const queueName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);

const messageSchema = z.strictObject({
  queue: queueName,
  id: z.string().min(1).max(200),
  headers: z.record(z.string(), z.string()),
  size: z.number().int().nonnegative(),
  to: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)).optional(),
});

const indexSchema = z.strictObject({
  v: z.literal(1),
  txid: z.string().min(1).max(200),
  origin: z.string().min(1).max(64),
  committed: z.number().int().nonnegative(),
  messages: z.array(messageSchema),
});

/** One message inside a commit file. */
export interface CommitFileMessage {
  queue: string;
  id: string;
  headers: Record<string, string>;
  size: number;
  /** Destinations chosen at send time (`--to`), overriding the queue's route. */
  to?: string[];
}

/** The index of a commit file. */
export interface CommitIndex {
  v: 1;
  txid: string;
  origin: string;
  /** Commit time, ms since the epoch. */
  committed: number;
  messages: CommitFileMessage[];
}

/** The encoded index and footer to append after the payloads. */
export function encodeIndex(index: CommitIndex): Buffer {
  const json = Buffer.from(JSON.stringify(index), 'utf8');
  const footer = Buffer.alloc(FOOTER_BYTES);
  footer.writeUInt32BE(json.byteLength, 0);
  FOOTER_MAGIC.copy(footer, 4);
  return Buffer.concat([json, footer]);
}

/** A commit file opened for reading: its index and the byte offset of each payload. */
export interface CommitFile {
  path: string;
  index: CommitIndex;
  offsets: number[];
  handle: FileHandle;
  /** The whole file, when it is small enough to have been read in one call ({@link SMALL_COMMIT_BYTES}). */
  data?: Buffer;
}

/** Opens and validates a commit file. The caller closes `handle`. Throws `ESPOOL` on a malformed file. */
export async function openCommitFile(path: string): Promise<CommitFile> {
  const handle = await openRegularForRead(path);
  try {
    const { size } = await handle.stat();
    const bad = (why: string) => new FerryError('ESPOOL', `commit file ${path} is malformed: ${why}`, { path });
    if (size < FOOTER_BYTES) throw bad('shorter than its footer');
    // A small file (the common case: a few messages) costs one read instead of one per payload.
    const data = size <= SMALL_COMMIT_BYTES ? await readExactly(handle, size, bad) : undefined;
    const footer = data ? data.subarray(size - FOOTER_BYTES) : Buffer.alloc(FOOTER_BYTES);
    if (!data) await handle.read(footer, 0, FOOTER_BYTES, size - FOOTER_BYTES);
    if (!footer.subarray(4).equals(FOOTER_MAGIC)) throw bad('bad footer magic');
    const len = footer.readUInt32BE(0);
    if (len > MAX_INDEX_BYTES || len > size - FOOTER_BYTES) throw bad('index length out of range');
    const json = data ? data.subarray(size - FOOTER_BYTES - len, size - FOOTER_BYTES) : Buffer.alloc(len);
    if (!data) await handle.read(json, 0, len, size - FOOTER_BYTES - len);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json.toString('utf8'));
    } catch {
      throw bad('index is not JSON');
    }
    const result = indexSchema.safeParse(parsed);
    if (!result.success) throw bad(`index does not validate (${result.error.issues[0]?.message ?? 'invalid'})`);
    const index = result.data as CommitIndex;
    const offsets: number[] = [];
    let off = 0;
    for (const m of index.messages) {
      offsets.push(off);
      off += m.size;
    }
    if (off !== size - FOOTER_BYTES - len) throw bad('payload sizes do not add up to the file size');
    return { path, index, offsets, handle, ...(data ? { data } : {}) };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Reads `size` bytes from the start of a file; a file that shrank underneath is malformed. */
async function readExactly(handle: FileHandle, size: number, bad: (why: string) => FerryError): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await handle.read(buf, off, size - off, off);
    if (bytesRead === 0) throw bad('shorter than its size');
    off += bytesRead;
  }
  return buf;
}

/** Reads just the index of a commit file (for status and routing). */
export async function readCommitIndex(path: string): Promise<CommitIndex> {
  const file = await openCommitFile(path);
  await file.handle.close();
  return file.index;
}
