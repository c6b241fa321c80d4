/** The longest a full read of `/status` counts as fresh for the socket that follows it. */
export const FRESH_READ_MS = 60_000;
/** Addresses remembered at most; the oldest go first (a forgotten one only costs a resync). */
const MAX_ADDRESSES = 100_000;

/**
 * Full reads of `/status` (to its last, empty page) not yet followed by a socket, by address. A
 * provider reads `/status` when it starts, just before it opens its socket: that socket holds
 * every status already, except changes made between the read and the socket, which the replay
 * on connect covers if the socket came within the replay window. So a read counts as fresh for
 * at most `freshMs` (the smaller of 60 s and the replay window) and for one socket only; any
 * other socket is a reconnect, which the hub resyncs.
 *
 * Behind a proxy that is not trusted every desktop shares one address: a waking laptop may then
 * take the exemption of an Outlook starting at the same moment (which is resynced instead), a
 * small cost either way.
 */
export class RecentReaders {
  /** Address → times of its unclaimed full reads, oldest address first. */
  private readonly reads = new Map<string, number[]>();

  constructor(
    private readonly freshMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The address read the last page. */
  readToEnd(address: string): void {
    if (this.freshMs <= 0) return;
    const at = this.now();
    const times = (this.reads.get(address) ?? []).filter((t) => at - t <= this.freshMs);
    times.push(at);
    this.reads.delete(address); // re-inserted last: the map stays oldest first
    this.reads.set(address, times.slice(-64)); // a reload storm from one address stays small
    if (this.reads.size > MAX_ADDRESSES) this.reads.delete(this.reads.keys().next().value!);
  }

  /** Whether a socket from the address follows a fresh full read, which it then uses up. */
  take(address: string): boolean {
    const times = this.reads.get(address);
    if (!times) return false;
    const at = this.now();
    const i = times.findIndex((t) => at - t <= this.freshMs);
    if (i >= 0) times.splice(0, i + 1);
    else times.length = 0;
    if (times.length === 0) this.reads.delete(address);
    return i >= 0;
  }
}
