// Delivering every peer's landing directory into the inboxes: in strict order, exactly once, trusting nothing a peer wrote.
//
// Each peer uploads into its own directory, landing/<peer>/, reachable only by that peer's login. The receiver pins
// each directory by descriptor, re-verifies it on every pass, and reaches entries only through it (pinned-dir.ts).
// Per pass and peer: scan (bounded), deliver the bundles that continue the channel in order (bundle-delivery.ts,
// channel-decision.ts), refuse what fails (copied into quarantine), write the peer's sealed receipt, and only then
// remove the delivered files: a sender that finds a file gone always finds a receipt covering it, or uploads again.
import { closeSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, isFerryError, messageOf } from '../errors.js';
import { openReceipt, sealReceipt, type BundleHeader, type KeyLookup, type Receipt, type ReceiptRefusal, type SealKey, RECEIPT_MAX_BYTES, RECEIPT_MAX_REFUSED, RECEIPT_NAME } from '../envelope/index.js';
import { decide } from './channel-decision.js';
import { parseBundleName } from '../envelope/bundle-name.js';
import type { Log } from '../channel/acceptor.js';
import { completePublish, type DeliveryItem } from '../inbox/delivery.js';
import { ensureDir, listDir, unlinkIfExists } from '../maildir/fsx.js';
import { crashPoint } from '../spool/crash-point.js';
import { isHostName } from '../spool/names.js';
import type { Spool } from '../spool/spool.js';
import { deliverBundle, isDiskFull, openLanding, type Outcome } from './bundle-delivery.js';
import { scanLanding, type Candidate } from './landing-scan.js';
import { DEFAULT_RECEIVE_LIMITS, type ReceiveLimits } from './limits.js';
import { OriginStates, resynced, type OriginAlarm } from './origin-state.js';
import { PinnedDir } from './pinned-dir.js';
import { Quarantine, type QuarantineBounds } from './quarantine.js';
import { keyIdOf } from '../envelope/wire-format.js';
import { journalFile, pendingJournals, readJournal, retainedName, type Journal } from './receive-journal.js';
import { now } from '../clock.js';

/** Receiver settings. Every field has a default. */
export interface ReceiverOptions {
  /** Limits on what any peer may make this host read and write. Default {@link DEFAULT_RECEIVE_LIMITS}. */
  limits?: Partial<ReceiveLimits>;
  /** The key that seals receipts for `peer` (the pair key's newest, or this host's own for itself); undefined: none yet. */
  receiptKey?: (peer: string) => SealKey | undefined;
  /** The owner every landing directory must have. Default: this process's uid. */
  uid?: number;
  /** An upload untouched this long is abandoned and removed, ms. Default 36 h. */
  partStaleMs?: number;
  /** Most entries looked at per landing directory per pass. Default 100 000. */
  scanMax?: number;
  /** How much quarantine keeps per peer (see {@link QuarantineBounds}). */
  quarantine?: Partial<QuarantineBounds>;
  /**
   * Most landing files one peer has acted on (delivered, refused, removed) in one pass; the rest wait for the next
   * pass, after every other peer had its turn. Keeps a peer that floods its directory from starving the others.
   * Default 256.
   */
  perPass?: number;
}

/** Totals since start, for metrics. */
export interface ReceiverCounters {
  bundles: number;
  delivered: number;
  duplicates: number;
  quarantined: number;
  gaps: number;
  hostile: number;
  /** Quarantine entries removed to keep it within its bounds (oldest first). */
  quarantinePruned: number;
  lastError?: { at: number; message: string };
  lastDelivery?: number;
}

/** One peer's landing directory as `ferry status` shows it. */
export interface LandingStatus {
  peer: string;
  /** Bundles waiting in the directory. */
  waiting: number;
  /** Uploads in progress. */
  uploading: number;
  /** The epoch being delivered and its delivered mark. */
  current: { epoch: number; channel: string; hwm: number } | null;
  /** Why nothing moves, since when, at which sequence (null: it moves, or nothing waits). */
  blocked: { seq: number; since: number; code: string; reason: string } | null;
  alarm: OriginAlarm | null;
  delivered: number;
  gaps: number;
  refused: number;
  hostile: number;
  lastDelivery: number | null;
  /** The directory itself is refused (a symlink, a wrong owner or mode…). */
  error: string | null;
}

