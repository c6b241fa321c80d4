/**
 * Token buckets per key (a remote address), memory-bounded: at most `maxKeys` buckets; when full,
 * the stalest half is dropped (a dropped key starts again with a full bucket, which only ever
 * errs towards letting a request through).
 */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for `key`; false when its bucket is empty. */
  take(key: string): boolean {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
      // Re-insert so that Map order is least recently used first.
      this.buckets.delete(key);
    } else {
      if (this.buckets.size >= this.maxKeys) this.evict();
      b = { tokens: this.burst, at: now };
    }
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(): void {
    let n = Math.ceil(this.buckets.size / 2);
    for (const key of this.buckets.keys()) {
      if (n-- <= 0) break;
      this.buckets.delete(key);
    }
  }
}
