import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData } from "ws";
import type { Logger } from "../../log.js";
import { NO_TELEMETRY, type Telemetry } from "../../telemetry.js";
import { peerAddress, type ClientAddress } from "../client-address.js";
import type { ProviderSocket } from "../provider-sockets.js";
import { writeFrames } from "../ws-frames.js";
import { BACKGROUND_CLOCK, type Clock } from "../../util/clock.js";
import { closeFrame, type CloseReason } from "./close-codes.js";
import {
  dropClearedIdleTimer,
  laneSocketClass,
  type PoolSocket,
  type SocketEvents,
  type SocketProtocol,
} from "./socket.js";
import { UnsentBytes } from "./unsent-bytes.js";

/**
 * What a protocol adds to the pool (Centrifuge's split: the pool is the Hub and the transport;
 * a handler is the protocol). The pool calls these; a handler writes and closes through the pool.
 */
export interface SocketHandler<Init> {
  readonly protocol: SocketProtocol;
  /** The largest client message a socket of this protocol may send (setMaxPayload raises it). */
  readonly maxPayload: number;
  /** Extra fields for the connect log line. */
  connectFields?(init: Init): Record<string, unknown>;
  /** The socket is in the pool (counted, logged): send what a new socket gets. */
  opened(socket: PoolSocket, init: Init): void;
  /** A client message within the flood limit, on a socket the pool is not closing. */
  message(socket: PoolSocket, data: RawData, isBinary: boolean): void;
  /** The socket is gone (already out of the pool): drop what the handler keeps about it. */
  closed(socket: PoolSocket): void;
}

export interface SocketPoolOptions {
  log: Logger;
  telemetry?: Telemetry;
  /** PRESENCE_MAX_CONNECTIONS: compat sockets and authenticated v2 sockets together. */
  maxConnections: number;
  /**
   * Connections held elsewhere that count against maxConnections too: the other worker
   * processes of the instance (reported through the primary, so it lags by one report).
   */
  otherConnections?: () => number;
  /** How often dead peers are looked for (ping, then terminate if no pong by the next round). */
  pingIntervalMs: number;
  /** PRESENCE_WS_MAX_BUFFER_BYTES: unsent bytes one socket may hold. */
  maxBufferBytes: number;
  /** PRESENCE_MAX_BUFFERED_TOTAL_BYTES: unsent bytes all sockets together may hold. */
  maxBufferedTotalBytes?: number;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
  clock?: Clock;
}

/** Client messages tolerated per ping interval (providers send none; a v2 client a handful). */
export const MAX_CLIENT_MESSAGES_PER_ROUND = 100;
/** Sockets pinged per turn of the event loop. */
const PING_SLICE = 500;
/** RFC 6455 ping: FIN + opcode 9, no payload, unmasked (server to client). */
const PING_FRAME = Buffer.from([0x89, 0x00]);
/** A socket closed by the gateway whose peer does not finish the closing handshake is cut after this. */
const CLOSE_HANDSHAKE_MS = 1000;

/** Log events and texts per protocol (the names each protocol's log lines have always had). */
const LOG: Record<
  SocketProtocol,
  { connect: [string, string]; disconnect: [string, string]; deadPeer: string; error: [string, string] }
> = {
  compat: {
    connect: ["ws_connect", "provider connected"],
    disconnect: ["ws_disconnect", "provider disconnected"],
    deadPeer: "ws_dead_peer",
    error: ["ws_error", "socket error"],
  },
  v2: {
    connect: ["v2_connect", "v2 stream client connected"],
    disconnect: ["v2_disconnect", "v2 stream client disconnected"],
    deadPeer: "v2_dead_peer",
    error: ["v2_ws_error", "v2 socket error"],
  },
};

interface Lane {
  readonly handler: SocketHandler<never>;
  readonly wss: WebSocketServer;
  readonly sockets: Set<PoolSocket>;
}

/**
 * Every WebSocket of the gateway, whatever its protocol: the handshake, admission against the
 * shared PRESENCE_MAX_CONNECTIONS, every write through the unsent-bytes cap, the flood check, the
 * sliced dead-peer ping round, closing with the code from one table (close-codes.ts), and the
 * telemetry and log line of every connect and close, labelled by protocol. The compat `/ws`
 * (ws-hub.ts) and API v2's stream (v2/stream.ts) are handlers on it.
 */