interface PeerSlot {
  peer: string;
  dir: PinnedDir | undefined;
  /**
   * The sealed header of each file held back (waiting for an earlier sequence), keyed by name and checked against
   * the file's identity: a held file is read once, not once per pass, and its name is never trusted for its place.
   */
  held: Map<string, { ino: number; size: number; mtimeMs: number; header: BundleHeader }>;
  refused: ReceiptRefusal[];
  blockedAt: { seq: number; since: number } | undefined;
  tight: Set<string>;
  view: LandingStatus;
  receiptDirty: boolean;
  /** The receipt file as this host last wrote it: anything else there (a peer's own) is replaced. */
  wroteReceipt: { ino: number; size: number; mtimeMs: number } | undefined;
  loggedError: string | undefined;
}

/** Turns every landing directory into inbox messages. One per daemon. */
export class Receiver {
  readonly states: OriginStates;
  readonly quarantine: Quarantine;
  readonly counters: ReceiverCounters = { bundles: 0, delivered: 0, duplicates: 0, quarantined: 0, gaps: 0, hostile: 0, quarantinePruned: 0 };
  /** Whether the last pass left files unread because a peer used up its share ({@link ReceiverOptions.perPass}). */
  more = false;
  private readonly limits: ReceiveLimits;
  private readonly slots = new Map<string, PeerSlot>();
  private readonly uid: number;

  constructor(private readonly spool: Spool, private readonly keys: KeyLookup, private readonly log: Log, private readonly opts: ReceiverOptions = {}) {
    this.states = new OriginStates(spool.layout.receive);
    this.quarantine = new Quarantine(spool.layout.quarantine, opts.quarantine);
    this.limits = { ...DEFAULT_RECEIVE_LIMITS, ...opts.limits };
    this.uid = opts.uid ?? process.geteuid?.() ?? 0;
  }

  /**
   * Loads the delivered state, makes this host's own landing directory, finishes deliveries a crash interrupted,
   * and checks the state against the receipts this host last wrote (see {@link checkAgainstReceipts}).
   */
  async recover(): Promise<void> {
    await this.states.load();
    await ensureDir(join(this.spool.layout.landing, this.spool.host));
    for (const j of await pendingJournals(this.spool.layout.receive)) {
      this.log.info({ peer: j.peer, landing: j.landing, messages: j.items.length }, 'finishing a delivery interrupted by a crash');
      await this.finish(j);
    }
    await this.checkAgainstReceipts();
  }

  /**
   * A receipt is written after the state it reports is durable, so it never runs ahead of it — unless the state was
   * lost or restored from an older copy. Each landing directory keeps the last receipt this host wrote (sealed by
   * us, outside state/): when it proves more delivered than the state now says, delivering on could deliver twice
   * (a replay of the epoch's first bundle carries no acked mark to catch it), so the channel stops with
   * EDEDUPE_ROLLBACK until an operator runs `ferry receive resync`. A receipt that is missing, or not ours, proves nothing.
   */
  private async checkAgainstReceipts(): Promise<void> {
    for (const peer of await this.peerDirs()) {
      const s = this.slot(peer);
      const dir = this.pin(s);
      if (dir === undefined) continue;
      const opened = dir.openRead(RECEIPT_NAME);
      if (opened === undefined || opened.fd < 0) continue;
      let written: Receipt;
      try {
        if (!opened.stat.isFile() || opened.stat.size > RECEIPT_MAX_BYTES) continue;
        const buf = Buffer.alloc(opened.stat.size);
        readSync(opened.fd, buf, 0, buf.length, 0);
        written = openReceipt(buf, this.keys, peer, this.spool.host);
      } catch {
        continue; // not a receipt of ours (a peer can put anything there): it proves nothing
      } finally {
        closeSync(opened.fd);
      }
      const rec = this.states.get(peer);
      const w = written.current;
      if (w === null || rec.alarm !== null) continue;
      const behind = rec.current === null || rec.current.epoch < w.epoch || (rec.current.epoch === w.epoch && rec.current.hwm < w.hwm);
      if (!behind) continue;
      const reason = `this host once proved sequences up to ${w.hwm} of epoch ${w.epoch} from ${peer} delivered (its receipt says so), but its receive state now says ${rec.current === null ? 'nothing' : `${rec.current.hwm} of epoch ${rec.current.epoch}`}: the state was lost or restored from an older copy; once you know which messages are missing, run \`ferry receive resync ${peer}\``;
      await this.states.save(peer, { ...rec, alarm: { code: 'EDEDUPE_ROLLBACK', reason, since: now(), epoch: w.epoch, channel: w.channel, acked: w.hwm } });
      this.log.error({ peer, code: 'EDEDUPE_ROLLBACK', reason }, 'channel stopped: nothing more is delivered from this peer until the cause is fixed');
    }
  }

