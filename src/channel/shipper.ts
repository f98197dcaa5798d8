// Shipping one channel's sealed bundles to its peer: a bounded pipeline, oldest first, retried with backoff.
//
// A bundle leaves state/channels/<peer>/out/ only after the transport reports it durable in the
// peer's landing area ('published', or 'already' from an earlier attempt). One shipper per peer,
// so a dead peer only ever delays its own channel.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isFerryError } from '../errors.js';
import { ensureDir, fsyncDir, listDir, renameIfExists, replaceFileDurable, unlinkIfExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';
import type { Transport } from '../transport/transport.js';
import type { Log } from './acceptor.js';
import { Backoff } from './backoff.js';
import { parseBundleName } from './bundle-name.js';
import type { ChannelDir } from './channel-state.js';
import { now } from '../clock.js';

/** Shipper settings. */
export interface ShipperOptions {
  /** Bundles uploaded at once. Default 4. */
  pipeline?: number;
  /** A bundle not shipped within this long goes to dead letters, ms. Default 7 days. */
  lifetimeMs?: number;
  /** Where expired bundles go (state/dead/<peer>/). */
  deadDir: string;
  /** Idle re-check interval, ms. Default 2 000. */
  idleMs?: number;
  /** Called after each bundle is durable at the peer, with its age since it was sealed (for the latency histogram). */
  onShipped?: (peer: string, ageMs: number) => void;
}

/** A peer's shipping status. */
export interface PeerStatus {
  peer: string;
  backlogBundles: number;
  backlogMessages: number;
  /** Age of the oldest unshipped bundle, ms, or null. */
  oldestMs: number | null;
  lastSuccess: number | null;
  lastError: { at: number; message: string; code?: string } | null;
  shippedBundles: number;
  shippedMessages: number;
  shippedBytes: number;
  deadBundles: number;
  /** Consecutive failures (0 when healthy). */
  failures: number;
}

/** Ships one channel. */
export class Shipper {
  private running = false;
  private stopping = false;
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly backoff = new Backoff();
  private readonly pipeline: number;
  private readonly lifetimeMs: number;
  private readonly idleMs: number;
  readonly status: PeerStatus;

  constructor(private readonly channel: ChannelDir, private readonly transport: Transport, private readonly log: Log, private readonly opts: ShipperOptions) {
    this.pipeline = opts.pipeline ?? 4;
    this.lifetimeMs = opts.lifetimeMs ?? 7 * 24 * 3600_000;
    this.idleMs = opts.idleMs ?? 2_000;
    this.status = {
      peer: channel.peer, backlogBundles: 0, backlogMessages: 0, oldestMs: null, lastSuccess: null, lastError: null,
      shippedBundles: 0, shippedMessages: 0, shippedBytes: 0, deadBundles: 0, failures: 0,
    };
  }

  /** Starts the shipping loop. */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.transport.warm?.();
    this.loop = this.run();
  }

  /** Signals that new bundles may be waiting. */
  wake(): void {
    this.wakeUp?.();
  }

  /** Stops after the uploads in flight finish (they complete or fail; nothing is half-done locally). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
    await this.transport.close();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() { clearTimeout(t); resolve(); }
      this.wakeUp = done;
    });
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let names: string[];
      try {
        names = await this.backlog();
      } catch (err) {
        this.log.error({ peer: this.channel.peer, err: String(err) }, 'cannot list channel');
        await this.sleep(this.idleMs);
        continue;
      }
      if (names.length === 0) {
        await this.sleep(this.idleMs);
        continue;
      }
      const ok = await this.shipSome(names);
      if (!ok && !this.stopping) {
        const delay = this.backoff.fail();
        this.status.failures = this.backoff.attempts;
        await this.sleep(delay);
      }
    }
  }

  /** The bundles waiting, oldest first; refreshes the backlog figures. */
  async backlog(): Promise<string[]> {
    const names = (await listDir(this.channel.out)).filter((n) => parseBundleName(n) !== undefined).sort();
    let messages = 0;
    for (const n of names) messages += parseBundleName(n)?.count ?? 0;
    this.status.backlogBundles = names.length;
    this.status.backlogMessages = messages;
    if (names.length > 0) {
      try {
        const st = await fsp.stat(join(this.channel.out, names[0] as string));
        this.status.oldestMs = now() - st.mtimeMs;
      } catch {
        this.status.oldestMs = null;
      }
    } else {
      this.status.oldestMs = null;
    }
    return names;
  }

  /** Ships up to `pipeline` bundles at a time until the list is done; false on the first failure. */
  private async shipSome(names: string[]): Promise<boolean> {
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && !this.stopping && next < names.length) {
        const name = names[next++] as string;
        if (!(await this.shipOne(name))) failed = true;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.pipeline, names.length) }, worker));
    if (!failed) {
      await fsyncDir(this.channel.out).catch(() => undefined);
    }
    return !failed;
  }

  private async shipOne(name: string): Promise<boolean> {
    const path = join(this.channel.out, name);
    let st;
    try {
      st = await fsp.stat(path);
    } catch {
      return true; // shipped by an earlier round
    }
    if (now() - st.mtimeMs > this.lifetimeMs) {
      await this.expire(name, st.mtimeMs);
      return true;
    }
    try {
      const result = await this.transport.publish(path, name);
      crashPoint('ship.after-publish');
      await unlinkIfExists(path);
      const count = parseBundleName(name)?.count ?? 0;
      this.status.shippedBundles += 1;
      this.status.shippedMessages += count;
      this.status.shippedBytes += st.size;
      this.status.lastSuccess = now();
      this.status.failures = 0;
      this.backoff.reset();
      this.opts.onShipped?.(this.channel.peer, now() - st.mtimeMs);
      this.log.debug({ peer: this.channel.peer, bundle: name, messages: count, bytes: st.size, result }, 'bundle shipped');
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const code = isFerryError(err) ? err.code : undefined;
      const previous = this.status.lastError;
      this.status.lastError = { at: now(), message, ...(code ? { code } : {}) };
      if (previous?.message !== message) this.log.warn({ peer: this.channel.peer, bundle: name, code, err: message }, 'shipping failed; will retry with backoff');
      return false;
    }
  }

  /** Moves a bundle that outlived its lifetime to state/dead/<peer>/ with a reason. */
  private async expire(name: string, since: number): Promise<void> {
    const dir = join(this.opts.deadDir, this.channel.peer);
    await ensureDir(dir);
    const reason = `not delivered to ${this.channel.peer} within its lifetime (${Math.round(this.lifetimeMs / 1000)} s); last error: ${this.status.lastError?.message ?? 'none'}`;
    await replaceFileDurable(join(dir, `${name}.reason.json`), JSON.stringify({ reason, at: now(), since }));
    await renameIfExists(join(this.channel.out, name), join(dir, name));
    this.status.deadBundles += 1;
    this.log.error({ peer: this.channel.peer, bundle: name, reason }, 'bundle moved to dead letters');
  }
}
