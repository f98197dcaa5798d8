// A channel's persistent identity and next sequence number: state/channels/<peer>/state.json.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError, errno } from '../errors.js';
import { ensureDir, replaceFileDurable } from '../maildir/fsx.js';

const stateSchema = z.strictObject({
  epoch: z.string().regex(/^[0-9a-f]{16}$/),
  nextSeq: z.number().int().min(1),
});

/** A channel's state: the epoch (new whenever the channel's state is created) and the next sequence number. */
export type ChannelState = z.infer<typeof stateSchema>;

/** Paths of one channel (this host → `peer`). */
export class ChannelDir {
  constructor(readonly dir: string, readonly peer: string) {}
  get stateFile(): string { return join(this.dir, 'state.json'); }
  get tmp(): string { return join(this.dir, 'tmp'); }
  get out(): string { return join(this.dir, 'out'); }

  /** Creates the directories, and a fresh epoch when the channel has no state yet. */
  async ensure(): Promise<ChannelState> {
    await ensureDir(this.dir);
    await ensureDir(this.tmp);
    await ensureDir(this.out);
    try {
      return await this.read();
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      const state: ChannelState = { epoch: randomBytes(8).toString('hex'), nextSeq: 1 };
      await this.write(state);
      return state;
    }
  }

  /** Reads the state; ENOENT when the channel is new. */
  async read(): Promise<ChannelState> {
    const text = await fsp.readFile(this.stateFile, 'utf8');
    const parsed = stateSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new FerryError('ESPOOL', `channel state ${this.stateFile} is malformed`, { path: this.stateFile, peer: this.peer });
    return parsed.data;
  }

  /** Replaces the state durably. */
  async write(state: ChannelState): Promise<void> {
    await replaceFileDurable(this.stateFile, JSON.stringify(state));
  }
}