  /** One pass over every landing directory. Returns how many bundles were delivered. Throws the first local failure, after every peer had its turn. */
  async processOnce(): Promise<number> {
    let delivered = 0;
    let firstError: unknown;
    this.more = false;
    for (const peer of await this.peerDirs()) {
      try {
        delivered += await this.processPeer(this.slot(peer));
      } catch (err) {
        firstError ??= err;
        this.counters.lastError = { at: now(), message: messageOf(err) };
      }
    }
    if (firstError !== undefined) throw firstError;
    return delivered;
  }

  /** The landing directories as status shows them. */
  status(): LandingStatus[] {
    return [...this.slots.values()].map((s) => ({ ...s.view, alarm: this.states.get(s.peer).alarm, current: pickMark(this.states.get(s.peer).current) }));
  }

  /** Clears a channel's alarm after an operator looked at it (`ferry receive resync PEER`, see {@link resynced}). Returns what was cleared. */
  async resync(peer: string): Promise<OriginAlarm | null> {
    const rec = this.states.get(peer);
    const next = resynced(rec, now());
    if (next === undefined) return null;
    await this.states.save(peer, next);
    this.log.warn({ peer, code: rec.alarm?.code, hwm: next.current?.hwm }, 'channel resynchronised by the operator');
    const s = this.slots.get(peer);
    if (s) s.receiptDirty = true;
    return rec.alarm;
  }

  /**
   * Forgets every pinned landing directory, so the next pass pins them afresh (on a reload, after an operator fixed
   * or re-made one that was refused as replaced).
   */
  repin(): void {
    for (const s of this.slots.values()) {
      s.dir?.close();
      s.dir = undefined;
      s.held.clear();
    }
  }

  /** landing/* entries that name a host (anything else there is not a peer's and is left to doctor). */
  private async peerDirs(): Promise<string[]> {
    return (await listDir(this.spool.layout.landing)).filter((n) => isHostName(n)).sort();
  }

  private slot(peer: string): PeerSlot {
    let s = this.slots.get(peer);
    if (s === undefined) {
      s = {
        peer, dir: undefined, held: new Map(), refused: [], blockedAt: undefined, tight: new Set(), receiptDirty: true, wroteReceipt: undefined, loggedError: undefined,
        view: { peer, waiting: 0, uploading: 0, current: null, blocked: null, alarm: null, delivered: 0, gaps: 0, refused: 0, hostile: 0, lastDelivery: null, error: null },
      };
      this.slots.set(peer, s);
    }
    return s;
  }

  /** Pins the directory on first use and re-verifies it on every later one. A refused directory stops only its own peer. */
  private pin(s: PeerSlot): PinnedDir | undefined {
    const path = join(this.spool.layout.landing, s.peer);
    try {
      if (s.dir === undefined) s.dir = PinnedDir.open(path, { uid: this.uid, allow: s.peer === this.spool.host ? 0 : 0o2070 });
      else s.dir.verify();
      s.view.error = null;
      s.loggedError = undefined;
      return s.dir;
    } catch (err) {
      const message = messageOf(err);
      s.view.error = message;
      if (s.loggedError !== message) this.log.error({ peer: s.peer, path, code: isFerryError(err) ? err.code : undefined, err: message }, 'landing directory refused; nothing is read from it');
      s.loggedError = message;
      return undefined;
    }
  }

