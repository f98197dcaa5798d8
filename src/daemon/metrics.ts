// Prometheus metrics on a loopback address: what operators graph and alert on (prom-client).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { FerryError } from '../errors.js';

/** What the metrics read at scrape time. */
export interface MetricsSource {
  /** Per peer: backlog, oldest age, shipped counters, failures. */
  peers(): Array<{ peer: string; backlogMessages: number; backlogBundles: number; oldestMs: number | null; shippedMessages: number; shippedBytes: number; deadBundles: number; failures: number }>;
  /** Per queue: outbox and inbox depths, dead letters. */
  queues(): Promise<Array<{ queue: string; outbox: number; inbox: number; inFlight: number; dead: number }>>;
  /** Receiver counters. */
  receiver(): { delivered: number; duplicates: number; quarantined: number; bundles: number };
}

/** Parses `host:port` and refuses anything but a loopback address. */
export function parseLoopback(address: string): { host: string; port: number } {
  const m = /^(\[::1\]|::1|localhost|127(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new FerryError('ECONFIG', `expected \`metrics\` to be a loopback host:port such as 127.0.0.1:9464, got \`${address}\``);
  }
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

/** The daemon's metrics: a registry, the histogram the shippers feed, and the HTTP endpoint. */
export class Metrics {
  readonly registry = new Registry();
  /** Seconds from a bundle's creation to its durable publish at the peer. */
  readonly bundleLatency: Histogram<'peer'>;
  private server: Server | undefined;

  constructor(source: MetricsSource) {
    const r = this.registry;
    const peerGauge = (name: string, help: string, pick: (p: ReturnType<MetricsSource['peers']>[number]) => number) =>
      new Gauge({ name, help, labelNames: ['peer'], registers: [r], collect() { this.reset(); for (const p of source.peers()) this.set({ peer: p.peer }, pick(p)); } });
    const peerCounter = (name: string, help: string, pick: (p: ReturnType<MetricsSource['peers']>[number]) => number) =>
      new Counter({ name, help, labelNames: ['peer'], registers: [r], collect() { this.reset(); for (const p of source.peers()) this.inc({ peer: p.peer }, pick(p)); } });
    peerGauge('ferry_peer_backlog_messages', 'Messages sealed for the peer, not yet durable there.', (p) => p.backlogMessages);
    peerGauge('ferry_peer_backlog_bundles', 'Bundles waiting to be shipped to the peer.', (p) => p.backlogBundles);
    peerGauge('ferry_peer_oldest_seconds', 'Age of the oldest bundle waiting for the peer.', (p) => (p.oldestMs ?? 0) / 1000);
    peerGauge('ferry_peer_consecutive_failures', 'Shipping failures in a row (0 when healthy).', (p) => p.failures);
    peerCounter('ferry_sent_messages_total', 'Messages durably delivered to the peer\'s landing area.', (p) => p.shippedMessages);
    peerCounter('ferry_sent_bytes_total', 'Sealed bytes shipped to the peer.', (p) => p.shippedBytes);
    peerCounter('ferry_dead_bundles_total', 'Bundles moved to dead letters after their lifetime.', (p) => p.deadBundles);
    for (const [name, help, key] of [
      ['ferry_outbox_messages', 'Committed messages not yet accepted into channels.', 'outbox'],
      ['ferry_inbox_messages', 'Delivered messages waiting to be taken.', 'inbox'],
      ['ferry_inflight_messages', 'Messages taken by an open transaction.', 'inFlight'],
      ['ferry_dead_messages', 'Messages in the queue\'s dead-letter directory.', 'dead'],
    ] as const) {
      new Gauge({ name, help, labelNames: ['queue'], registers: [r], async collect() { this.reset(); for (const q of await source.queues()) this.set({ queue: q.queue }, q[key]); } });
    }
    for (const [name, help, key] of [
      ['ferry_delivered_messages_total', 'Messages delivered into this host\'s inboxes.', 'delivered'],
      ['ferry_duplicate_messages_total', 'Messages received again and not delivered twice.', 'duplicates'],
      ['ferry_quarantined_bundles_total', 'Bundles that failed verification and were quarantined.', 'quarantined'],
      ['ferry_received_bundles_total', 'Bundles delivered from the landing area.', 'bundles'],
    ] as const) {
      new Counter({ name, help, registers: [r], collect() { this.reset(); this.inc(source.receiver()[key]); } });
    }
    this.bundleLatency = new Histogram({
      name: 'ferry_bundle_ship_seconds', help: 'From a bundle\'s creation to its durable publish at the peer.', labelNames: ['peer'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [r],
    });
  }

  /** Serves GET /metrics on a loopback address. */
  async listen(address: string): Promise<void> {
    const { host, port } = parseLoopback(address);
    this.server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404).end('not found\n');
        return;
      }
      this.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(text);
      }, (err: unknown) => {
        res.writeHead(500).end(`${String(err)}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(port, host, () => resolve());
    });
  }

  /** Stops serving. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
