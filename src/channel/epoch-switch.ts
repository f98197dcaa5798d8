// Moving a channel to a new epoch: every bundle not yet proven delivered is re-sealed into it, in order, under one journal.
//
// A sender moves to a new epoch when the receiver's receipt shows its epoch can go no further: closed by a newer
// one (the sender was re-provisioned or restored and is behind), or ahead of the sender's own next sequence (the
// sender was restored from a backup and reuses sequence numbers). The bundles waiting in out/ are opened (this
// host sealed them) and sealed again under the new epoch from sequence 1, marked `resealed`, so the receiver skips
// any message whose id it delivered recently. Crash safety: the new bundles are written in tmp/ and fsynced, then
// one journal names what goes and what comes (the commit point); applying it renames, unlinks and writes the new
// state, and is replayed after a crash.
import { closeSync, openSync, readSync, promises as fsp, constants } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { errno } from '../errors.js';
import { formatBundleName, parseBundleName, readSealedBundle, writeSealedBundle, type KeyLookup, type MessageMeta, type OutgoingMessage, type SealKey } from '../envelope/index.js';
import { createExclusive, fsyncDir, listDir, renameIfExists, replaceFileDurable, unlinkIfExists, writeAll } from '../maildir/fsx.js';
import { newEpoch, type ChannelDir, type ChannelState } from './channel-state.js';
import type { Log } from './acceptor.js';
import { now } from '../clock.js';

const journalSchema = z.strictObject({
  remove: z.array(z.string()),
  add: z.array(z.string()),
  state: z.strictObject({ epoch: z.number().int().min(1), channel: z.string(), nextSeq: z.number().int().min(1) }),
  reason: z.string(),
});
type SwitchJournal = z.infer<typeof journalSchema>;

/** What a switch needs: the channel, who we are, the keys, and the lock the acceptor also takes. */
export interface SwitchContext {
  channel: ChannelDir;
  self: string;
  /** The key new bundles are sealed with. */
  sealKey: () => SealKey;
  /** Any key by id (a waiting bundle may be sealed with an older one). */
  openKeys: KeyLookup;
  /** Runs `fn` while no accept pass writes this channel's state. */
  lock: <T>(fn: () => Promise<T>) => Promise<T>;
  log: Log;
}

const READ_CHUNK = 1024 * 1024;

async function* readFile(path: string): AsyncGenerator<Uint8Array> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let pos = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) return;
      pos += n;
      yield buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** Re-seals one waiting bundle into `state` from `firstSeq`; writes tmp/<new name>. Returns the name and count (0 for a gap record). */
async function reseal(ctx: SwitchContext, src: string, state: ChannelState, firstSeq: number): Promise<{ name: string; count: number } | undefined> {
  const parts: Array<{ meta: MessageMeta; file: string }> = [];
  try {
    const header = await readSealedBundle(readFile(src), ctx.openKeys, ctx.self, {
      role: 'sender',
      // Payloads go through plaintext files in the channel's own tmp/ (0600, like commit files): memory stays bounded.
      onMessage: async (meta) => {
        const file = join(ctx.channel.tmp, `reseal-${randomBytes(6).toString('hex')}`);
        const fh = await createExclusive(file);
        parts.push({ meta, file });
        return { write: (c) => writeAll(fh, c), end: () => fh.close(), abort: () => fh.close() };
      },
    });
    if (header.kind === 'gap' || parts.length === 0) return undefined;
    const name = formatBundleName({ epoch: state.epoch, channel: state.channel, firstSeq, count: parts.length, gap: false });
    const out = join(ctx.channel.tmp, name);
    await unlinkIfExists(out);
    const fh = await createExclusive(out);
    try {
      const messages: OutgoingMessage[] = parts.map((p, i) => ({
        meta: { seq: firstSeq + i, queue: p.meta.queue, id: p.meta.id, headers: p.meta.headers, committed: p.meta.committed, size: p.meta.size },
        compression: p.meta.compression ?? 'none',
        payload: () => readFile(p.file),
      }));
      await writeSealedBundle({ write: (c) => writeAll(fh, c) }, ctx.sealKey(), {
        origin: ctx.self, destination: ctx.channel.peer, channel: state.channel, epoch: state.epoch,
        firstSeq, count: parts.length, created: now(), acked: 0, resealed: parts.length,
      }, messages);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { name, count: parts.length };
  } finally {
    for (const p of parts) await unlinkIfExists(p.file);
  }
}

/**
 * Moves the channel to a new epoch numbered above `floor` (the receiver's current epoch) and above its own,
 * re-sealing every waiting bundle into it. Returns the new state.
 */
export async function switchEpoch(ctx: SwitchContext, floor: number, reason: string): Promise<ChannelState> {
  return ctx.lock(async () => {
    const old = await ctx.channel.read();
    const fresh = newEpoch(Math.max(floor, old.epoch));
    const waiting = (await listDir(ctx.channel.out)).filter((n) => parseBundleName(n) !== undefined).sort();
    let seq = 1;
    const add: string[] = [];
    for (const name of waiting) {
      const made = await reseal(ctx, join(ctx.channel.out, name), fresh, seq);
      if (made === undefined) continue;
      add.push(made.name);
      seq += made.count;
    }
    const journal: SwitchJournal = { remove: waiting, add, state: { ...fresh, nextSeq: seq }, reason };
    // The new bundles' entries must be durable before the journal names them: applying treats a missing one as moved.
    await fsyncDir(ctx.channel.tmp);
    await replaceFileDurable(ctx.channel.switchJournal, JSON.stringify(journal));
    await applySwitch(ctx.channel, journal);
    ctx.log.warn({ peer: ctx.channel.peer, from: old.epoch, to: fresh.epoch, resealed: add.length, messages: seq - 1, reason }, 'channel moved to a new epoch; waiting bundles re-sealed into it');
    return journal.state;
  });
}

async function applySwitch(channel: ChannelDir, j: SwitchJournal): Promise<void> {
  for (const name of j.add) await renameIfExists(join(channel.tmp, name), join(channel.out, name));
  for (const name of j.remove) await unlinkIfExists(join(channel.out, name));
  await fsyncDir(channel.out);
  await channel.write(j.state);
  await unlinkIfExists(channel.switchJournal);
  await fsyncDir(channel.dir);
}

/** Finishes a switch a crash interrupted (before anything is sealed or shipped on the channel). */
export async function recoverSwitch(channel: ChannelDir): Promise<boolean> {
  let text: string;
  try {
    text = await fsp.readFile(channel.switchJournal, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
  await applySwitch(channel, journalSchema.parse(JSON.parse(text)));
  return true;
}
