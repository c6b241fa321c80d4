import type { Change } from "./snapshot.js";

/**
 * The last `capacity` changes, in order, in a ring buffer: what API v2 replays to a client that
 * resumes with `since`. Memory is bounded by the capacity, whatever the rate of changes.
 *
 * Guarantee: `since(s)` answers either exactly the changes numbered after `s` up to the newest
 * appended, in order, or undefined when the log cannot prove it holds all of them (too old, from
 * the future, or across a gap in the numbering); the caller then sends a snapshot instead.
 */
export class ChangeLog {
  private readonly ring: (Change | undefined)[];
  /** Index of the oldest entry. */
  private head = 0;
  private count = 0;
  /**
   * The newest seq the log is complete up to: every change after `floor` and up to `last` is held
   * (when count > 0, floor = oldest seq - 1). Starts unknown.
   */
  private floor: number | undefined;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be >= 1");
    this.ring = new Array<Change | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** The newest seq the log knows of (undefined before anything was appended or reset). */
  get lastSeq(): number | undefined {
    return this.count > 0 ? this.at(this.count - 1).seq : this.floor;
  }

  /**
   * Appends a batch. A batch that does not follow the previous one (a gap in the numbering)
   * restarts the log: what came before can no longer be replayed exactly.
   */
  append(changes: readonly Change[]): void {
    for (const c of changes) {
      const last = this.lastSeq;
      if (last !== undefined && c.seq !== last + 1) this.reset(c.seq - 1);
      if (this.floor === undefined) this.floor = c.seq - 1;
      if (this.count === this.capacity) {
        this.ring[this.head] = undefined;
        this.head = (this.head + 1) % this.capacity;
        this.count--;
        this.floor = c.seq - this.capacity;
      }
      this.ring[(this.head + this.count) % this.capacity] = c;
      this.count++;
    }
  }

  /** Forgets everything; the log is complete from `seq` on (changes after it will be appended). */
  reset(seq: number): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.floor = seq;
  }

  /**
   * The changes numbered after `since`, oldest first ([] when up to date), or undefined when the
   * log does not hold all of them.
   */
  since(since: number): Change[] | undefined {
    const last = this.lastSeq;
    if (last === undefined || this.floor === undefined) return undefined;
    if (since === last) return [];
    if (since < this.floor || since > last) return undefined;
    const out: Change[] = [];
    for (let i = since - this.floor; i < this.count; i++) out.push(this.at(i));
    return out;
  }

  private at(i: number): Change {
    return this.ring[(this.head + i) % this.capacity]!;
  }
}