  private async processPeer(s: PeerSlot): Promise<number> {
    const dir = this.pin(s);
    if (dir === undefined) return 0;
    const scan = scanLanding(dir, { max: this.opts.scanMax ?? 100_000, partStaleMs: this.opts.partStaleMs ?? 36 * 3600_000, maxFileBytes: this.limits.maxBundleBytes });
    if (scan.junkRemoved > 0) {
      this.counters.hostile += scan.junkRemoved;
      s.view.hostile += scan.junkRemoved;
      this.log.warn({ peer: s.peer, removed: scan.junkRemoved, kinds: scan.junkKinds }, 'removed entries no ferry sender makes from a landing directory');
    }
    s.view.uploading = scan.uploading;
    for (const o of scan.oversized) {
      const err = new FerryError('EENVELOPE_TOO_LARGE', `the upload of ${o.name} from ${s.peer} grew past ${this.limits.maxBundleBytes} bytes, the most this host reads (receive.max_bundle_bytes); it was cut and removed`, { peer: s.peer });
      this.refuse(s, o.name, err, { limit: this.limits.maxBundleBytes });
    }
    const candidates = scan.candidates.sort((a, b) => compare(a, b));
    const done: string[] = [];
    let delivered = 0;
    let blocked: { seq: number; code: string; reason: string } | undefined;
    let firstError: unknown;
    const seen = new Set(candidates.map((c) => c.name));
    for (const name of s.held.keys()) if (!seen.has(name)) s.held.delete(name);
    const holds: Array<{ seq: number; code: string; reason: string }> = [];
    let budget = this.opts.perPass ?? 256;
    for (const c of candidates) {
      const rec = this.states.get(s.peer);
      const cached = this.heldHeader(s, dir, c.name);
      if (cached !== undefined) {
        const d = decide(rec, cached, s.peer);
        if (d.kind === 'hold') {
          holds.push({ seq: d.seq, code: d.code, reason: d.reason });
          continue;
        }
      }
      if (budget <= 0) {
        this.more = true; // this peer's share of the pass is used up (a held file costs none): the rest next pass
        break;
      }
      try {
        const r = await this.processOne(s, dir, c.name);
        if (r.kind !== 'held') budget -= 1; // holds (a gap, an unknown key) cost nothing: they wait, nothing is written
        if (r.kind === 'delivered' || r.kind === 'retransmission') done.push(c.name);
        if (r.kind === 'delivered') delivered += 1;
        if (r.kind === 'held') {
          holds.push({ seq: r.seq, code: r.code, reason: r.reason });
          this.rememberHeld(s, dir, c.name, r.header);
        }
      } catch (err) {
        // Local trouble (a full disk…): the rest of this channel waits behind it, other peers go on.
        firstError = err;
        holds.unshift({ seq: (this.states.get(s.peer).current?.hwm ?? 0) + 1, code: isFerryError(err) ? err.code : 'EDISK_FULL', reason: messageOf(err) });
        break;
      }
    }
    const alarm = this.states.get(s.peer).alarm;
    // What status shows: an alarm first, then a full disk, then a bundle waiting for its key, then the gap itself.
    if (alarm !== null && candidates.length > done.length) blocked = { seq: (this.states.get(s.peer).current?.hwm ?? 0) + 1, code: alarm.code, reason: alarm.reason };
    else blocked = holds.find((h) => h.code !== 'EGAP') ?? holds[0];
    this.updateView(s, candidates.length - done.length, blocked);
    await this.writeReceipt(s, dir);
    // After the receipt: a sender that sees a file gone must find a receipt covering it, or it uploads again.
    crashPoint('receive.before-landing-unlink');
    for (const name of done) dir.unlink(name);
    // Durable removals: else a power cut brings back bundles delivered long ago, past the id window, and they are
    // refused (and quarantined) as replays too old to compare.
    if (done.length > 0) dir.sync();
    if (firstError !== undefined) throw firstError;
    return delivered;
  }

  /** The cached sealed header of a held file, if the file is still the one it was read from. */
  private heldHeader(s: PeerSlot, dir: PinnedDir, name: string): BundleHeader | undefined {
    const h = s.held.get(name);
    if (h === undefined) return undefined;
    const st = dir.lstat(name);
    if (st === undefined || st.ino !== h.ino || st.size !== h.size || st.mtimeMs !== h.mtimeMs) {
      s.held.delete(name);
      return undefined;
    }
    return h.header;
  }

