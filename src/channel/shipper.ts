// Shipping one channel to its peer: upload in parallel, publish in sequence order, forget a bundle only when a receipt proves it delivered.
//
// A bundle stays in state/channels/<peer>/out/ until the peer's sealed receipt covers it: "uploaded" and "the name
// exists in the landing directory" prove nothing (the peer's own login could have made or removed it). So: upload
// up to `pipeline` bundles at once as `<name>.part`, publish them strictly in order (the receiver never delivers
// past a gap anyway), keep at most `window` published bundles waiting for their receipt, and poll the receipt. A
// published bundle that vanished without a receipt covering it is uploaded again. What a receipt says otherwise is
// acted on: a refusal for good → dead letter + gap record; our epoch closed, or the receiver ahead of what we ever
// sealed (restored from a backup) → a new epoch; the receiver behind what it once proved → an alarm.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isFerryError, messageOf } from '../errors.js';
import { parseBundleName, type KeyLookup, type Receipt, type SealKey } from '../envelope/index.js';
import { keyIdOf } from '../envelope/wire-format.js';
import { fsyncDir, listDir, unlinkIfExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';
import type { Transport } from '../transport/transport.js';
import type { Log } from './acceptor.js';
import { Backoff } from './backoff.js';
import type { AckedState, ChannelDir } from './channel-state.js';
import { switchEpoch } from './epoch-switch.js';
import { deadLetterWithGap } from './gap-record.js';
import { covers, EPOCH_REFUSALS, fetchReceipt, FINAL_REFUSALS, judge, refusalIsFinal, refusalMatches } from './receipt-view.js';
import { now } from '../clock.js';

/** Shipper settings. */
export interface ShipperOptions {
  /** This host's name. */
  self: string;
  /** The key gap records and re-sealed bundles are sealed with; keys by id to open receipts and older bundles. */
  keys: { seal: () => SealKey; open: KeyLookup };
  /** Runs `fn` while no accept pass writes this channel's state (epoch switches). */
  lock: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Where bundles given up on go: state/dead/ (a directory per peer below it). */
  deadDir: string;
  /** Bundles uploading at once. Default 4. */
  pipeline?: number;
  /** Most bundles published and not yet covered by a receipt. Default 32. */
  window?: number;
  /** A bundle not proven delivered within this long is given up on (dead letter + gap record), ms. Default 7 days. */
  lifetimeMs?: number;
  /** Idle re-check interval, ms. Default 2 000. */
  idleMs?: number;
  /** Called for each bundle a receipt proves delivered, with its age since it was sealed. */
  onShipped?: (peer: string, ageMs: number) => void;
}

/** A peer's shipping status (`ferry status`, metrics). */
export interface PeerStatus {
  peer: string;
  /** Bundles (and messages) not yet proven delivered. */
  backlogBundles: number;
  backlogMessages: number;
  /** Of those, bundles published into the peer's landing directory and waiting for its receipt. */
  publishedBundles: number;
  /** Age of the oldest unproven bundle, ms, or null. */
  oldestMs: number | null;
  /** When a receipt last proved progress. */
  lastSuccess: number | null;
  lastError: { at: number; message: string; code?: string } | null;
  /** Proven delivered since start. */
  shippedBundles: number;
  shippedMessages: number;
  shippedBytes: number;
  deadBundles: number;
  failures: number;
  /** The epoch and the delivered mark the last receipt proved. */
  delivered: { epoch: number; hwm: number } | null;
  /** Why the peer does not deliver our channel, as its receipt says (or our own upload failure), since when. */
  blocked: { seq: number; since: number; code: string; reason: string } | null;
  /** A disagreement between our records and the receiver's (its state rolled back…), or null. */
  alarm: string | null;
}

const POLL_MIN_MS = 25;
const POLL_MAX_MS = 1_000;
/** Published bundles and no progress for this long: list the landing directory to find any that vanished. */
const STALL_MS = 3_000;

/** Ships one channel. */
export class Shipper {
  private stopping = false;
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly backoff = new Backoff();
  private readonly pipeline: number;
  private readonly window: number;
  private readonly lifetimeMs: number;
  private readonly idleMs: number;
  /** Bundles we published this run: name → when. */
  private readonly published = new Map<string, number>();
  /** Bundles whose upload completed (`.part` durable) but which are not published yet. */
  private readonly uploaded = new Set<string>();
  private receipt: Receipt | undefined;
  /** Refusal entries of the receipt already answered (name@when), so each causes one new upload, not one per read. */
  private readonly answered = new Set<string>();
  private acked: AckedState | undefined;
  private listedSinceStart = false;
  private lastProgress = performance.now();
  private pollMs = POLL_MIN_MS;
  private alarmLogged: string | undefined;
  readonly status: PeerStatus;

  constructor(private readonly channel: ChannelDir, private readonly transport: Transport, private readonly log: Log, private readonly opts: ShipperOptions) {
    this.pipeline = opts.pipeline ?? 4;
    this.window = Math.max(1, opts.window ?? 32);
    this.lifetimeMs = opts.lifetimeMs ?? 7 * 24 * 3600_000;
    this.idleMs = opts.idleMs ?? 2_000;
    this.status = {
      peer: channel.peer, backlogBundles: 0, backlogMessages: 0, publishedBundles: 0, oldestMs: null, lastSuccess: null, lastError: null,
      shippedBundles: 0, shippedMessages: 0, shippedBytes: 0, deadBundles: 0, failures: 0, delivered: null, blocked: null, alarm: null,
    };
  }

  /** The acked mark of the channel's current epoch, for headers the acceptor seals (0: nothing proven yet). */
  ackedFor(epoch: number, channel: string): number {
    return this.acked !== undefined && this.acked.epoch === epoch && this.acked.channel === channel ? this.acked.hwm : 0;
  }

  /** Starts the shipping loop. */
  start(): void {
    if (this.loop) return;
    void this.transport.warm?.();
    this.loop = (async () => {
      this.acked = await this.channel.readAcked().catch(() => undefined);
      await this.run();
    })();
  }

  /**
   * One shipping round now, outside the loop: read the receipt and act on it, then upload and publish what the window
   * allows. For drivers that step the protocol by hand (the power-cut round); errors reject instead of backing off.
   */
  async shipOnce(): Promise<void> {
    this.acked ??= await this.channel.readAcked().catch(() => undefined);
    const names = await this.backlog();
    if (names.length > 0) await this.cycle(names);
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
      let wait: number;
      try {
        const names = await this.backlog();
        wait = names.length === 0 ? this.idleMs : await this.cycle(names);
        this.backoff.reset();
        this.status.failures = 0;
      } catch (err) {
        this.failed(err);
        wait = this.backoff.fail();
        this.status.failures = this.backoff.attempts;
      }
      if (!this.stopping) await this.sleep(wait);
    }
  }

  private failed(err: unknown): void {
    const message = messageOf(err);
    const code = isFerryError(err) ? err.code : undefined;
    const previous = this.status.lastError;
    this.status.lastError = { at: now(), message, ...(code ? { code } : {}) };
    if (previous?.message !== message) this.log.warn({ peer: this.channel.peer, code, err: message }, 'shipping failed; will retry with backoff');
  }

  /** The bundles and gap records not proven delivered, in order; refreshes the backlog figures. */
  async backlog(): Promise<string[]> {
    const names = (await listDir(this.channel.out)).filter((n) => parseBundleName(n) !== undefined).sort();
    let messages = 0;
    for (const n of names) {
      const p = parseBundleName(n);
      if (p && !p.gap) messages += p.count;
    }
    this.status.backlogBundles = names.length;
    this.status.backlogMessages = messages;
    this.status.publishedBundles = [...this.published.keys()].filter((n) => names.includes(n)).length;
    this.status.oldestMs = null;
    if (names.length > 0) {
      try {
        this.status.oldestMs = now() - (await fsp.stat(join(this.channel.out, names[0] as string))).mtimeMs;
      } catch {
        // shipped meanwhile
      }
    }
    return names;
  }

  /** One round: read the receipt, act on it, give up on what is too old, upload and publish. Returns how long to wait. */
  private async cycle(names: string[]): Promise<number> {
    const left = await this.applyReceipt(names);
    if (left === undefined) return 0; // the channel moved to a new epoch: start over at once
    await this.expire(left);
    const stalled = this.published.size > 0 && performance.now() - this.lastProgress > STALL_MS;
    if (!this.listedSinceStart || stalled) await this.reconcile(left);
    const progressed = await this.uploadAndPublish(await this.backlog());
    if (progressed) this.pollMs = POLL_MIN_MS;
    else this.pollMs = Math.min(POLL_MAX_MS, this.pollMs * 2);
    return this.published.size > 0 || progressed ? this.pollMs : this.idleMs;
  }

  /** Reads the receipt and acts on it. Returns the names still waiting, or undefined after an epoch switch. */
  private async applyReceipt(names: string[]): Promise<string[] | undefined> {
    const r = await fetchReceipt(this.transport, this.opts.keys.open, this.opts.self);
    if (r === undefined) return names;
    this.receipt = r;
    const state = await this.channel.read();
    const verdict = judge(r, state, this.acked);
    this.status.blocked = r.blocked;
    if (verdict.kind === 'rollback') {
      this.status.alarm = verdict.why;
      if (this.alarmLogged !== verdict.why) this.log.error({ peer: this.channel.peer, code: 'EDEDUPE_ROLLBACK', reason: verdict.why }, 'the receiver knows less than it once proved: nothing is forgotten here; see `ferry receive resync` on the receiver');
      this.alarmLogged = verdict.why;
    } else {
      this.status.alarm = null;
    }
    if (verdict.kind === 'closed' || verdict.kind === 'restored') {
      // Nothing is forgotten by sequence number now: after a restore those numbers were reused for new messages, so a
      // receipt "covering" them proves nothing about these bytes. Everything waiting is re-sealed, and the receiver
      // skips, by message id, whatever it delivered already.
      this.log.error({ peer: this.channel.peer, code: verdict.kind === 'restored' ? 'ESENDER_RESTORED' : 'EEPOCH_CLOSED', reason: verdict.why }, verdict.kind === 'restored' ? 'this host was restored from a backup: moving the channel to a new epoch' : 'our epoch is closed at the receiver: moving the channel to a new epoch');
      await this.switchTo(verdict.floor, verdict.why);
      return undefined;
    }
    const left = await this.forgetCovered(names, r);
    if (verdict.kind === 'ok' && verdict.hwm > 0 && (this.acked?.hwm !== verdict.hwm || this.acked.epoch !== state.epoch || this.acked.instance !== r.instance)) {
      this.acked = { instance: r.instance, epoch: state.epoch, channel: state.channel, hwm: verdict.hwm };
      await this.channel.writeAcked(this.acked);
    }
    if (verdict.kind === 'ok') this.status.delivered = { epoch: state.epoch, hwm: verdict.hwm };
    return this.applyRefusals(left, r);
  }

  /** Removes from out/ every bundle the receipt proves delivered. Returns the others. */
  private async forgetCovered(names: string[], r: Receipt): Promise<string[]> {
    const left: string[] = [];
    let forgot = 0;
    for (const name of names) {
      const p = parseBundleName(name);
      if (p === undefined || !covers(r, p)) {
        left.push(name);
        continue;
      }
      const path = join(this.channel.out, name);
      const st = await fsp.stat(path).catch(() => undefined);
      crashPoint('ship.before-forget');
      if (await unlinkIfExists(path)) {
        forgot += 1;
        if (!p.gap) {
          this.status.shippedMessages += p.count;
          this.status.shippedBundles += 1;
          this.status.shippedBytes += st?.size ?? 0;
          if (st) this.opts.onShipped?.(this.channel.peer, now() - st.mtimeMs);
        }
      }
      this.published.delete(name);
      this.uploaded.delete(name);
    }
    if (forgot > 0) {
      await fsyncDir(this.channel.out).catch(() => undefined);
      this.status.lastSuccess = now();
      this.lastProgress = performance.now();
      this.log.debug({ peer: this.channel.peer, bundles: forgot }, 'receipt proves bundles delivered');
    }
    return left;
  }

  /** Acts on the receipt's refusals of bundles we still hold. Returns the names still waiting, or undefined after a switch. */
  private async applyRefusals(names: string[], r: Receipt): Promise<string[] | undefined> {
    const left = new Set(names);
    for (const f of r.refused) {
      const name = names.find((n) => {
        const p = parseBundleName(n);
        return p !== undefined && refusalMatches(f, p);
      });
      if (name === undefined) continue;
      if (f.gap === true) {
        // A gap record is never given up (its dead letter would leave the receiver waiting for it for ever): it is
        // uploaded again, and the refusal logged for an operator.
        this.log.error({ peer: this.channel.peer, bundle: name, code: f.code, reason: f.reason }, 'the receiver refused a gap record of ours; uploading it again (the channel waits until it is accepted)');
        continue;
      }
      if (FINAL_REFUSALS.has(f.code) && refusalIsFinal(f, await this.ownCopy(name))) {
        // A name is never reused once its bundle is in out/ (a new epoch means new names): the refusal is of these bytes.
        await this.giveUp(name, `refused by ${this.channel.peer} (${f.code}): ${f.reason}`);
        left.delete(name);
        continue;
      }
      // Each other refusal entry is answered once (by uploading again); the receipt lists it for a while longer.
      const entry = `${name}@${f.at}`;
      if (this.answered.has(entry)) continue;
      this.answered.add(entry);
      if (this.answered.size > 1024) this.answered.delete(this.answered.values().next().value as string);
      this.published.delete(name);
      this.uploaded.delete(name);
      if (EPOCH_REFUSALS.has(f.code)) {
        await this.switchTo(f.epoch, `the receiver refused ${name}: ${f.reason}`);
        return undefined;
      }
      this.log.warn({ peer: this.channel.peer, bundle: name, code: f.code, reason: f.reason }, FINAL_REFUSALS.has(f.code)
        ? 'the receiver refused an entry under the name of a bundle of ours, for a cause our copy does not have (made by our login?); uploading it again'
        : 'the receiver refused a bundle of ours as damaged; uploading it again');
    }
    return names.filter((n) => left.has(n));
  }

  /** What our copy of `name` says for checking a refusal: its size, and whether the key it is sealed with expired here too. */
  private async ownCopy(name: string): Promise<{ size: number | undefined; keyExpired: boolean }> {
    const fh = await fsp.open(join(this.channel.out, name), 'r').catch(() => undefined);
    if (fh === undefined) return { size: undefined, keyExpired: false };
    let size: number;
    let id: string | undefined;
    try {
      size = (await fh.stat()).size;
      id = keyIdOf(fh.fd);
    } finally {
      await fh.close();
    }
    let keyExpired = false;
    if (id !== undefined) {
      try {
        this.opts.keys.open(id);
      } catch (err) {
        keyExpired = isFerryError(err, 'EKEY_EXPIRED');
      }
    }
    return { size, keyExpired };
  }

  /** Gives up on bundles that outlived the message lifetime: dead letter, and a gap record in their place. */
  private async expire(names: string[]): Promise<void> {
    for (const name of names) {
      const p = parseBundleName(name);
      if (p === undefined || p.gap) continue;
      const st = await fsp.stat(join(this.channel.out, name)).catch(() => undefined);
      if (st === undefined || now() - st.mtimeMs <= this.lifetimeMs) continue;
      await this.giveUp(name, `not delivered to ${this.channel.peer} within its lifetime (${Math.round(this.lifetimeMs / 1000)} s); last error: ${this.status.lastError?.message ?? this.receipt?.blocked?.reason ?? 'none'}`);
    }
  }

  private async giveUp(name: string, reason: string): Promise<void> {
    const p = parseBundleName(name);
    if (p === undefined || p.gap) return; // a gap record is what giving up leaves behind: never given up itself
    if (this.published.has(name)) await this.transport.remove(name).catch(() => undefined);
    this.published.delete(name);
    this.uploaded.delete(name);
    const gap = await deadLetterWithGap({ channel: this.channel, self: this.opts.self, key: this.opts.keys.seal(), deadDir: join(this.opts.deadDir, this.channel.peer) }, name, p, reason, this.ackedFor(p.epoch, p.channel));
    this.status.deadBundles += 1;
    this.log.error({ peer: this.channel.peer, bundle: name, gap, reason }, 'bundle moved to dead letters; a gap record tells the receiver');
  }

  private async switchTo(floor: number, reason: string): Promise<void> {
    const before = (await listDir(this.channel.out)).filter((n) => parseBundleName(n) !== undefined);
    await switchEpoch({ channel: this.channel, self: this.opts.self, sealKey: this.opts.keys.seal, openKeys: this.opts.keys.open, lock: this.opts.lock, log: this.log }, floor, reason);
    // The old epoch's uploads are worth nothing now: remove them (best effort; the receiver refuses them anyway).
    for (const name of before) if (this.published.has(name)) await this.transport.remove(name).catch(() => undefined);
    this.published.clear();
    this.uploaded.clear();
    this.listedSinceStart = false;
  }

  /**
   * Lists the landing directory: what is there already after a restart counts as published, and what we published
   * but is gone without a receipt covering it (read after the listing, so a delivery in between is seen) is uploaded again.
   */
  private async reconcile(names: string[]): Promise<void> {
    const there = new Set((await this.transport.list()).map((e) => e.name));
    const r = await fetchReceipt(this.transport, this.opts.keys.open, this.opts.self);
    for (const name of names) {
      const p = parseBundleName(name);
      if (p === undefined) continue;
      if (there.has(name) && !this.published.has(name)) this.published.set(name, now());
      if (!there.has(name) && this.published.has(name) && !covers(r, p)) {
        this.log.warn({ peer: this.channel.peer, bundle: name }, 'a published bundle vanished from the landing directory before any receipt covered it; uploading it again');
        this.published.delete(name);
      }
    }
    this.listedSinceStart = true;
    this.lastProgress = performance.now();
  }

  /** Uploads the next bundles in parallel and publishes them in order, within the window. Returns whether any was published. */
  private async uploadAndPublish(names: string[]): Promise<boolean> {
    const room = this.window - this.published.size;
    const next = names.filter((n) => !this.published.has(n)).slice(0, Math.max(0, Math.min(this.pipeline, room)));
    if (next.length === 0) return false;
    const uploads = next.map((name) =>
      this.uploaded.has(name) ? Promise.resolve() : this.transport.upload(join(this.channel.out, name), name).then(() => { this.uploaded.add(name); }),
    );
    uploads.forEach((u) => u.catch(() => undefined));
    let published = 0;
    try {
      for (const [i, name] of next.entries()) {
        await uploads[i];
        crashPoint('ship.after-upload-all');
        const result = await this.transport.publish(join(this.channel.out, name), name);
        crashPoint('ship.after-publish');
        this.uploaded.delete(name);
        this.published.set(name, now());
        published += 1;
        if (result === 'replaced') this.log.warn({ peer: this.channel.peer, bundle: name, code: 'ECOLLISION' }, 'replaced other bytes found under the name of one of our bundles');
      }
    } finally {
      await Promise.allSettled(uploads);
    }
    if (published > 0) this.lastProgress = performance.now();
    return published > 0;
  }
}
