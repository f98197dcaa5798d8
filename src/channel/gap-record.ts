// Giving up on a bundle: it goes to the dead letters with its reason, and an authenticated gap record takes its place in the channel.
//
// Strict order means the receiver never delivers past a missing sequence. When the sender gives up on a bundle
// (its lifetime ran out, or the peer refused it for good), the sequences it held must be passed explicitly, or
// everything behind them would wait forever: a gap record — a sealed bundle of kind "gap" naming the same
// sequences and the reason — ships in its place, in order. The gap record is made durable in out/ before the
// bundle leaves it, so a crash in between leaves both (the bundle is then dead-lettered again, the gap record ships).
import { join } from 'node:path';
import { formatBundleName, type BundleNameParts, writeSealedBundle, type SealKey } from '../envelope/index.js';
import { MAX_GAP_REASON_BYTES } from '../envelope/validate.js';
import { createExclusive, ensureDir, fsyncDir, renameIfExists, replaceFileDurable, unlinkIfExists, writeAll } from '../maildir/fsx.js';
import type { ChannelDir } from './channel-state.js';
import { now } from '../clock.js';

/** What dead-lettering one bundle needs. */
export interface GapContext {
  channel: ChannelDir;
  self: string;
  key: SealKey;
  /** state/dead/<peer>/. */
  deadDir: string;
}

/** The reason cut to what a gap record carries. */
function cutReason(reason: string): string {
  let r = reason;
  while (Buffer.byteLength(r, 'utf8') > MAX_GAP_REASON_BYTES) r = r.slice(0, Math.floor(r.length * 0.9));
  return r;
}

/**
 * Dead-letters the bundle `name` (out/ → dead/<peer>/ with a reason file) after putting a gap record for its
 * sequences into out/. `acked` is the sender's proof mark for the epoch. Returns the gap record's name.
 */
export async function deadLetterWithGap(ctx: GapContext, name: string, parts: BundleNameParts, reason: string, acked: number): Promise<string> {
  const gapName = formatBundleName({ ...parts, gap: true });
  const tmp = join(ctx.channel.tmp, gapName);
  await unlinkIfExists(tmp);
  const fh = await createExclusive(tmp);
  try {
    await writeSealedBundle({ write: (c) => writeAll(fh, c) }, ctx.key, {
      origin: ctx.self, destination: ctx.channel.peer, channel: parts.channel, epoch: parts.epoch,
      firstSeq: parts.firstSeq, count: parts.count, created: now(), acked: Math.min(acked, parts.firstSeq - 1),
      kind: 'gap', gap: cutReason(reason),
    }, []);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await renameIfExists(tmp, join(ctx.channel.out, gapName));
  await fsyncDir(ctx.channel.out);
  await ensureDir(ctx.deadDir);
  await replaceFileDurable(join(ctx.deadDir, `${name}.reason.json`), JSON.stringify({ reason, at: now(), peer: ctx.channel.peer, firstSeq: parts.firstSeq, count: parts.count, epoch: parts.epoch, gap: gapName }));
  await renameIfExists(join(ctx.channel.out, name), join(ctx.deadDir, name));
  // dead/ first: a cut between the two then leaves the bundle in both (out/ ships it again), never in neither.
  await fsyncDir(ctx.deadDir);
  await fsyncDir(ctx.channel.out);
  return gapName;
}