  private rememberHeld(s: PeerSlot, dir: PinnedDir, name: string, header: BundleHeader | undefined): void {
    const st = dir.lstat(name);
    if (header === undefined || st === undefined) return;
    s.held.set(name, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, header });
  }

  /** Delivers (or refuses, or holds) one landing file, all its rounds. */
  private async processOne(s: PeerSlot, dir: PinnedDir, name: string): Promise<Outcome> {
    for (;;) {
      // A round that journaled and then failed part-way is finished from its journal, never decoded again.
      const pending = await readJournal(this.spool.layout.receive, s.peer, name);
      if (pending) {
        await this.finish(pending);
        if (pending.partial) continue;
        return { kind: 'delivered', journal: pending };
      }
      const opened = openLanding(dir, name, this.limits.maxBundleBytes);
      if ('kind' in opened) return this.settle(s, dir, name, opened, undefined);
      try {
        if (opened.size < 0) {
          const err = new FerryError('EENVELOPE_TOO_LARGE', `${name} from ${s.peer} holds ${-opened.size} bytes; this host reads at most ${this.limits.maxBundleBytes} (receive.max_bundle_bytes)`, { peer: s.peer });
          return await this.settle(s, dir, name, { kind: 'refused', err }, { fd: opened.fd, size: -opened.size });
        }
        let outcome: Outcome;
        try {
          outcome = await deliverBundle({ spool: this.spool, states: this.states, keys: this.keys, limits: this.limits, roundLimit: s.tight.has(name) ? 1 : Number.POSITIVE_INFINITY }, s.peer, name, opened.fd, opened.size);
        } catch (err) {
          if (isDiskFull(err)) s.tight.add(name);
          throw err;
        }
        if (outcome.kind === 'delivered' || outcome.kind === 'partial') {
          await this.finish(outcome.journal);
          if (outcome.kind === 'partial') continue;
          s.tight.delete(name);
          return outcome;
        }
        return await this.settle(s, dir, name, outcome, opened);
      } finally {
        closeSync(opened.fd);
      }
    }
  }

  /** Acts on an outcome that delivered nothing: refuse into quarantine, drop a retransmission, remove a hostile entry, log a hold or alarm. */
  private async settle(s: PeerSlot, dir: PinnedDir, name: string, o: Outcome, open: { fd: number; size: number } | undefined): Promise<Outcome> {
    switch (o.kind) {
      case 'refused': {
        if (open) {
          const removed = await this.quarantine.copyIn(s.peer, name, open.fd, open.size, o.err, keyIdOf(open.fd));
          if (removed > 0) {
            this.counters.quarantinePruned += removed;
            this.log.warn({ peer: s.peer, removed }, 'quarantine of this peer is at its bound (receive.quarantine_max_entries, quarantine_max_bytes): removed its oldest entries');
          }
        }
        dir.unlink(name);
        this.counters.quarantined += 1;
        this.refuse(s, name, o.err, o.header ? { header: o.header } : o.err.code === 'EENVELOPE_TOO_LARGE' ? { limit: this.limits.maxBundleBytes } : {});
        this.log.warn({ peer: s.peer, landing: name, code: o.err.code, reason: o.err.message }, 'bundle refused and quarantined');
        return o;
      }
      case 'hostile': {
        const st = dir.lstat(name);
        if (st?.isDirectory()) dir.removeTree(name);
        else dir.unlink(name);
        this.counters.hostile += 1;
        s.view.hostile += 1;
        this.log.warn({ peer: s.peer, landing: name, why: o.why }, 'removed a landing entry that is not a bundle file; it was never read');
        return o;
      }
      case 'retransmission':
        this.counters.duplicates += 1;
        this.log.info({ peer: s.peer, landing: name }, 'dropped a retransmitted bundle: every message in it was delivered already');
        return o;
      case 'alarm': {
        const a = this.states.get(s.peer).alarm;
        s.receiptDirty = true;
        this.log.error({ peer: s.peer, landing: name, code: a?.code, reason: a?.reason }, 'channel stopped: nothing more is delivered from this peer until the cause is fixed');
        return o;
      }
      default:
        return o;
    }
  }

  /**
   * Records a refusal for the peer's receipt (its sender decides from it whether to upload again or give up). A refusal
   * of bytes that authenticated names the bundle by its sealed header; any other names only the landing entry (which
   * the peer's login can make up), and its sender gives up on nothing for it unless it can check the cause on its own
   * bytes (`limit`: an upload cut for its size).
   */
  private refuse(s: PeerSlot, name: string, err: FerryError, about: { header?: BundleHeader; limit?: number } = {}): void {
    s.view.refused += 1;
    const p = refusalOf(name, err, about);
    if (p) s.refused = keepRefusals([...s.refused, p]);
    s.receiptDirty = true;
  }

  /** Applies a journaled round (idempotent): publish into new/, record the mark, keep the journal as the id window. */
  private async finish(j: Journal): Promise<void> {
    const rec = this.states.get(j.peer);
    if (rec.current !== null && (j.epoch < rec.current.epoch || (j.epoch === rec.current.epoch && j.hwm <= rec.current.hwm))) {
      // Applied already: the state is saved only after the publish was durable (new/ fsynced). A power cut can bring
      // back the journal (its move to done/ is not synced) and the messages' inbox tmp/ entries (nor are those): a
      // second publish would put a message a consumer already took back into new/. Only the leftovers go.
      await dropLeftovers(this.spool, j.items);
      await this.states.retain(j.peer, journalFile(this.spool.layout.receive, j), retainedName(j));
      return;
    }
    await completePublish(this.spool, j.items);
    for (const item of j.items) this.spool.inbox.invalidate(item.queue);
    crashPoint('receive.after-publish');
    if (rec.current === null || j.epoch > rec.current.epoch) {
      if (rec.current !== null) rec.previous = pickMark(rec.current);
      rec.current = { epoch: j.epoch, channel: j.channel, hwm: j.hwm, gaps: 0, since: now() };
    } else if (rec.current.epoch === j.epoch) {
      rec.current.hwm = Math.max(rec.current.hwm, j.hwm);
    }
    if (j.gap && rec.current) {
      rec.current.gaps += j.gap.count;
      this.counters.gaps += j.gap.count;
      this.log.warn({ peer: j.peer, epoch: j.epoch, first: j.gap.first, count: j.gap.count, reason: j.gap.reason }, 'gap record: the sender dead-lettered these sequences; delivery goes on after them');
    }
    rec.gen += 1;
    await this.states.save(j.peer, rec);
    await this.states.retain(j.peer, journalFile(this.spool.layout.receive, j), retainedName(j));
    const s = this.slot(j.peer);
    s.receiptDirty = true;
    s.view.delivered += j.items.length;
    s.view.lastDelivery = now();
    if (j.gap) s.view.gaps += j.gap.count;
    this.counters.bundles += 1;
    this.counters.delivered += j.items.length;
    this.counters.lastDelivery = now();
  }

  private updateView(s: PeerSlot, waiting: number, blocked: { seq: number; code: string; reason: string } | undefined): void {
    s.view.waiting = waiting;
    if (blocked === undefined) {
      if (s.blockedAt !== undefined) s.receiptDirty = true;
      s.blockedAt = undefined;
      s.view.blocked = null;
      return;
    }
    if (s.blockedAt?.seq !== blocked.seq) {
      s.blockedAt = { seq: blocked.seq, since: now() };
      s.receiptDirty = true;
    }
    s.view.blocked = { seq: blocked.seq, since: s.blockedAt.since, code: blocked.code, reason: blocked.reason };
  }

  /**
   * Seals and writes the peer's receipt when something changed, or when the file there is not the one this host
   * wrote (missing, or replaced by the peer). A failure is logged: the sender only waits longer.
   */
  private async writeReceipt(s: PeerSlot, dir: PinnedDir): Promise<void> {
    const there = dir.lstat(RECEIPT_NAME);
    const ours = s.wroteReceipt !== undefined && there !== undefined && there.isFile() && there.ino === s.wroteReceipt.ino && there.size === s.wroteReceipt.size && there.mtimeMs === s.wroteReceipt.mtimeMs;
    if (!s.receiptDirty && ours) return;
    const key = this.opts.receiptKey?.(s.peer);
    if (key === undefined) return;
    const rec = this.states.get(s.peer);
    const blocked = s.view.blocked ?? (rec.alarm ? { seq: (rec.current?.hwm ?? 0) + 1, since: rec.alarm.since, code: rec.alarm.code, reason: rec.alarm.reason } : null);
    const receipt: Receipt = {
      origin: this.spool.host, destination: s.peer, instance: this.states.instance, gen: rec.gen, written: now(),
      current: pickMark(rec.current), previous: rec.previous, gaps: rec.current?.gaps ?? 0,
      blocked: blocked === null ? null : { seq: blocked.seq, since: Math.floor(blocked.since), code: /^E[A-Z_]{1,40}$/.test(blocked.code) ? blocked.code : 'EGAP', reason: blocked.reason.slice(0, 1000) },
      refused: s.refused.map((r) => ({ ...r, reason: r.reason.slice(0, 1000) })),
    };
    try {
      dir.replace(RECEIPT_NAME, sealReceipt(key, receipt), 0o640);
      s.receiptDirty = false;
      const st = dir.lstat(RECEIPT_NAME);
      s.wroteReceipt = st === undefined ? undefined : { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      this.log.error({ peer: s.peer, err: messageOf(err) }, 'could not write the receipt for this peer; its sender keeps its bundles until one is written');
    }
  }
}