export class SocketPool {
  readonly unsent: UnsentBytes;
  private readonly lanes = new Map<SocketProtocol, Lane>();
  /** Sockets counted in PRESENCE_MAX_CONNECTIONS. */
  private counted = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly telemetry: Telemetry;
  private readonly clock: Clock;
  private readonly clientAddress: ClientAddress;
  /** What PoolSocket.connectedSecond counts from (ms since the Unix epoch). */
  private readonly since: number;
  /** The lanes' event sink: one object, so sockets carry no closures. */
  private readonly events: SocketEvents = {
    message: (socket, data, isBinary) => this.onMessage(socket, data, isBinary),
    pong: (socket) => void (socket.alive = true),
    error: (socket, err) => {
      const [event, text] = LOG[socket.lane].error;
      this.opts.log.debug({ event, remote: socket.remote, err: err.message }, text);
    },
    close: (socket, code) => this.onClose(socket, code),
  };

  constructor(private readonly opts: SocketPoolOptions) {
    this.telemetry = opts.telemetry ?? NO_TELEMETRY;
    this.clock = opts.clock ?? BACKGROUND_CLOCK;
    this.clientAddress = opts.clientAddress ?? peerAddress;
    this.since = this.clock.now();
    this.unsent = new UnsentBytes({
      perSocket: opts.maxBufferBytes,
      total: opts.maxBufferedTotalBytes ?? Number.MAX_SAFE_INTEGER,
      log: opts.log,
      telemetry: this.telemetry,
      now: () => this.clock.now(),
      sockets: () => this.all(),
      close: (socket, reason) => this.close(socket as PoolSocket, reason),
    });
  }

