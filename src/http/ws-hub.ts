import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { Logger } from "../log.js";
import type { Change, PresenceSnapshot } from "../presence/snapshot.js";
import type { ProviderStatus } from "../presence/status.js";
import { NO_TELEMETRY, type Telemetry } from "../telemetry.js";
import { encodeStatus } from "../presence/wire.js";
import { pingPool, textFrame, type Pingable } from "./ws-frames.js";
import { UnsentBytes } from "./unsent-bytes.js";
import { ResyncPacer } from "./ws-resync.js";
import { peerAddress, remoteLabel, type ClientAddress } from "./client-address.js";
import type { ProviderSocket } from "./provider-sockets.js";

export interface WsHubOptions {
  snapshot: PresenceSnapshot;
  log: Logger;
  keepaliveMs: number;
  replayWindowMs: number;
  maxBufferBytes: number;
  /** How often dead peers are looked for (ping, then terminate if no pong by the next round). */
  pingIntervalMs: number;
  /** Budget of the full resync sent to sockets that may have missed changes (0: none); see ResyncPacer. */
  resyncBytesPerSecond?: number;
  telemetry?: Telemetry;
  now?: () => number;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
  /** The unsent-bytes cap shared with the other pool; default: one of its own, per socket only. */
  unsent?: UnsentBytes;
}

/** Per socket: `received` counts client frames (providers send none); `closeReason` is unset when the peer closed. */
interface Client extends Pingable {
  readonly ws: WebSocket;
  readonly remote: string;
  /** For the admin page's list of providers. */
  readonly address: string;
  readonly connectedAt: number;
  sent: number;
}

/** Client frames tolerated per ping interval before the socket is closed as abusive. */
const MAX_CLIENT_FRAMES_PER_ROUND = 100;

/** Close codes the hub uses, so providers and logs can tell why. */
export const CLOSE = { goingAway: 1001, policy: 1008, tryAgainLater: 1013 } as const;

/**
 * The compat `/ws` pool. Every message on it is one `{"user_id","email","status"}` object,
 * byte for byte as the old plugin's (Go's json.Encoder, so a trailing newline).
 *
 * - Fan-out: a batch of changes is framed once and written to every socket as one buffer.
 * - Keepalive: one timer for all sockets sends the next user's current status every
 *   keepaliveMs, round-robin, because providers reconnect after 30 s without a message.
 * - Replay: a new socket first gets the latest status of every address changed within
 *   replayWindowMs (the newest, up to a quarter of the buffer cap).
 * - Resync: a socket whose provider did not just page `/status` (a reconnect) is then sent every
 *   user's status, paced across all sockets (ResyncPacer), so what changed while it was away
 *   is repaired.
 * - Memory: every write goes through UnsentBytes: a socket holding more than maxBufferBytes
 *   unsent is closed with 1013, as are the largest holders when all sockets together hold too much.
 */