/** The epoch mark without its bookkeeping fields. */
function pickMark(m: { epoch: number; channel: string; hwm: number } | null): { epoch: number; channel: string; hwm: number } | null {
  return m === null ? null : { epoch: m.epoch, channel: m.channel, hwm: m.hwm };
}

/** The refusal a receipt reports for a landing file, from its name (the sender matches it to its own copy). */
function refusalOf(name: string, err: FerryError, about: { header?: BundleHeader; limit?: number }): ReceiptRefusal | undefined {
  const base = { code: err.code, reason: err.message, at: now() };
  const h = about.header;
  if (h !== undefined) return { epoch: h.epoch ?? 1, channel: h.channel, firstSeq: h.firstSeq, count: h.count, gap: h.kind === 'gap', authentic: true, ...base };
  const p = parseBundleName(name);
  if (!p) return undefined;
  return { epoch: p.epoch, channel: p.channel, firstSeq: p.firstSeq, count: p.count, gap: p.gap, ...(about.limit !== undefined ? { limit: about.limit } : {}), ...base };
}

function compare(a: Candidate, b: Candidate): number {
  return a.parts.epoch - b.parts.epoch || a.parts.firstSeq - b.parts.firstSeq || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** Removes the inbox tmp/ entries of an applied journal's messages that a power cut brought back (their new/ names are durable). */
async function dropLeftovers(spool: Spool, items: readonly DeliveryItem[]): Promise<void> {
  for (const item of items) {
    const tmp = join(spool.layout.inboxQueue(item.queue), 'tmp');
    await unlinkIfExists(join(tmp, item.name));
    await unlinkIfExists(join(tmp, `${item.name}.meta`));
  }
}

/**
 * The refusals a receipt carries, at most RECEIPT_MAX_REFUSED: past that the oldest unauthenticated ones go first, so
 * a login flooding its directory with junk under bundle names cannot push its sender's real refusals out of the receipt.
 */
function keepRefusals(list: ReceiptRefusal[]): ReceiptRefusal[] {
  // The same refusal twice (a replay planted under many names) says nothing more: the latest of them is kept.
  const key = (f: ReceiptRefusal) => `${f.epoch}/${f.channel}/${f.firstSeq}/${f.count}/${f.gap ?? false}/${f.code}/${f.authentic ?? false}`;
  const out = list.filter((f, i) => !list.slice(i + 1).some((g) => key(g) === key(f)));
  while (out.length > RECEIPT_MAX_REFUSED) {
    const i = out.findIndex((f) => f.authentic !== true);
    out.splice(i < 0 ? 0 : i, 1);
  }
  return out;
}

/** Number of quarantined bundles on disk. */
export async function quarantineCount(spool: Spool): Promise<number> {
  return new Quarantine(spool.layout.quarantine).count();
}
