// Which inbox tmp/ files the receiver's pending delivery journals still need, so that no sweep removes them.
//
// A journal (state/receive/journal/<landing>.json, written by src/receive/receiver.ts) names the
// prepared messages of one delivery: inbox/<queue>/tmp/<name> and <name>.meta. Replaying it treats
// a missing tmp file as "published already", so a file a journal names must stay until the journal
// is finished, however long the daemon stays down.
import { join } from 'node:path';
import { z } from 'zod';
import { errno } from '../errors.js';
import { listDir, openRegularForRead } from '../maildir/fsx.js';

/** What pending journals need kept in the inbox tmp/ directories. */
export interface JournalTmpNames {
  /** Per inbox queue, the tmp/ file names a pending journal names (each message's payload and its `.meta`). */
  byQueue: Map<string, Set<string>>;
  /**
   * Set when a journal (or the journal directory) could not be read or parsed: which files it needs
   * is unknown, so every inbox tmp/ file must be kept.
   */
  unknown: boolean;
}

/** The directory of the receiver's delivery journals under state/receive/. */
export function journalDir(receiveDir: string): string {
  return join(receiveDir, 'journal');
}

// Only what naming the files takes: a journal the receiver would refuse for another field still protects its files.
const journalItemsSchema = z.object({
  items: z.array(z.object({ queue: z.string(), name: z.string().min(1) })),
});

/**
 * Reads every pending journal (`*.json`, as the receiver does; its `.tmp-…` files never committed)
 * and returns the inbox tmp/ names they need. Never throws: anything unreadable means "unknown".
 * A journal that vanishes while being read was finished, its files published: it needs nothing.
 */
export async function journalTmpNames(receiveDir: string): Promise<JournalTmpNames> {
  const result: JournalTmpNames = { byQueue: new Map(), unknown: false };
  const dir = journalDir(receiveDir);
  let names: string[];
  try {
    names = await listDir(dir);
  } catch {
    result.unknown = true;
    return result;
  }
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    let text: string;
    try {
      // Never through a planted symlink, never blocking on a FIFO: a spool that cannot be opened is worse than a kept file.
      const fh = await openRegularForRead(join(dir, name));
      try {
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (errno(err) === 'ENOENT') continue;
      result.unknown = true;
      continue;
    }
    let parsed: z.infer<typeof journalItemsSchema>;
    try {
      parsed = journalItemsSchema.parse(JSON.parse(text));
    } catch {
      result.unknown = true;
      continue;
    }
    for (const item of parsed.items) {
      let keep = result.byQueue.get(item.queue);
      if (!keep) {
        keep = new Set();
        result.byQueue.set(item.queue, keep);
      }
      keep.add(item.name);
      keep.add(`${item.name}.meta`);
    }
  }
  return result;
}
