// Bounded memory: a 1 GiB payload streams from writer to reader through a small in-memory pipe.

import { describe, expect, it } from 'vitest';
import { readSealedBundle, sodiumReady, writeSealedBundle, type ByteSink, type OutgoingMessage } from '../../src/envelope/index.js';
import { header, lookup, makeKey, meta } from './helpers.js';

/** An in-memory pipe holding at most `capacity` bytes: `write` waits for room, iteration waits for data. */
class BoundedPipe implements ByteSink, AsyncIterable<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private bytes = 0;
  private closed = false;
  private wakeReader: (() => void) | undefined;
  private wakeWriter: (() => void) | undefined;

  constructor(private readonly capacity: number) {}

  async write(chunk: Uint8Array): Promise<void> {
    while (this.bytes > 0 && this.bytes + chunk.length > this.capacity) {
      await new Promise<void>((resolve) => (this.wakeWriter = resolve));
    }
    this.queue.push(chunk);
    this.bytes += chunk.length;
    this.wakeReader?.();
  }

  close(): void {
    this.closed = true;
    this.wakeReader?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        this.bytes -= next.length;
        this.wakeWriter?.();
        yield next;
      } else if (this.closed) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
      }
    }
  }
}

const MiB = 1024 * 1024;

/** Streams `size` bytes through seal → pipe → open; returns the peak RSS seen and what arrived. */
async function stream(size: number): Promise<{ peakRss: number; received: number; markers: number }> {
  await sodiumReady();
  const key = makeKey();
  const pipe = new BoundedPipe(4 * MiB);
  let peakRss = 0;
  const sample = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  };
  const msg: OutgoingMessage = {
    meta: { ...meta(1), size },
    async *payload() {
      // A rotation of four buffers: the writer may hold one chunk after asking for the next, never three.
      const ring = Array.from({ length: 4 }, () => new Uint8Array(MiB));
      for (let at = 0, i = 0; at < size; at += MiB, i++) {
        const chunk = (ring[i % 4] as Uint8Array).subarray(0, Math.min(MiB, size - at));
        chunk[0] = i & 0xff; // cheap marker per chunk
        chunk[chunk.length - 1] = (i * 7) & 0xff;
        yield chunk;
      }
    },
  };
  const writing = writeSealedBundle(pipe, key, header(), [msg]).finally(() => pipe.close());
  let received = 0;
  let markers = 0;
  let n = 0;
  const reading = readSealedBundle(pipe, lookup(key), 'beta', {
    onMessage: async () => ({
      write: async (c) => {
        // Check the markers of every 1 MiB source chunk that falls inside this piece.
        const start = received;
        const end = start + c.length;
        for (let i = Math.ceil(start / MiB); i * MiB < end; i++) {
          if (c[i * MiB - start] !== (i & 0xff)) throw new Error(`bad first byte of chunk ${i}`);
          markers++;
        }
        for (let j = Math.ceil((start + 1) / MiB); j * MiB <= end; j++) {
          // chunk j-1 ends at j MiB - 1
          if (c[j * MiB - 1 - start] !== (((j - 1) * 7) & 0xff)) throw new Error(`bad last byte of chunk ${j - 1}`);
          markers++;
        }
        received = end;
        if (++n % 64 === 0) sample();
      },
      end: async () => undefined,
    }),
  });
  await Promise.all([writing, reading]);
  sample();
  return { peakRss, received, markers };
}

describe('bounded memory', () => {
  it('a 1 GiB payload streams through seal and open with less than 64 MiB of RSS growth', { timeout: 180_000 }, async () => {
    await stream(32 * MiB); // warm up: WASM heap, JIT, pools
    const baseline = process.memoryUsage.rss();
    const started = performance.now();
    const { peakRss, received, markers } = await stream(1024 * MiB);
    const seconds = (performance.now() - started) / 1000;
    expect(received).toBe(1024 * MiB);
    expect(markers).toBe(2 * 1024);
    const growth = peakRss - baseline;
    console.log(`1 GiB through seal+open in ${seconds.toFixed(1)} s, RSS growth ${(growth / MiB).toFixed(1)} MiB`);
    expect(growth).toBeLessThan(64 * MiB);
  });
});
