// A channel's persistent identity and next sequence number (state.json), and what the sender last proved from a receipt (acked.json).
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError, errno } from '../errors.js';
import { ensureDir, replaceFileDurable } from '../maildir/fsx.js';
import { now } from '../clock.js';

const stateSchema = z.strictObject({
  /** Epoch number: only grows, so the receiver refuses every older epoch without remembering it. */
  epoch: z.number().int().min(1),
  /** Epoch id, random. */
  channel: z.string().regex(/^[0-9a-f]{16}$/),
  nextSeq: z.number().int().min(1),
});

const ackedSchema = z.strictObject({
  /** The receiver's state instance the proof came from. */
  instance: z.string(),
  epoch: z.number().int().min(1),
  channel: z.string(),
  /** Every sequence up to here is proven delivered (or skipped by a gap record). */
  hwm: z.number().int().min(0),
});

/** A channel's state: its epoch (number and id) and the next sequence number. */
export type ChannelState = z.infer<typeof stateSchema>;
/** What the last valid receipt proved. */
export type AckedState = z.infer<typeof ackedSchema>;

/** A new epoch numbered above `floor` (and above the wall clock in ms, so a re-provisioned sender starts above its old epochs). */
export function newEpoch(floor = 0): ChannelState {
  return { epoch: Math.max(now(), floor + 1), channel: randomBytes(8).toString('hex'), nextSeq: 1 };
}

/** Paths of one channel (this host → `peer`). */
export class ChannelDir {
  constructor(readonly dir: string, readonly peer: string) {}
  get stateFile(): string { return join(this.dir, 'state.json'); }
  get ackedFile(): string { return join(this.dir, 'acked.json'); }
  get tmp(): string { return join(this.dir, 'tmp'); }
  get out(): string { return join(this.dir, 'out'); }
  /** The epoch switch being applied (exists only during a switch, or after a crash in one). */
  get switchJournal(): string { return join(this.dir, 'switch.journal'); }

  /**
   * Creates the directories, and a fresh epoch when the channel has no state yet — or has a state from before
   * numbered epochs (an older ferry), whose bundles no receiver of this version opens.
   */
  async ensure(): Promise<ChannelState> {
    await ensureDir(this.dir);
    await ensureDir(this.tmp);
    await ensureDir(this.out);
    try {
      return await this.read();
    } catch (err) {
      if (errno(err) !== 'ENOENT' && !(err instanceof FerryError && err.message.includes('older ferry'))) throw err;
      const state = newEpoch();
      await this.write(state);
      return state;
    }
  }

  /** Reads the state; ENOENT when the channel is new. */
  async read(): Promise<ChannelState> {
    const raw = JSON.parse(await fsp.readFile(this.stateFile, 'utf8')) as unknown;
    const parsed = stateSchema.safeParse(raw);
    if (!parsed.success) {
      const older = typeof raw === 'object' && raw !== null && typeof (raw as { epoch?: unknown }).epoch === 'string';
      throw new FerryError('ESPOOL', older ? `channel state ${this.stateFile} was written by an older ferry` : `channel state ${this.stateFile} is malformed`, { path: this.stateFile, peer: this.peer });
    }
    return parsed.data;
  }

  /** Replaces the state durably. */
  async write(state: ChannelState): Promise<void> {
    await replaceFileDurable(this.stateFile, JSON.stringify(state));
  }

  /** What the last receipt proved, or undefined. */
  async readAcked(): Promise<AckedState | undefined> {
    try {
      const parsed = ackedSchema.safeParse(JSON.parse(await fsp.readFile(this.ackedFile, 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch (err) {
      if (errno(err) === 'ENOENT' || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  /** Records what a receipt proved (durably: bundles sealed afterwards tell the receiver this mark). */
  async writeAcked(a: AckedState): Promise<void> {
    await replaceFileDurable(this.ackedFile, JSON.stringify(a));
  }
}
