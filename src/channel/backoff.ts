// Exponential backoff with full jitter and a cap: the retry delay of a failing peer.

/** Backoff settings. Every field has a default. */
export interface BackoffOptions {
  /** First delay, ms. Default 250. */
  baseMs?: number;
  /** Largest delay, ms. Default 30 000. */
  capMs?: number;
}

/** Tracks consecutive failures and says how long to wait before the next try. */
export class Backoff {
  private failures = 0;
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 250;
    this.capMs = opts.capMs ?? 30_000;
  }

  /** Consecutive failures so far. */
  get attempts(): number { return this.failures; }

  /** Records a failure and returns the delay before the next try: random in [ceiling/2, ceiling]. */
  fail(): number {
    this.failures += 1;
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures - 1, 20));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Records a success. */
  reset(): void {
    this.failures = 0;
  }
}
