// What each channel has delivered: a high-water mark plus a small set above it, kept apart from the inbox.
//
// Consumers delete inbox files, so "is it in the inbox?" cannot tell a duplicate. Instead, per
// (origin, channel epoch): every sequence ≤ hwm was delivered, and so was every one in `above`.
// Bounded: `above` holds at most MAX_ABOVE entries (beyond, the hwm jumps and the gap is logged),
// and each origin keeps its MAX_EPOCHS most recently delivered-to epochs.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { errno } from '../errors.js';
import { replaceFileDurable } from '../maildir/fsx.js';

const MAX_ABOVE = 50_000;
const MAX_EPOCHS = 8;

const channelSchema = z.strictObject({ hwm: z.number().int().nonnegative(), above: z.array(z.number().int()), seen: z.number() });
const fileSchema = z.record(z.string(), z.record(z.string(), channelSchema));

/** One channel's delivered set. */
export type ChannelMark = z.infer<typeof channelSchema>;

/** The receiver's dedupe state, persisted in state/receive/dedupe.json. */
export class DedupeStore {
  private data: Record<string, Record<string, ChannelMark>> = {};

  constructor(private readonly dir: string) {}

  private get file(): string { return join(this.dir, 'dedupe.json'); }

  /** Loads the persisted state (empty when none). */
  async load(): Promise<void> {
    try {
      this.data = fileSchema.parse(JSON.parse(await fsp.readFile(this.file, 'utf8')));
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      this.data = {};
    }
  }

  /** The mark of a channel, or undefined when nothing from it was delivered yet. */
  mark(origin: string, epoch: string): ChannelMark | undefined {
    return this.data[origin]?.[epoch];
  }

  /** True when (origin, epoch, seq) was delivered already. */
  has(origin: string, epoch: string, seq: number): boolean {
    const m = this.mark(origin, epoch);
    if (!m) return false;
    return seq <= m.hwm || m.above.includes(seq);
  }

  /** The next sequence the channel expects. */
  expected(origin: string, epoch: string): number {
    return (this.mark(origin, epoch)?.hwm ?? 0) + 1;
  }

  /**
   * Records sequences as delivered and persists durably. Returns the sequences skipped over when
   * the set had to be bounded (a gap that is now given up on), for logging.
   */
  async record(origin: string, epoch: string, seqs: readonly number[]): Promise<number[]> {
    const byEpoch = (this.data[origin] ??= {});
    // `seen` orders epochs for eviction: a counter, not the wall clock, so a clock stepped back
    // cannot make the channel being delivered now look the oldest and evict it (its next replay
    // would then be delivered again). Older files hold ms timestamps; the counter continues above them.
    const seen = Math.max(0, ...Object.values(byEpoch).map((c) => c.seen)) + 1;
    const m = (byEpoch[epoch] ??= { hwm: 0, above: [], seen });
    m.seen = seen;
    const above = new Set(m.above);
    for (const s of seqs) if (s > m.hwm) above.add(s);
    while (above.has(m.hwm + 1)) above.delete(++m.hwm);
    const skipped: number[] = [];
    if (above.size > MAX_ABOVE) {
      const sorted = [...above].sort((a, b) => a - b);
      const cut = sorted[above.size - MAX_ABOVE] as number;
      for (let s = m.hwm + 1; s < cut && skipped.length < 1000; s++) if (!above.has(s)) skipped.push(s);
      m.hwm = cut - 1;
      for (const s of sorted) if (s <= m.hwm) above.delete(s);
      while (above.has(m.hwm + 1)) above.delete(++m.hwm);
    }
    m.above = [...above].sort((a, b) => a - b);
    const epochs = Object.entries(byEpoch);
    if (epochs.length > MAX_EPOCHS) {
      epochs.sort((a, b) => b[1].seen - a[1].seen);
      this.data[origin] = Object.fromEntries(epochs.slice(0, MAX_EPOCHS));
    }
    await replaceFileDurable(this.file, JSON.stringify(this.data));
    return skipped;
  }
}
