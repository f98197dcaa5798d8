// The daemon: accepts outbox messages into channels, ships channels to peers, delivers the landing area.
import { readdirSync, watch as fsWatch, type FSWatcher as NodeFSWatcher } from 'node:fs';
import type { Server } from 'node:net';
import { watch, type FSWatcher } from 'chokidar';
import { pino, type Logger } from 'pino';
import { queueConfig, routeFor, type FerryConfig } from '../config/config.js';
import { FerryError, isFerryError, messageOf } from '../errors.js';
import { sodiumReady, type KeyLookup, type SealKey } from '../envelope/index.js';
import { KeyStore } from '../keys/index.js';
import { loadSelfKey, type SelfKey } from '../keys/self-key.js';
import { replaceFileDurable } from '../maildir/fsx.js';
import { Acceptor } from '../channel/acceptor.js';
import { Shipper, type PeerStatus } from '../channel/shipper.js';
import { DropIngester } from '../drop/drop-ingest.js';
import { Receiver, quarantineCount, type LandingStatus, type ReceiverCounters } from '../receive/receiver.js';
import { KeyedLock } from '../transport/keyed-lock.js';
import { PROBE_PREFIX } from '../spool/mount-probe.js';
import { isHostName, isQueueName } from '../spool/names.js';
import { Spool } from '../spool/spool.js';
import { LocalTransport, SftpTransport } from '../transport/index.js';
import type { Transport } from '../transport/transport.js';
import { acquireLock } from './lock.js';
import { Metrics } from './metrics.js';
import { basename, join } from 'node:path';
import { now } from '../clock.js';

/** Daemon settings beyond the config file. Every field has a default. */
export interface DaemonOptions {
  /** Where logs go. Default: JSON lines on stdout at the config's level. */
  logger?: Logger;
  /** Full rescan interval of the outbox and landing area (events are only hints), ms. Default 2 000. */
  rescanMs?: number;
  /** Lease and tmp recovery interval, ms. Default 30 000. */
  recoverMs?: number;
  /** How often drop/ is scanned for complete files, ms (settle times are checked at this granularity). Default 500. */
  dropScanMs?: number;
  /** How often the key directory is compared with its last load (catches chmod, which raises no file event), ms. Default 2 000. */
  keyRecheckMs?: number;
  /** Make a transport for a peer (tests swap in their own). Default: SFTP per the config, local for this host. */
  transportFor?: (peer: string) => Transport;
}

/** What `ferry status` reads from a running daemon. */
export interface DaemonStatus {
  pid: number;
  host: string;
  started: number;
  updated: number;
  peers: PeerStatus[];
  receiver: ReceiverCounters;
  /** Each peer's landing directory on this host: what waits, what is blocked and why. */
  landing: LandingStatus[];
  quarantine: number;
  lastAcceptError: { at: number; message: string } | null;
}

/** A running daemon for one spool. */
export class Daemon {
  readonly log: Logger;
  private spool!: Spool;
  private keys!: KeyStore;
  private selfKey!: SelfKey;
  private acceptor!: Acceptor;
  private receiver!: Receiver;
  private drop!: DropIngester;
  private dropBusy = false;
  private readonly shippers = new Map<string, Shipper>();
  private readonly shipperSignatures = new Map<string, string>();
  private lock: Server | undefined;
  private metrics: Metrics | undefined;
  private watcher: FSWatcher | undefined;
  /** Plain inotify watches on the message directories (see startWatching). */
  private readonly dirWatchers = new Map<string, NodeFSWatcher>();
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private acceptWake: (() => void) | undefined;
  private receiveWake: (() => void) | undefined;
  private acceptDirty = true;
  private receiveDirty = true;
  private writingStatus = false;
  private loops: Promise<void>[] = [];
  private readonly started = now();
  /** Accept passes and epoch switches both rewrite channel state: one at a time. */
  private readonly channelLock = new KeyedLock();
  private lastAcceptError: { at: number; message: string } | null = null;

  constructor(private config: FerryConfig, private readonly opts: DaemonOptions = {}) {
    this.log = opts.logger ?? pino({ level: config.logLevel, base: { host: config.host } });
  }

