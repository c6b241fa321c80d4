/** How long after reading `/status` to its end a new socket from the same address needs no resync. */
export const FRESH_READ_MS = 60_000;
/** Addresses remembered at most; the oldest go first (a forgotten one only costs a resync). */
const MAX_ADDRESSES = 100_000;

/**
 * Addresses that recently read `/status` to its last (empty) page. A provider does that when it
 * starts, just before it opens its socket, so that socket holds every status already; a socket
 * from an address without such a read is a reconnect, which the hub resyncs. Behind a proxy that
 * is not trusted every desktop shares one address, so a reconnect may be taken for a fresh start
 * (and not resynced) while someone else's Outlook is starting: the behaviour without resync.
 */
export class RecentReaders {
  private readonly readAt = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The address read the last page. */
  readToEnd(address: string): void {
    this.readAt.delete(address); // re-inserted last: the map stays oldest first
    this.readAt.set(address, this.now());
    if (this.readAt.size > MAX_ADDRESSES) this.readAt.delete(this.readAt.keys().next().value!);
  }

  /** Whether a socket from the address just followed a full read of `/status`. */
  fresh(address: string): boolean {
    const at = this.readAt.get(address);
    return at !== undefined && this.now() - at <= FRESH_READ_MS;
  }
}
