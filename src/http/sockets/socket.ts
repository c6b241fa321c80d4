import type { Socket } from "node:net";
import { WebSocket, type RawData } from "ws";
import type { CloseReason } from "./close-codes.js";

const ALIVE = 1;
const COUNTED = 2;
/** What `received` counts up to (the flood limit is 100 a round). */
const MAX_RECEIVED = 0xffff;

/** Which protocol a socket speaks: the compat `/ws` or `/api/v2/stream`. */
export type SocketProtocol = "compat" | "v2";

/** What the pool does with a socket's events (one object per lane, not closures per socket). */
export interface SocketEvents {
  message(socket: PoolSocket, data: RawData, isBinary: boolean): void;
  pong(socket: PoolSocket): void;
  error(socket: PoolSocket, err: Error): void;
  close(socket: PoolSocket, code: number): void;
}

/**
 * One accepted WebSocket: `ws`'s own object (the pool has `ws` construct this class), with the
 * little the pool, the unsent-bytes cap and the protocol handlers keep about it as plain fields.
 *
 * Per-socket memory is the reason for this shape (docs/PERFORMANCE.md, "Memory per idle socket"):
 * the two pools this replaces kept a record object, a map entry and four listener closures per
 * socket in each of two maps, 1.15× the heap of a bare `ws` server. Here the state is in the
 * socket object itself; `lane` and `events` live on the prototype of one subclass per protocol,
 * shared by its sockets; and `emit` is overridden so `ws`'s events go straight to the pool with
 * no listener registered at all. The client's address and port are read from the TCP socket when
 * needed, not copied.
 */
export class PoolSocket extends WebSocket {
  /** On the lane's subclass prototype (see the class comment). */
  declare readonly lane: SocketProtocol;
  declare readonly events: SocketEvents;
  /**
   * `alive`, `counted` and `received` packed in one small integer (bit 0, bit 1, the rest): one
   * field instead of three, 16 bytes less per socket.
   */
  private bits = ALIVE;
  /** Set once the gateway started closing the socket: it is not written to any more. */
  closeReason: CloseReason | undefined = undefined;
  /** WebSocket messages written to it, for the admin page. */
  sent = 0;
  /**
   * When it connected, in whole seconds since the pool's `since`: an int32 is stored in the
   * object itself, where ms since 1970 (or any result of arithmetic on them that V8 keeps as a
   * double) made the field a boxed heap number, 16 bytes more per socket (heap snapshot).
   */
  connectedSecond = 0;
  /**
   * The client's address when a trusted proxy named another one (X-Forwarded-For); else the
   * peer's is read. Set on those sockets only (a field every socket carried would cost 8 bytes).
   */
  declare forwarded?: string;
  /** The protocol handler's own state, if it needs any (v2 only: authentication and filter). */
  declare session?: object;

  /** Answered the last ping. */
  get alive(): boolean {
    return (this.bits & ALIVE) !== 0;
  }

  set alive(yes: boolean) {
    this.bits = yes ? this.bits | ALIVE : this.bits & ~ALIVE;
  }

  /** Counted in PRESENCE_MAX_CONNECTIONS (compat: always; v2: once authenticated). */
  get counted(): boolean {
    return (this.bits & COUNTED) !== 0;
  }

  set counted(yes: boolean) {
    this.bits = yes ? this.bits | COUNTED : this.bits & ~COUNTED;
  }

  /** Client messages since the last ping round (the flood check; capped, it only has to pass 100). */
  get received(): number {
    return this.bits >>> 2;
  }

  set received(n: number) {
    this.bits = (this.bits & (ALIVE | COUNTED)) | (Math.min(n, MAX_RECEIVED) << 2);
  }

  /** The TCP socket under the WebSocket (a `ws` internal, pinned: see ws-frames.ts). */
  get tcp(): Socket | null {
    return (this as unknown as { _socket: Socket | null })._socket;
  }

  /** The client's address: from a trusted proxy's header, else the peer's (per-address limits). */
  get address(): string {
    return this.forwarded ?? this.tcp?.remoteAddress ?? "";
  }

  /** `address:port`, as the connect and disconnect log lines name it. */
  get remote(): string {
    return `${this.address}:${this.tcp?.remotePort}`;
  }

  /** The pool hears `ws`'s events first; listeners added by others (tests, the bench) still run. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    switch (event) {
      case "message":
        this.events.message(this, args[0] as RawData, args[1] as boolean);
        break;
      case "pong":
        this.events.pong(this);
        break;
      case "error":
        this.events.error(this, args[0] as Error);
        // Handled: an `error` without listeners would throw.
        return this.listenerCount("error") > 0 ? super.emit(event, ...args) : true;
      case "close":
        this.events.close(this, args[0] as number);
        break;
    }
    return super.emit(event, ...args);
  }
}

/** A subclass for one lane: every socket `ws` creates for it shares `lane` and `events`. */
export function laneSocketClass(lane: SocketProtocol, events: SocketEvents): typeof PoolSocket {
  class LaneSocket extends PoolSocket {}
  Object.defineProperties(LaneSocket.prototype, {
    lane: { value: lane },
    events: { value: events },
  });
  return LaneSocket;
}

/** Node's own key for a net.Socket's timeout timer, found on the first socket that has one. */
let timeoutKey: symbol | undefined;

/**
 * Lets go of the idle timer the HTTP server set on the connection (`server.timeout`, which closes
 * HTTP connections that never send a byte) once `ws` has cleared it on upgrade: Node clears such a
 * timer but keeps it referenced from the socket, with a bound callback, for the socket's life. That
 * was ~200 bytes of heap per idle WebSocket, the largest item a bare `ws` server (no idle timeout)
 * does not have (heap snapshot diff, docs/PERFORMANCE.md). A Node internal, so it only ever drops
 * a timer that is already cleared, and does nothing if the key is not found.
 */
export function dropClearedIdleTimer(tcp: Socket | null): void {
  if (!tcp || tcp.timeout) return; // still armed: leave it
  const holder = tcp as unknown as Record<symbol, { _destroyed?: boolean } | null | undefined>;
  timeoutKey ??= Object.getOwnPropertySymbols(tcp).find((k) => k.description === "timeout");
  if (timeoutKey && holder[timeoutKey]?._destroyed === true) holder[timeoutKey] = null;
}
