import type { Socket } from "node:net";
import { WebSocket, type RawData } from "ws";
import type { CloseReason } from "./close-codes.js";

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
  /** Answered the last ping. */
  alive = true;
  /** Client messages since the last ping round (the flood check). */
  received = 0;
  /** Set once the gateway started closing the socket: it is not written to any more. */
  closeReason: CloseReason | undefined = undefined;
  /** Counted in PRESENCE_MAX_CONNECTIONS (compat: always; v2: once authenticated). */
  counted = false;
  /** WebSocket messages written to it, for the admin page. */
  sent = 0;
  /** ms since the Unix epoch. */
  connectedAt = 0;
  /** The client's address when a trusted proxy named it (X-Forwarded-For); else the peer's is read. */
  forwarded: string | undefined = undefined;
  /** UnsentBytes: catch-up bytes allowed over the cap until the socket drains below it. */
  slack = 0;
  /** UnsentBytes: when that catch-up must have drained (ms, while slack > 0). */
  deadline = 0;
  /** UnsentBytes: the catch-up, when it is one frame queued on many sockets. */
  shared: Buffer | undefined = undefined;
  /** The protocol handler's own state, if it needs any (v2: authentication and filter). */
  session: object | undefined = undefined;

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
