/** One bucket a minute, the last hour. */
export const HISTORY_BUCKETS = 60;
export const HISTORY_BUCKET_MS = 60_000;

/** The last hour as the admin page draws it, oldest minute first. */
export interface HistorySeries {
  /** Start of the first (oldest) bucket, ms since the Unix epoch; buckets are whole minutes. */
  start: number;
  bucketMs: number;
  /** Status changes published in each minute. */
  changes: number[];
  /** Connected providers at the last sample of each minute; null before the process ran. */
  providers: (number | null)[];
}

/**
 * A fixed ring of one-minute buckets: memory and the cost of a read do not grow with uptime or
 * traffic. A bucket is reused when its slot comes round again an hour later; minutes in which
 * nothing was recorded read as 0 changes and an unknown provider count (the process was not
 * running, or nothing sampled it).
 */
export class MinuteHistory {
  private readonly minute = new Array<number>(HISTORY_BUCKETS).fill(-1);
  private readonly changes = new Array<number>(HISTORY_BUCKETS).fill(0);
  private readonly providers = new Array<number | null>(HISTORY_BUCKETS).fill(null);

  constructor(private readonly now: () => number = Date.now) {}

  /** Counts `n` changes in the current minute. */
  addChanges(n: number): void {
    this.changes[this.slot()]! += n;
  }

  /** Records the current number of connected providers; the minute keeps its last sample. */
  sampleProviders(n: number): void {
    this.providers[this.slot()] = n;
  }

  series(): HistorySeries {
    const current = Math.floor(this.now() / HISTORY_BUCKET_MS);
    const first = current - HISTORY_BUCKETS + 1;
    const out: HistorySeries = {
      start: first * HISTORY_BUCKET_MS,
      bucketMs: HISTORY_BUCKET_MS,
      changes: [],
      providers: [],
    };
    for (let m = first; m <= current; m++) {
      const i = mod(m, HISTORY_BUCKETS);
      const fresh = this.minute[i] === m;
      out.changes.push(fresh ? this.changes[i]! : 0);
      out.providers.push(fresh ? this.providers[i]! : null);
    }
    return out;
  }

  /** The current minute's slot, cleared first if it still holds a minute from an hour ago. */
  private slot(): number {
    const m = Math.floor(this.now() / HISTORY_BUCKET_MS);
    const i = mod(m, HISTORY_BUCKETS);
    if (this.minute[i] !== m) {
      this.minute[i] = m;
      this.changes[i] = 0;
      this.providers[i] = null;
    }
    return i;
  }
}

const mod = (a: number, n: number): number => ((a % n) + n) % n;