  /** Takes the spool lock, recovers, and starts every loop. Throws ELOCKED when another daemon runs. */
  async start(): Promise<void> {
    await sodiumReady();
    this.spool = await Spool.open(this.config.root, { host: this.config.host, leaseMs: this.config.leaseMs, maxAttempts: this.config.maxAttempts });
    this.lock = await acquireLock(this.config.root, async (line) => this.request(line.trim()));
    try {
      this.selfKey = await loadSelfKey(this.spool.layout.state, this.config.host);
      this.keys = new KeyStore(this.config.keys, {
        onReload: (ring, errors) => {
          for (const e of errors) this.log.error({ code: e.code, path: e.path }, e.message);
          const keyless = this.peersWithoutKey();
          if (keyless.length > 0) this.log.warn({ keys: ring.size, noKeyFor: keyless }, 'keys loaded, but no usable key for some peers: their messages wait in the outbox');
          else this.log.info({ keys: ring.size }, 'keys loaded');
          // Bundles waiting for a key they are sealed with are in their landing directories still: look again.
          this.receiveDirty = true;
          this.receiveWake?.();
          this.acceptor?.restartScan(); // messages held for want of a key go first, in order
          this.acceptDirty = true;
          this.acceptWake?.();
        },
        onError: (err) => this.log.error({ err: String(err) }, 'key directory watch failed'),
        // File events miss an in-place chmod (chokidar reports content changes only): compare the directory's
        // signature (modes included) at the rescan pace, so a key loosened to 0644 stops being used, and one
        // tightened back to 0600 is used again, within seconds rather than the store's default 30 s.
        recheckMs: this.opts.keyRecheckMs ?? 2_000,
      });
      await this.keys.start();
      this.acceptor = new Acceptor(this.spool, {
        destinations: (queue, to) => (to && to.length > 0 ? [...to] : routeFor(this.config, queue)),
        compression: (queue) => queueConfig(this.config, queue).compression,
        sealingKey: (peer) => this.sealingKey(peer),
        lifetimeMs: this.config.lifetimeMs,
        acked: (peer, state) => this.shippers.get(peer)?.ackedFor(state.epoch, state.channel) ?? 0,
        lock: (fn) => this.channelLock.run('channels', fn),
      }, this.log);
      await this.acceptor.recover();
      this.receiver = new Receiver(this.spool, this.openingKeys(), this.log, {
        limits: this.config.receive,
        quarantine: this.config.quarantine,
        receiptKey: (peer) => {
          try {
            return this.sealingKey(peer);
          } catch {
            return undefined; // no key for this peer yet: its receipt waits, and so does its channel
          }
        },
      });
      await this.receiver.recover();
      if (this.config.metrics) await this.startMetrics(this.config.metrics);
      this.drop = new DropIngester(this.spool, (queue) => queueConfig(this.config, queue).settle * 1000, this.log, (queue) => queueConfig(this.config, queue).commit === 'marker');
      await this.startShippers();
      this.startWatching();
      this.loops.push(this.acceptLoop(), this.receiveLoop());
      const rescan = this.opts.rescanMs ?? 2_000;
      this.timers.push(setInterval(() => { this.acceptDirty = true; this.receiveDirty = true; this.acceptWake?.(); this.receiveWake?.(); this.watchMessageDirs(); }, rescan));
      this.timers.push(setInterval(() => { this.spool.recover().catch((err: unknown) => this.log.error({ err: String(err) }, 'recovery pass failed')); }, this.opts.recoverMs ?? 30_000));
      this.timers.push(setInterval(() => { this.writeStatus().catch(() => undefined); }, 1_000));
      this.timers.push(setInterval(() => { this.ingestDrops(); }, this.opts.dropScanMs ?? 500));
      this.log.info({ root: this.config.root, peers: [...this.shippers.keys()], pid: process.pid }, 'ferry daemon started');
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Answers one control request: `status`, or `resync <peer>` (clears that channel's alarm). */
  private async request(line: string): Promise<unknown> {
    if (line === 'status') return this.status();
    const m = /^resync ([A-Za-z0-9][A-Za-z0-9._-]{0,63})$/.exec(line);
    if (m) {
      const cleared = await this.receiver.resync(m[1] as string);
      this.receiveDirty = true;
      this.receiveWake?.();
      return { cleared };
    }
    return { error: 'unknown request' };
  }

  /** Serves Prometheus metrics on a loopback address. */
  private async startMetrics(address: string): Promise<void> {
    this.metrics = new Metrics({
      peers: () => [...this.shippers.values()].map((s) => s.status),
      queues: async () => {
        const depths = await this.spool.outbox.depths();
        // Empty queues too: a gauge with no sample cannot be told apart from a missing one.
        const names = new Set([...depths.keys(), ...(await this.spool.outbox.queues()), ...(await this.spool.inbox.queues())]);
        const rows = [];
        for (const queue of names) {
          const c = await this.spool.inbox.counts(queue);
          rows.push({ queue, outbox: depths.get(queue)?.messages ?? 0, inbox: c.new, inFlight: c.leased + c.cur, dead: c.dead });
        }
        return rows;
      },
      receiver: () => this.receiver.counters,
    });
    await this.metrics.listen(address);
    this.log.info({ address }, 'metrics served at /metrics');
  }

  /** Applies a changed `metrics` address on reload: the old listener closes, the new one (if any) opens. */
  private async restartMetrics(address: string | undefined): Promise<void> {
    await this.metrics?.close();
    this.metrics = undefined;
    if (address === undefined) {
      this.log.info({}, 'metrics no longer served');
      return;
    }
    try {
      await this.startMetrics(address);
    } catch (err) {
      this.metrics = undefined;
      this.log.error({ address, err: messageOf(err) }, 'could not serve metrics at the new address; fix it and reload again');
    }
  }

  /** Commits complete files from drop/ into the outbox (one pass at a time). */
  private ingestDrops(): void {
    if (this.dropBusy || this.stopping) return;
    this.dropBusy = true;
    this.drop.ingestOnce()
      .then((n) => {
        if (n > 0) {
          this.acceptDirty = true;
          this.acceptWake?.();
        }
      })
      .catch((err: unknown) => this.log.error({ err: messageOf(err) }, 'drop ingestion failed; retrying'))
      .finally(() => { this.dropBusy = false; });
  }

  /** Peers (never this host) that messages may be routed to and that no unexpired key binds to this host. */
  private peersWithoutKey(): string[] {
    const missing: string[] = [];
    for (const peer of this.destinations()) {
      if (peer === this.config.host || !this.keys) continue;
      try {
        this.keys.ring.sealingKey(this.config.host, peer);
      } catch {
        missing.push(peer);
      }
    }
    return missing.sort();
  }

  private sealingKey(peer: string): SealKey {
    if (peer === this.config.host) return this.selfKey;
    return this.keys.ring.sealingKey(this.config.host, peer);
  }

  /** Every key this host holds, by id (this host's own included): what bundles, receipts and re-sealing open with. */
  private openingKeys(): KeyLookup {
    return (id) => (id === this.selfKey.id ? this.selfKey : this.keys.ring.openingKey(id));
  }

  private transportFor(peer: string): Transport {
    if (this.opts.transportFor) return this.opts.transportFor(peer);
    if (peer === this.config.host) return new LocalTransport({ peer, dir: join(this.spool.layout.landing, peer) });
    const p = this.config.peers.get(peer);
    if (!p) throw new FerryError('ECONFIG', `peer ${peer} is not configured`, { peer });
    return new SftpTransport({
      peer, host: p.host, port: p.port, username: p.user, identity: p.identity, knownHosts: p.knownHosts, remoteRoot: p.remoteRoot,
      // The peer delivers a bundle while it still sits in its landing area: never fill its disk past the point where it can.
      keepDeliveryRoom: true,
      // Not a child logger bound to { peer }: every transport line names its peer itself (a binding would repeat the key).
      logger: this.log as never,
    });
  }

  /** Destinations that need a shipper: every configured peer, and this host when a route names it. */
  private destinations(): string[] {
    const dests = new Set<string>(this.config.peers.keys());
    for (const list of this.config.routes.values()) for (const d of list) dests.add(d);
    return [...dests];
  }

  /** What a peer's shipper was built from: a reload that changes it (address, identity, known_hosts…) rebuilds the shipper. */
  private shipperSignature(peer: string): string {
    return JSON.stringify(this.config.peers.get(peer) ?? { local: peer === this.config.host });
  }

  private async startShippers(): Promise<void> {
    const wanted = new Set(this.destinations());
    for (const [peer, shipper] of this.shippers) {
      // A shipper keeps its transport for life, so one whose peer settings changed must be replaced, or a
      // repaired address would never be used.
      const changed = this.shipperSignatures.get(peer) !== this.shipperSignature(peer);
      if (!wanted.has(peer) || changed) {
        await shipper.stop();
        this.shippers.delete(peer);
        this.shipperSignatures.delete(peer);
        if (wanted.has(peer)) this.log.info({ peer }, 'peer settings changed; reconnecting with the new ones');
      }
    }
    for (const peer of wanted) {
      if (this.shippers.has(peer)) continue;
      const channel = this.acceptor.channel(peer);
      await channel.ensure();
      const shipper = new Shipper(channel, this.transportFor(peer), this.log, {
        self: this.config.host,
        keys: { seal: () => this.sealingKey(peer), open: this.openingKeys() },
        lock: (fn) => this.channelLock.run('channels', fn),
        pipeline: this.config.peers.get(peer)?.pipeline ?? 4,
        window: this.config.peers.get(peer)?.window ?? 32,
        lifetimeMs: this.config.lifetimeMs,
        deadDir: this.spool.layout.deadOut,
        onShipped: (p, ageMs) => this.metrics?.bundleLatency.observe({ peer: p }, ageMs / 1000),
      });
      this.shippers.set(peer, shipper);
      this.shipperSignatures.set(peer, this.shipperSignature(peer));
      shipper.start();
    }
  }

  /**
   * File events are only hints to look now; the periodic rescan catches anything they miss.
   *
   * chokidar watches the tree whose entries are few — the outbox's queue directories (a new queue)
   * and the drop area — but never a directory messages pile up in: for every watched directory it
   * keeps each entry's name, puts an inotify watch on each file and re-reads (and lstats) the whole
   * directory on every event. With 10^6 files in `outbox/<q>/new/` that was 2.2 GB of RSS and 17 s
   * before the first delivery (measured by `npm run bench:scale`). The message directories —
   * `state/commits/new/`, each `outbox/<q>/new/`, each `landing/<peer>/` — get one plain inotify watch each
   * (`fs.watch` on the directory: O(1) memory, no listing), used as a wake-up signal only.
   */
  private startWatching(): void {
    const l = this.spool.layout;
    const outboxBelow = (path: string) => (path.startsWith(`${l.outbox}/`) ? path.slice(l.outbox.length + 1).split('/') : undefined);
    this.watcher = watch([l.outbox, l.drop], {
      ignoreInitial: true,
      atomic: false,
      depth: 2,
      // Queue directories only: never descend into outbox/<q>/{new,tmp} (messages, and producers writing).
      // Probe files of a `ferry doctor` (possibly root's, unreadable to us) come and go: not worth a watch.
      ignored: (path: string) => basename(path).startsWith(PROBE_PREFIX) || (outboxBelow(path)?.length ?? 0) >= 2,
    });
    const onEvent = (path: string) => {
      if (path.startsWith(l.drop)) {
        this.ingestDrops();
      } else {
        this.watchMessageDirs(); // a new outbox queue: watch its new/
        this.acceptDirty = true;
        this.acceptWake?.();
      }
    };
    this.watcher.on('add', onEvent);
    this.watcher.on('change', (path: string) => { if (path.startsWith(l.drop)) this.ingestDrops(); });
    this.watcher.on('addDir', onEvent);
    this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'file watch error; relying on rescans'));
    this.watchMessageDirs();
  }

  /** Puts one inotify watch on each message directory not watched yet (called at start, on a new queue, and at each rescan). */
  private watchMessageDirs(): void {
    if (this.stopping) return;
    const l = this.spool.layout;
    const wakeAccept = () => { this.acceptDirty = true; this.acceptWake?.(); };
    const wakeReceive = () => { this.receiveDirty = true; this.receiveWake?.(); };
    const wanted = new Map<string, () => void>([[l.commitsNew, wakeAccept], [l.landing, wakeReceive]]);
    let queues: string[] = [];
    try {
      queues = readdirSync(l.outbox).filter(isQueueName);
      // Each peer's landing directory: a wake-up hint only (the receiver reaches its entries through a pinned descriptor).
      for (const peer of readdirSync(l.landing).filter(isHostName)) wanted.set(join(l.landing, peer), wakeReceive);
    } catch {
      // not there yet: the rescan looks again
    }
    for (const q of queues) wanted.set(l.outboxNew(q), wakeAccept);
    for (const [dir, wake] of wanted) {
      if (this.dirWatchers.has(dir)) continue;
      try {
        const w = fsWatch(dir, { persistent: false }, () => wake());
        w.on('error', () => { w.close(); this.dirWatchers.delete(dir); });
        this.dirWatchers.set(dir, w);
      } catch {
        // not there yet (a queue being created) or not watchable: the periodic rescan covers it
      }
    }
  }

  private waitFor(kind: 'accept' | 'receive', ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); resolve(); };
      const t = setTimeout(done, ms);
      if (kind === 'accept') this.acceptWake = done;
      else this.receiveWake = done;
    });
  }

  private async acceptLoop(): Promise<void> {
    let delay = 0;
    while (!this.stopping) {
      if (!this.acceptDirty) {
        await this.waitFor('accept', delay || 60_000);
        delay = 0;
        continue;
      }
      this.acceptDirty = false;
      try {
        for (;;) {
          const r = await this.acceptOnce();
          if (r === 0 || this.stopping) break;
        }
        this.lastAcceptError = null; // a whole pass went through: what failed before is fixed
      } catch (err) {
        this.lastAcceptError = { at: now(), message: messageOf(err) };
        this.log.error({ err: this.lastAcceptError.message }, 'accepting outbox messages failed; retrying');
        // Finish (or discard) what the failed pass left: a committed journal, tmp bundles, a stale sequence cache.
        await this.acceptor.recover().catch((recoverErr: unknown) => this.log.error({ err: String(recoverErr) }, 'accept recovery failed; retrying'));
        this.acceptDirty = true;
        delay = 1_000;
        await this.waitFor('accept', delay);
      }
    }
  }

  private async acceptOnce(): Promise<number> {
    const r = await this.acceptor.acceptOnce();
    for (const peer of r.bundles.keys()) this.shippers.get(peer)?.wake();
    if (r.messages > 0) this.log.debug({ messages: r.messages, bundles: Object.fromEntries(r.bundles) }, 'accepted');
    return r.messages;
  }

  private async receiveLoop(): Promise<void> {
    while (!this.stopping) {
      if (!this.receiveDirty) {
        await this.waitFor('receive', 60_000);
        continue;
      }
      this.receiveDirty = false;
      try {
        await this.receiver.processOnce();
        if (this.receiver.more) this.receiveDirty = true; // a peer used up its share: go round again at once
      } catch (err) {
        this.log.error({ err: messageOf(err) }, 'delivering into the inbox failed; the bundle stays in the landing area for a retry');
        this.receiveDirty = true;
        await this.waitFor('receive', 1_000);
      }
    }
  }

  /** Reloads the config file (routes, peers, queues) and the keys, as on SIGHUP. */
  async reload(config: FerryConfig): Promise<void> {
    if (config.root !== this.config.root || config.host !== this.config.host) {
      this.log.error({}, 'reload ignored: host and root cannot change while running; restart the daemon');
      return;
    }
    const metricsBefore = this.config.metrics;
    this.config = config;
    if (config.metrics !== metricsBefore) await this.restartMetrics(config.metrics);
    await this.keys.reload();
    this.receiver.repin(); // a landing directory an operator re-made is pinned afresh
    await this.startShippers();
    this.acceptor.restartScan(); // messages held for want of a route go first, in order
    this.acceptDirty = true;
    this.acceptWake?.();
    this.log.info({ peers: [...this.shippers.keys()] }, 'configuration reloaded');
  }

  /** Current status. */
  async status(): Promise<DaemonStatus> {
    const peers: PeerStatus[] = [];
    for (const s of this.shippers.values()) {
      await s.backlog().catch(() => undefined);
      const line = { ...s.status };
      // Messages without a key never reach the shipper, so it has no error of its own: say why nothing moves.
      if (line.peer !== this.config.host) {
        try {
          this.keys.ring.sealingKey(this.config.host, line.peer);
        } catch (err) {
          line.lastError = { at: now(), message: `no key: ${messageOf(err)}`, code: isFerryError(err) ? err.code : 'EKEY_NONE' };
        }
      }
      peers.push(line);
    }
    return {
      pid: process.pid, host: this.config.host, started: this.started, updated: now(), peers,
      receiver: { ...this.receiver.counters }, landing: this.receiver.status(), quarantine: await quarantineCount(this.spool), lastAcceptError: this.lastAcceptError,
    };
  }

  /**
   * Writes state/status.json. One write at a time: a tick that finds the last one still running is skipped (under a
   * flood a status could take longer than the 1-s tick, and overlapping ones piled up until the daemon ran out of memory).
   */
  private async writeStatus(): Promise<void> {
    if (this.writingStatus) return;
    this.writingStatus = true;
    try {
      await replaceFileDurable(join(this.spool.layout.state, 'status.json'), JSON.stringify(await this.status()));
    } finally {
      this.writingStatus = false;
    }
  }

  /** Stops: no new work, uploads and deliveries in flight finish, then the lock is released. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.acceptWake?.();
    this.receiveWake?.();
    await Promise.allSettled(this.loops);
    await Promise.allSettled([...this.shippers.values()].map((s) => s.stop()));
    await this.watcher?.close();
    for (const w of this.dirWatchers.values()) w.close();
    this.dirWatchers.clear();
    await this.metrics?.close();
    await this.keys?.stop();
    if (this.spool && this.receiver) await this.writeStatus().catch(() => undefined);
    await new Promise<void>((resolve) => (this.lock ? this.lock.close(() => resolve()) : resolve()));
    this.log.info({}, 'ferry daemon stopped');
  }
}
