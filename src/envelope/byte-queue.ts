// A FIFO of byte chunks that hands out exact-length reads, copying only when a read spans chunks.

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0; // index of the first live chunk
  private offset = 0; // bytes already consumed from chunks[head]
  /** Bytes queued and not yet read. */
  available = 0;

  /** Queues `chunk` without copying it: the producer must not reuse it. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** The byte at `i` (< available) from the read position. */
  byteAt(i: number): number {
    let idx = this.head;
    let pos = this.offset + i;
    for (;;) {
      const c = this.chunks[idx] as Uint8Array;
      if (pos < c.length) return c[pos] as number;
      pos -= c.length;
      idx++;
    }
  }

  /** The u32 (big-endian) at `i` (i + 4 ≤ available). */
  u32At(i: number): number {
    return ((this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3)) >>> 0;
  }

  /** Exactly `n` (≤ available) bytes: a view when they sit in one chunk, else a copy. */
  read(n: number): Uint8Array {
    const first = this.chunks[this.head];
    if (n === 0 || first === undefined) return new Uint8Array(0);
    if (first.length - this.offset >= n) return this.readUpTo(n);
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const piece = this.readUpTo(n - filled);
      out.set(piece, filled);
      filled += piece.length;
    }
    return out;
  }

  /** Between 1 and `n` bytes (n ≥ 1, available ≥ 1) from the first chunk, as a view. */
  readUpTo(n: number): Uint8Array {
    const c = this.chunks[this.head] as Uint8Array;
    const take = Math.min(n, c.length - this.offset);
    const piece = c.subarray(this.offset, this.offset + take);
    this.offset += take;
    this.available -= take;
    if (this.offset === c.length) this.dropHead();
    return piece;
  }

  /** Drops `n` (≤ available) bytes. */
  skip(n: number): void {
    while (n > 0) n -= this.readUpTo(n).length;
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY; // release the chunk now, not at the next compaction
    this.head++;
    this.offset = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);
