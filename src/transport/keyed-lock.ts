// Serialises work per key: two publishes of one landing name never interleave, different names run concurrently.

/** Runs functions one at a time per key, in call order; keys are forgotten once idle (memory stays bounded). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Run `fn` after every earlier `run` with the same key has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