export class WsHub {
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: 4096, // providers send nothing; anything big is abuse
    perMessageDeflate: false, // frames are pre-built and written raw (see writeFrames)
    clientTracking: false,
  });
  private readonly clients = new Map<WebSocket, Client>();
  /** Latest frame per email within the replay window, oldest first, at most replayMaxBytes. */
  private readonly recent = new Map<string, { at: number; frame: Buffer }>();
  private recentBytes = 0;
  /** A replay must fit well inside a socket's buffer cap, or a reconnect storm would trip it. */
  private readonly replayMaxBytes: number;
  private replayCache: Buffer | undefined;
  private timers: NodeJS.Timeout[] = [];
  private readonly now: () => number;
  private unsubscribe: (() => void) | undefined;
  private readonly telemetry: Telemetry;
  private readonly resync: ResyncPacer;
  private readonly unsent: UnsentBytes;

  constructor(private readonly opts: WsHubOptions) {
    this.now = opts.now ?? Date.now;
    this.telemetry = opts.telemetry ?? NO_TELEMETRY;
    this.unsent =
      opts.unsent ??
      new UnsentBytes({
        perSocket: opts.maxBufferBytes,
        total: Number.MAX_SAFE_INTEGER,
        log: opts.log,
        telemetry: this.telemetry,
      });
    this.resync = new ResyncPacer(
      opts.snapshot,
      opts.resyncBytesPerSecond ?? 0,
      opts.maxBufferBytes,
      (messages, bytes, ws) => {
        this.telemetry.wsResync(messages, bytes);
        const client = this.clients.get(ws);
        if (client) client.sent += messages;
      },
      (ws, frames) => {
        const client = this.clients.get(ws);
        return client !== undefined && this.unsent.write(client, frames);
      },
    );
    this.replayMaxBytes = Math.floor(opts.maxBufferBytes / 4);
  }

  get size(): number {
    return this.clients.size;
  }

  /** The open sockets, copied when asked (for the admin page). */
  *list(): Iterable<ProviderSocket> {
    for (const c of this.clients.values()) {
      yield {
        address: c.address,
        remote: c.remote,
        protocol: "compat",
        connectedAt: c.connectedAt,
        sent: c.sent,
      };
    }
  }

  start(): void {
    this.unsubscribe = this.opts.snapshot.onChanges((c) => this.broadcast(c));
    this.timers.push(setInterval(() => this.keepalive(), this.opts.keepaliveMs).unref());
    this.timers.push(setInterval(() => this.pingRound(), this.opts.pingIntervalMs).unref());
    if (!this.opts.unsent) this.unsent.start();
  }

  /**
   * Completes an upgrade the server has already authorized. `resync: false` when the provider has
   * just read `/status` (it starts up): it holds every status already.
   */
  accept(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    opts: { resync: boolean } = { resync: true },
  ): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onOpen(ws, req, opts.resync));
  }

  /** Sockets still waiting for (part of) their resync. */
  get resyncing(): number {
    return this.resync.size;
  }

  /** Writes one batch to every socket: framed once, one write per socket. */
  broadcast(changes: readonly Change[]): void {
    if (changes.length === 0) return;
    const frames: Buffer[] = [];
    for (const c of changes) {
      const frame = statusFrame(c.userId, c.email, c.status);
      frames.push(frame);
      this.forget(c.email);
      this.recent.set(c.email, { at: c.at, frame });
      this.recentBytes += frame.length;
    }
    for (const email of this.recent.keys()) {
      if (this.recentBytes <= this.replayMaxBytes) break;
      this.forget(email);
    }
    this.replayCache = undefined;
    this.writeAll(frames.length === 1 ? frames[0]! : Buffer.concat(frames), frames.length);
  }

  /** Closes every socket (1001 by default) and stops the timers. */
  close(code: number = CLOSE.goingAway, reason = "server shutting down"): void {
    this.unsubscribe?.();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.resync.stop();
    if (!this.opts.unsent) this.unsent.stop();
    for (const [ws, client] of this.clients) {
      client.closeReason = "shutdown";
      ws.close(code, reason);
    }
  }

  /** Ends sockets that did not finish their closing handshake. */
  terminateAll(): void {
    for (const ws of this.clients.keys()) ws.terminate();
  }

  private onOpen(ws: WebSocket, req: IncomingMessage, resync: boolean): void {
    const remote = remoteLabel(req, this.opts.clientAddress ?? peerAddress);
    const address = (this.opts.clientAddress ?? peerAddress)(req);
    const client: Client = {
      ws,
      alive: true,
      remote,
      received: 0,
      address,
      connectedAt: this.now(),
      sent: 0,
    };
    this.clients.set(ws, client);
    this.unsent.add(client, "compat", (reason) =>
      this.closeWith(ws, client, CLOSE.tryAgainLater, reason, "too slow"),
    );
    this.telemetry.wsConnected(this.clients.size);
    this.opts.log.info({ event: "ws_connect", remote, sockets: this.clients.size }, "provider connected");
    ws.on("pong", () => (client.alive = true));
    // Providers send nothing; frames are read and dropped, and a flood closes the socket.
    ws.on("message", () => {
      if (++client.received === MAX_CLIENT_FRAMES_PER_ROUND + 1) {
        this.closeWith(ws, client, CLOSE.policy, "abuse", "too many client messages");
      }
    });
    ws.on("error", (err) =>
      this.opts.log.debug({ event: "ws_error", remote, err: err.message }, "socket error"),
    );
    ws.on("close", (code) => {
      this.clients.delete(ws);
      this.unsent.delete(client);
      this.resync.delete(ws);
      const reason = client.closeReason ?? "client";
      this.telemetry.wsClosed(reason, this.clients.size);
      this.opts.log.info(
        { event: "ws_disconnect", remote, code, reason, sockets: this.clients.size },
        "provider disconnected",
      );
    });
    const replay = this.replay();
    if (replay.length > 0 && this.unsent.write(client, replay)) client.sent += this.recent.size;
    if (resync) this.resync.add(ws);
  }

  private replay(): Buffer {
    const cutoff = this.now() - this.opts.replayWindowMs;
    for (const [email, entry] of this.recent) {
      if (entry.at >= cutoff) break; // oldest first: the rest are newer
      this.forget(email);
      this.replayCache = undefined;
    }
    this.replayCache ??= Buffer.concat([...this.recent.values()].map((e) => e.frame));
    return this.replayCache;
  }

  private forget(email: string): void {
    const entry = this.recent.get(email);
    if (!entry) return;
    this.recent.delete(email);
    this.recentBytes -= entry.frame.length;
  }

  private writeAll(buf: Buffer, messages: number): void {
    let written = 0;
    for (const client of this.clients.values()) {
      if (this.unsent.write(client, buf)) {
        written++;
        client.sent += messages;
      }
    }
    this.telemetry.wsBroadcast(written, messages, buf.length);
  }

  /** Closes with a code; a peer that does not read will not finish the handshake, so it is cut after 1 s. */
  private closeWith(ws: WebSocket, client: Client, code: number, reason: string, text: string): void {
    if (client.closeReason) return;
    client.closeReason = reason;
    ws.close(code, text);
    setTimeout(() => ws.terminate(), 1000).unref();
  }

  private keepalive(): void {
    if (this.clients.size === 0) return;
    const user = this.opts.snapshot.nextKeepalive();
    if (user?.status === undefined) return;
    this.writeAll(statusFrame(user.id, user.email, user.status), 1);
  }

  /** Pings every socket, a slice at a time, and drops those that did not answer the last ping. */
  private pingRound(): void {
    pingPool(
      this.clients,
      (client) =>
        this.opts.log.info({ event: "ws_dead_peer", remote: client.remote }, "no pong: dropping socket"),
      () => this.timers.length > 0,
    );
  }
}

function statusFrame(userId: string, email: string, status: ProviderStatus): Buffer {
  return textFrame(`${encodeStatus(userId, email, status)}\n`);
}
