// The receiver's delivery journal: the commit point of one delivery round, replayed after a crash, kept afterwards as the id window.
//
// state/receive/journal/<peer>.<landing>.json names the prepared inbox files of one round and the delivered mark
// it reaches. Written (fsync, rename, directory fsync) only once every message is durable in inbox tmp/; replaying
// it renames them into new/ (idempotent: a tmp file that is gone was published) and records the mark. Its schema
// here is the one source of its type.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { errno } from '../errors.js';
import { ensureDir, listDir, replaceFileDurable, unlinkIfExists } from '../maildir/fsx.js';

const itemSchema = z.strictObject({
  queue: z.string(),
  name: z.string().min(1),
  meta: z.strictObject({
    id: z.string(),
    origin: z.string(),
    queue: z.string(),
    headers: z.record(z.string(), z.string()),
    committed: z.number(),
    delivered: z.number(),
    attempts: z.number().int().nonnegative(),
  }),
});

const journalSchema = z.strictObject({
  /** The peer (landing directory) and origin. */
  peer: z.string(),
  /** The landing file's name. */
  landing: z.string(),
  epoch: z.number().int().min(1),
  channel: z.string(),
  /** The bundle starts a newer epoch, closing the current one. */
  newEpoch: z.boolean(),
  /** The delivered mark once this round is applied. */
  hwm: z.number().int().min(0),
  /** Sequences handled this round (delivered, or skipped as resealed duplicates), aligned with `ids`. */
  seqs: z.array(z.number().int()),
  ids: z.array(z.string()),
  /** The messages to publish. */
  items: z.array(itemSchema),
  /** More rounds of the same landing file follow (a full disk: one message a round). */
  partial: z.boolean().optional(),
  /** A gap record: these sequences are skipped, with the sender's reason. */
  gap: z.strictObject({ first: z.number().int(), count: z.number().int(), reason: z.string() }).optional(),
});

/** One delivery round. */
export type Journal = z.infer<typeof journalSchema>;

function dir(receiveDir: string): string {
  return join(receiveDir, 'journal');
}

function fileOf(receiveDir: string, j: Pick<Journal, 'peer' | 'landing'>): string {
  return join(dir(receiveDir), `${j.peer}.${j.landing}.json`);
}

/**
 * Writes the journal durably: the commit point of the round. On failure (a full disk, an I/O error) the journal is
 * removed before the prepared files are thrown away by `discard` — a journal naming tmp files that are gone would
 * replay as "published already", a loss.
 */
export async function writeJournal(receiveDir: string, j: Journal, discard: () => Promise<void>): Promise<void> {
  const path = fileOf(receiveDir, j);
  try {
    await ensureDir(dir(receiveDir));
    await replaceFileDurable(path, JSON.stringify(j));
  } catch (err) {
    try {
      await fsp.unlink(path);
    } catch (unlinkErr) {
      if (errno(unlinkErr) !== 'ENOENT' && errno(unlinkErr) !== 'ENOTDIR') throw err; // cannot tell: keep the tmp files
    }
    await discard();
    throw err;
  }
}

/** The pending journal of (`peer`, `landing`), or undefined. */
export async function readJournal(receiveDir: string, peer: string, landing: string): Promise<Journal | undefined> {
  return readJournalFile(fileOf(receiveDir, { peer, landing }));
}

async function readJournalFile(path: string): Promise<Journal | undefined> {
  try {
    return journalSchema.parse(JSON.parse(await fsp.readFile(path, 'utf8')));
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Every pending journal (after a crash), oldest position first per peer. */
export async function pendingJournals(receiveDir: string): Promise<Journal[]> {
  const out: Journal[] = [];
  for (const name of await listDir(dir(receiveDir))) {
    if (!name.endsWith('.json')) continue;
    const j = await readJournalFile(join(dir(receiveDir), name));
    if (j) out.push(j);
  }
  return out.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : a.epoch - b.epoch || a.hwm - b.hwm));
}

/** The path of a journal (to retain it once applied). */
export function journalFile(receiveDir: string, j: Pick<Journal, 'peer' | 'landing'>): string {
  return fileOf(receiveDir, j);
}

/** The name a finished journal keeps in the id window: sorts by epoch, then position. */
export function retainedName(j: Journal): string {
  const first = j.seqs[0] ?? j.gap?.first ?? j.hwm;
  return `${String(j.epoch).padStart(16, '0')}-${String(first).padStart(12, '0')}-${String(j.hwm).padStart(12, '0')}.json`;
}

/** Removes a journal that turned out not to be needed. */
export async function dropJournal(receiveDir: string, j: Pick<Journal, 'peer' | 'landing'>): Promise<void> {
  await unlinkIfExists(fileOf(receiveDir, j));
}