  /** Adds a protocol; its sockets are accepted with accept(handler, ...). */
  register<Init>(handler: SocketHandler<Init>): void {
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: handler.maxPayload,
      perMessageDeflate: false, // frames are pre-built and written raw (see writeFrames)
      clientTracking: false,
      WebSocket: laneSocketClass(handler.protocol, this.events),
    });
    this.lanes.set(handler.protocol, {
      handler: handler as SocketHandler<never>,
      wss,
      sockets: new Set(),
    });
  }

  /** Starts the ping rounds and the unsent-bytes sweeps. */
  start(): void {
    this.pingTimer ??= this.clock.setInterval(() => this.pingRound(), this.opts.pingIntervalMs);
    this.unsent.start();
  }

  /** Closes every socket (1001) and stops the timers. */
  stop(): void {
    this.clock.clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    this.unsent.stop();
    for (const protocol of this.lanes.keys()) this.closeAll(protocol);
  }

  /** Open sockets of one protocol (v2: authenticated or not). */
  size(protocol: SocketProtocol): number {
    return this.lanes.get(protocol)?.sockets.size ?? 0;
  }

  /** The sockets of one protocol, live (do not keep). */
  sockets(protocol: SocketProtocol): ReadonlySet<PoolSocket> {
    return this.lanes.get(protocol)?.sockets ?? new Set();
  }

  /** Sockets counted in PRESENCE_MAX_CONNECTIONS, both protocols. */
  get connections(): number {
    return this.counted;
  }

  /** Whether one more socket fits PRESENCE_MAX_CONNECTIONS. */
  hasRoom(): boolean {
    return this.counted + (this.opts.otherConnections?.() ?? 0) < this.opts.maxConnections;
  }

  /** Counts the socket in PRESENCE_MAX_CONNECTIONS (once); the caller checked hasRoom(). */
  count(socket: PoolSocket): void {
    if (socket.counted) return;
    socket.counted = true;
    this.counted++;
  }

  /**
   * Completes an upgrade the route has already authorized and admitted: the handshake, then the
   * socket joins its lane (logged, counted in telemetry) and the handler's `opened` runs.
   */
  accept<Init>(
    handler: SocketHandler<Init>,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    init: Init,
  ): void {
    const lane = this.lanes.get(handler.protocol);
    if (!lane) throw new Error(`no ${handler.protocol} handler registered`);
    const forwarded = this.clientAddress === peerAddress ? undefined : this.clientAddress(req);
    lane.wss.handleUpgrade(req, socket, head, (ws) => {
      const s = ws as PoolSocket;
      s.connectedSecond = ((this.clock.now() - this.since) / 1000) | 0;
      if (forwarded !== undefined && forwarded !== req.socket.remoteAddress) s.forwarded = forwarded;
      dropClearedIdleTimer(s.tcp);
      lane.sockets.add(s);
      this.telemetry.wsConnected(lane.sockets.size, handler.protocol);
      const [event, text] = LOG[handler.protocol].connect;
      this.opts.log.info(
        { event, remote: s.remote, ...handler.connectFields?.(init), sockets: lane.sockets.size },
        text,
      );
      handler.opened(s, init);
    });
  }

  /**
   * Writes `frames` (holding `messages` messages) through the unsent-bytes cap; false when not
   * written (closing, or closed now for holding too much). `catchUp`/`shared`: see UnsentBytes.
   */
  write(socket: PoolSocket, frames: Buffer, messages = 1, catchUp = false, shared = false): boolean {
    if (!this.unsent.write(socket, frames, catchUp, shared)) return false;
    socket.sent += messages;
    return true;
  }

  /**
   * Closes with the code CLOSES gives `reason` (and `text` instead of its text, when given); a
   * peer that does not read will not finish the closing handshake, so it is cut after 1 s.
   * A dead peer is cut at once. The close itself is logged and counted when the socket is gone.
   */
  close(socket: PoolSocket, reason: Exclude<CloseReason, "client">, text?: string): void {
    if (socket.closeReason) return;
    socket.closeReason = reason;
    const frame = closeFrame(reason, socket.lane);
    if (frame.code === undefined) return socket.terminate();
    socket.close(frame.code, text ?? frame.text);
    // On shutdown the gateway cuts what is left once its own grace period is over.
    if (reason !== "shutdown") this.clock.setTimeout(() => socket.terminate(), CLOSE_HANDSHAKE_MS);
  }

  /** Closes every socket of one protocol with 1001 (shutdown). */
  closeAll(protocol: SocketProtocol): void {
    for (const socket of this.sockets(protocol)) this.close(socket, "shutdown");
  }

  /** Ends the sockets of one protocol (or all) that did not finish their closing handshake. */
  terminateAll(protocol?: SocketProtocol): void {
    for (const [p, lane] of this.lanes) {
      if (protocol === undefined || p === protocol) for (const s of lane.sockets) s.terminate();
    }
  }

  /** The counted sockets of every protocol, copied when asked (for the admin page). */
  *list(): Iterable<ProviderSocket> {
    for (const s of this.all()) {
      if (!s.counted) continue;
      yield {
        address: s.address,
        remote: s.remote,
        protocol: s.lane,
        connectedAt: this.since + s.connectedSecond * 1000,
        sent: s.sent,
      };
    }
  }

  /**
   * A dead-peer round over every socket, a slice at a time: one pass with `ws.ping()` over 10,000
   * sockets held the event loop ~350 ms (bench `ping`), which every change waiting to go out
   * waited for. A socket that did not answer the last ping is cut (logged, counted as
   * `dead_peer`); the others get a new one, one pre-built frame written raw (`ws` still reports
   * the pong). Public for the bench's ping scenario and the tests.
   */
  pingRound(): void {
    const sockets = [...this.all()];
    const slice = (from: number): void => {
      const end = Math.min(from + PING_SLICE, sockets.length);
      for (let i = from; i < end; i++) {
        const s = sockets[i]!;
        // Gone since the round began, or closing (its own timer or handshake ends it).
        if (s.closeReason || s.readyState !== s.OPEN) continue;
        if (!s.alive) {
          this.opts.log.info({ event: LOG[s.lane].deadPeer, remote: s.remote }, "no pong: dropping socket");
          this.close(s, "dead_peer");
          continue;
        }
        s.alive = false;
        s.received = 0;
        writeFrames(s, PING_FRAME);
      }
      if (end < sockets.length && this.pingTimer !== undefined) this.clock.setImmediate(() => slice(end));
    };
    slice(0);
  }

  private *all(): Iterable<PoolSocket> {
    for (const lane of this.lanes.values()) yield* lane.sockets;
  }

  private onMessage(socket: PoolSocket, data: RawData, isBinary: boolean): void {
    if (socket.closeReason) return;
    if (++socket.received > MAX_CLIENT_MESSAGES_PER_ROUND) return this.close(socket, "abuse");
    this.lanes.get(socket.lane)?.handler.message(socket, data, isBinary);
  }

  private onClose(socket: PoolSocket, code: number): void {
    const lane = this.lanes.get(socket.lane);
    if (!lane?.sockets.delete(socket)) return;
    if (socket.counted) this.counted--;
    this.unsent.forget(socket);
    lane.handler.closed(socket);
    const reason = socket.closeReason ?? "client";
    this.telemetry.wsClosed(reason, lane.sockets.size, socket.lane);
    const [event, text] = LOG[socket.lane].disconnect;
    this.opts.log.info({ event, remote: socket.remote, code, reason, sockets: lane.sockets.size }, text);
  }
}
