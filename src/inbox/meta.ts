// The metadata kept beside a delivered payload (inbox/<q>/meta/<name>.json), so payload bytes stay untouched.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { errno } from '../errors.js';
import { replaceFileDurable } from '../maildir/fsx.js';
import { now } from '../clock.js';

/** What ferry knows about a message in an inbox. */
export interface InboxMeta {
  /** The message id given at send time (unique per origin). */
  id: string;
  /** The host that committed the message. */
  origin: string;
  /** The queue it was sent to. */
  queue: string;
  /** Headers given at send time. */
  headers: Record<string, string>;
  /** When the send committed, ms since the epoch. */
  committed: number;
  /** When it was delivered into this inbox, ms since the epoch. */
  delivered: number;
  /** Failed attempts so far (aborts and expired leases). */
  attempts: number;
  /** Why the recent attempts failed, newest last (at most 10). */
  errors?: string[];
  /** Set once the message moved to the dead-letter directory. */
  dead?: { reason: string; at: number };
}

const metaSchema = z.object({
  id: z.string(),
  origin: z.string(),
  queue: z.string(),
  headers: z.record(z.string(), z.string()),
  committed: z.number(),
  delivered: z.number(),
  attempts: z.number().int().nonnegative(),
  errors: z.array(z.string()).optional(),
  dead: z.object({ reason: z.string(), at: z.number() }).optional(),
});

/** Path of the meta file for message `name` of an inbox queue directory. */
export function metaPath(queueDir: string, name: string): string {
  return join(queueDir, 'meta', `${name}.json`);
}

/**
 * Reads a message's meta. A message delivered by a plain maildir deliverer has none: its meta is
 * derived (id = file name, origin = this host, committed = mtime).
 */
export async function readMeta(queueDir: string, queue: string, name: string, host: string, payloadPath: string): Promise<InboxMeta> {
  try {
    const text = await fsp.readFile(metaPath(queueDir, name), 'utf8');
    const parsed = metaSchema.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data as InboxMeta;
  } catch (err) {
    if (errno(err) !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
  }
  let mtime = now();
  try {
    mtime = (await fsp.lstat(payloadPath)).mtimeMs;
  } catch {
    // gone already; the caller finds out when it opens the payload
  }
  return { id: name, origin: host, queue, headers: {}, committed: Math.floor(mtime), delivered: Math.floor(mtime), attempts: 0 };
}

/** Replaces a message's meta file durably. */
export async function writeMeta(queueDir: string, name: string, meta: InboxMeta): Promise<void> {
  await replaceFileDurable(metaPath(queueDir, name), JSON.stringify(meta));
}
