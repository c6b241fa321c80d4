import type { WebSocket } from "ws";
import type { Logger } from "../../log.js";
import { NO_TELEMETRY, type Telemetry } from "../../telemetry.js";
import { writeFrames } from "../ws-frames.js";
import type { SocketProtocol } from "./socket.js";

export type { SocketProtocol } from "./socket.js";

/**
 * Why the budget closed a socket (its close reason, in the disconnect log line and the metric):
 * - `slow_consumer`: more unsent than PRESENCE_WS_MAX_BUFFER_BYTES (beyond a catch-up), or a new
 *   catch-up asked for while the last one has not drained below the cap;
 * - `slow_catch_up`: a catch-up (a v2 snapshot) not drained below the cap by its deadline;
 * - `unsent_total`: among the sockets holding the most unsent bytes when all sockets together held
 *   more than PRESENCE_MAX_BUFFERED_TOTAL_BYTES.
 */
export type UnsentCloseReason = "slow_consumer" | "slow_catch_up" | "unsent_total";

/** What the budget reads of a socket (a PoolSocket); the pool owns it and closes it. */
export interface BudgetedSocket {
  readonly lane: SocketProtocol;
  readonly remote: string;
  readonly readyState: number;
  readonly OPEN: number;
  /** What `ws` has not sent yet, raw writes included. */
  readonly bufferedAmount: number;
  /** Set once the pool (or the budget) closes the socket: it is not written to nor counted. */
  closeReason?: string | undefined;
}

/**
 * A catch-up a socket has not drained below the cap yet. Kept aside, only while it lasts: three
 * fields on every idle socket would be 24 bytes each (docs/PERFORMANCE.md, "Memory per idle socket").
 */
interface CatchUp {
  /** Bytes allowed over the per-socket cap until the socket first drains below it. */
  readonly slack: number;
  /** When it must have drained below the cap. */
  readonly deadline: number;
  /** The catch-up, when it is one frame queued on many sockets (counted once in the total). */
  readonly shared: Buffer | undefined;
}

/** One socket's part of the total: its unsent bytes less a shared catch-up it may still hold. */
interface Holding {
  socket: BudgetedSocket;
  own: number;
}

export interface UnsentBytesOptions {
  /** PRESENCE_WS_MAX_BUFFER_BYTES: unsent bytes one socket may hold (beyond a catch-up). */
  perSocket: number;
  /** PRESENCE_MAX_BUFFERED_TOTAL_BYTES: unsent bytes all sockets together may hold. */
  total: number;
  log: Logger;
  telemetry?: Telemetry;
  now?: () => number;
  /** A catch-up has this long to drain below the cap, plus catchUpMsPerMiB per MiB of it. */
  catchUpGraceMs?: number;
  catchUpMsPerMiB?: number;
  /** Every socket the budget covers (both protocols), read on each sweep. */
  sockets: () => Iterable<BudgetedSocket>;
  /** Ends the socket the pool's way (1013 and `reason`), setting its closeReason. */
  close: (socket: BudgetedSocket, reason: UnsentCloseReason) => void;
}

/** How often every socket is looked at: exact totals, catch-up deadlines. */
const SWEEP_MS = 1000;
/**
 * Over the total, the largest holders are closed until all together hold at most this share of
 * it: the headroom means the next full sweep is at least a tenth of the total's writes away.
 */
const LOW_WATER = 0.9;

/**
 * The one cap on unsent bytes, per socket and in total, that every write on every WebSocket goes
 * through (compat `/ws` and `/api/v2/stream` alike). Frames are written raw under `ws`
 * (writeFrames), so what a socket has not sent is its `bufferedAmount`.
 *
 * Per socket: a write is refused, and the socket closed (`slow_consumer`), when the socket already
 * holds more than `perSocket` unsent (checked before writing, so one large batch never closes a
 * healthy socket). A catch-up (a v2 snapshot or missed changes) may go over the cap once: it must
 * drain below it within catchUpGraceMs plus catchUpMsPerMiB per MiB (`slow_catch_up`), and a
 * socket still holding more than the cap is not given another (a v2 socket that never read and
 * asked for 100 snapshots with `unsubscribe` took RSS from 222 MB to 814 MB).
 *
 * In total: all sockets together hold at most `total` (200 authenticated v2 sockets that never
 * read took RSS from 179 MB to 1.44 GB, each holding its first snapshot until the ping timeout).
 * The running total is exact after each sweep (every second, and whenever the bytes written
 * since could have crossed the total); over it, the sockets holding the most are closed
 * (`unsent_total`) until the rest hold at most 90% of it, with one log line. The total counts
 * memory: a catch-up written as the same Buffer to many sockets (the v2 snapshot) is queued by
 * reference, so it counts once, however many sockets hold it.
 */
export class UnsentBytes {
  /** Exact at the last sweep plus every byte written since: never below the truth. */
  private estimate = 0;
  /** Shared catch-ups already in `estimate`. */
  private sharedCounted = new Set<Buffer>();
  /** Sockets holding a catch-up over the cap (see CatchUp). */
  private readonly catchUps = new Map<BudgetedSocket, CatchUp>();
  private timer: NodeJS.Timeout | undefined;
  private readonly telemetry: Telemetry;
  private readonly now: () => number;
  private readonly graceMs: number;
  private readonly msPerMiB: number;

  constructor(private readonly opts: UnsentBytesOptions) {
    this.telemetry = opts.telemetry ?? NO_TELEMETRY;
    this.now = opts.now ?? Date.now;
    this.graceMs = opts.catchUpGraceMs ?? 10_000;
    this.msPerMiB = opts.catchUpMsPerMiB ?? 4000;
  }

  get perSocket(): number {
    return this.opts.perSocket;
  }

  /** Sweeps every second until stop(); without it, only writes trigger sweeps. */
  start(): void {
    this.timer ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Writes `frames` to the socket unless that would break a cap (then the socket is closed, and
   * false returned). `catchUp`: a message allowed over the per-socket cap once (see the class);
   * `shared`: the same Buffer is written to other sockets too (it is counted once in the total).
   */
  write(socket: BudgetedSocket, frames: Buffer, catchUp = false, shared = false): boolean {
    if (socket.closeReason || socket.readyState !== socket.OPEN) return false;
    const buffered = socket.bufferedAmount;
    if (buffered <= this.opts.perSocket) {
      // Usually no socket is catching up: no lookup per write then.
      if (this.catchUps.size > 0) this.catchUps.delete(socket);
    } else if (catchUp || buffered > this.opts.perSocket + (this.catchUps.get(socket)?.slack ?? 0)) {
      this.closeSocket(socket, "slow_consumer", buffered);
      return false;
    }
    if (!writeFrames(socket as unknown as WebSocket, frames)) return false;
    if (catchUp) {
      this.catchUps.set(socket, {
        slack: frames.length,
        shared: shared ? frames : undefined,
        deadline: this.now() + this.graceMs + Math.ceil((frames.length / 1048576) * this.msPerMiB),
      });
    }
    if (!shared) this.estimate += frames.length;
    else if (!this.sharedCounted.has(frames)) {
      this.sharedCounted.add(frames);
      this.estimate += frames.length;
    }
    if (this.estimate > this.opts.total) this.sweep();
    return true;
  }

  /** Unsent bytes by protocol, exact now (the gauge; a shared catch-up counts once). */
  unsent(): Record<SocketProtocol, number> {
    const by: Record<SocketProtocol, number> = { compat: 0, v2: 0 };
    const shared = new Map<Buffer, SocketProtocol>();
    for (const socket of this.opts.sockets()) {
      if (socket.closeReason) continue;
      by[socket.lane] += this.own(socket);
      const held = this.catchUps.get(socket)?.shared;
      if (held) shared.set(held, socket.lane);
    }
    for (const [buf, protocol] of shared) by[protocol] += buf.length;
    return by;
  }

  /** The socket is closing or gone: its catch-up, if any, is not tracked any more. */
  forget(socket: BudgetedSocket): void {
    this.catchUps.delete(socket);
  }

  /** What a socket holds beyond a shared catch-up (all of which it may still hold). */
  private own(socket: BudgetedSocket): number {
    const buffered = socket.bufferedAmount;
    const shared = this.catchUps.get(socket)?.shared;
    return shared ? Math.max(0, buffered - shared.length) : buffered;
  }

  /** Exact totals; closes sockets past their catch-up deadline, then the largest when over the total. */
  sweep(): void {
    const now = this.now();
    let total = 0;
    const held: Holding[] = [];
    /** Shared catch-ups still queued, and on how many sockets. */
    const holders = new Map<Buffer, number>();
    for (const socket of this.opts.sockets()) {
      if (socket.closeReason) continue;
      const buffered = socket.bufferedAmount;
      const catching = this.catchUps.get(socket);
      if (catching) {
        if (buffered <= this.opts.perSocket) {
          this.catchUps.delete(socket);
        } else if (now > catching.deadline) {
          this.closeSocket(socket, "slow_catch_up", buffered);
          continue;
        }
      }
      const own = this.own(socket);
      total += own;
      const shared = this.catchUps.get(socket)?.shared;
      if (shared) holders.set(shared, (holders.get(shared) ?? 0) + 1);
      if (own > 0 || shared) held.push({ socket, own });
    }
    for (const buf of holders.keys()) total += buf.length;
    if (total > this.opts.total) total = this.shed(held, holders, total);
    this.estimate = total;
    this.sharedCounted = new Set(holders.keys());
  }

  /**
   * Closes the largest holders until the rest hold at most LOW_WATER of the total (a shared
   * catch-up is freed with its last holder); returns what is left.
   */
  private shed(held: Holding[], holders: Map<Buffer, number>, total: number): number {
    const before = total;
    const closed: Record<SocketProtocol, number> = { compat: 0, v2: 0 };
    held.sort((a, b) => b.own - a.own);
    for (const { socket, own } of held) {
      if (total <= this.opts.total * LOW_WATER) break;
      const { lane } = socket;
      const shared = this.catchUps.get(socket)?.shared;
      this.forget(socket);
      this.opts.close(socket, "unsent_total");
      this.telemetry.unsentClosed(lane, "unsent_total");
      closed[lane]++;
      total -= own;
      if (shared) {
        const left = (holders.get(shared) ?? 1) - 1;
        holders.set(shared, left);
        if (left === 0) {
          holders.delete(shared);
          total -= shared.length;
        }
      }
    }
    this.opts.log.warn(
      {
        event: "unsent_total_exceeded",
        unsent: before,
        limit: this.opts.total,
        closedCompat: closed.compat,
        closedV2: closed.v2,
        left: total,
      },
      "sockets together held more unsent bytes than PRESENCE_MAX_BUFFERED_TOTAL_BYTES: closed the largest holders",
    );
    return total;
  }

  private closeSocket(socket: BudgetedSocket, reason: UnsentCloseReason, buffered: number): void {
    this.opts.log.warn(
      {
        event: socket.lane === "compat" ? "ws_slow_consumer" : "v2_slow_consumer",
        remote: socket.remote,
        reason,
        buffered,
      },
      reason === "slow_catch_up"
        ? "closing a socket that did not take its catch-up in time"
        : "closing a socket that does not read",
    );
    this.forget(socket);
    this.opts.close(socket, reason);
    this.telemetry.unsentClosed(socket.lane, reason);
  }
}
