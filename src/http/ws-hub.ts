import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Change, PresenceSnapshot, PresenceUser } from "../presence/snapshot.js";
import type { ProviderStatus } from "../presence/status.js";
import { NO_TELEMETRY, type Telemetry } from "../telemetry.js";
import { encodeStatus } from "../presence/wire.js";
import { textFrame } from "./ws-frames.js";
import { ResyncPacer } from "./ws-resync.js";
import { BACKGROUND_CLOCK, type Clock } from "../util/clock.js";
import type { SocketHandler, SocketPool } from "./sockets/pool.js";
import type { PoolSocket } from "./sockets/socket.js";

export interface WsHubOptions {
  /** The socket pool (shared with API v2's stream). */
  pool: SocketPool;
  snapshot: PresenceSnapshot;
  keepaliveMs: number;
  replayWindowMs: number;
  /** PRESENCE_WS_MAX_BUFFER_BYTES: the replay and resync chunks stay well under it. */
  maxBufferBytes: number;
  /** Budget of the full resync sent to sockets that may have missed changes (0: none); see ResyncPacer. */
  resyncBytesPerSecond?: number;
  telemetry?: Telemetry;
  clock?: Clock;
}

/** What the upgrade said: `resync: false` when the provider has just read `/status`. */
export interface CompatStart {
  resync: boolean;
}

/**
 * The compat `/ws` protocol, on the socket pool. Every message on it is one
 * `{"user_id","email","status"}` object, byte for byte as the old plugin's (Go's json.Encoder, so
 * a trailing newline); providers send nothing (the pool drops what they send and closes a flood).
 *
 * - Fan-out: a batch of changes is framed once and written to every socket as one buffer.
 * - Keepalive: one timer for all sockets sends the next user's current status every
 *   keepaliveMs, round-robin over the visible users, because providers reconnect after 30 s
 *   without a message.
 * - Replay: a new socket first gets the latest status of every address changed within
 *   replayWindowMs (the newest, up to a quarter of the buffer cap).
 * - Resync: a socket whose provider did not just page `/status` (a reconnect) is then sent every
 *   user's status, paced across all sockets (ResyncPacer), so what changed while it was away
 *   is repaired.
 * Admission, the buffer cap, dead peers, close codes and their telemetry are the pool's.
 */
export class WsHub implements SocketHandler<CompatStart> {
  readonly protocol = "compat";
  readonly maxPayload = 4096; // providers send nothing; anything big is abuse
  /** Latest frame per email within the replay window, oldest first, at most replayMaxBytes. */
  private readonly recent = new Map<string, { at: number; frame: Buffer }>();
  private recentBytes = 0;
  /** A replay must fit well inside a socket's buffer cap, or a reconnect storm would trip it. */
  private readonly replayMaxBytes: number;
  private replayCache: Buffer | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  /** Index of the next visible user the keepalive sends (round-robin over snapshot.visible()). */
  private keepaliveCursor = 0;
  private unsubscribe: (() => void) | undefined;
  private readonly telemetry: Telemetry;
  private readonly clock: Clock;
  private readonly resync: ResyncPacer;
  private readonly pool: SocketPool;

  constructor(private readonly opts: WsHubOptions) {
    this.pool = opts.pool;
    this.clock = opts.clock ?? BACKGROUND_CLOCK;
    this.telemetry = opts.telemetry ?? NO_TELEMETRY;
    this.resync = new ResyncPacer(
      opts.snapshot,
      opts.resyncBytesPerSecond ?? 0,
      opts.maxBufferBytes,
      (messages, bytes) => this.telemetry.wsResync(messages, bytes),
      (ws, frames, messages) => this.pool.write(ws as PoolSocket, frames, messages),
    );
    this.replayMaxBytes = Math.floor(opts.maxBufferBytes / 4);
    this.pool.register(this);
  }

  get size(): number {
    return this.pool.size("compat");
  }

  /** Whether one more socket fits PRESENCE_MAX_CONNECTIONS (shared with API v2's stream). */
  hasRoom(): boolean {
    return this.pool.hasRoom();
  }

  /** Sockets of both protocols counted in PRESENCE_MAX_CONNECTIONS (for the refusal log line). */
  get connections(): number {
    return this.pool.connections;
  }

  start(): void {
    this.unsubscribe = this.opts.snapshot.onChanges((c) => this.broadcast(c));
    this.keepaliveTimer ??= this.clock.setInterval(() => this.keepalive(), this.opts.keepaliveMs);
  }

  /** Completes an upgrade the route has already authorized and admitted. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, start: CompatStart = { resync: true }): void {
    this.pool.accept(this, req, socket, head, start);
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

  /** Stops the keepalive and resync, and closes every compat socket (1001). */
  close(): void {
    this.unsubscribe?.();
    this.clock.clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    this.resync.stop();
    this.pool.closeAll("compat");
  }

  opened(socket: PoolSocket, start: CompatStart): void {
    this.pool.count(socket); // the route checked hasRoom() before the upgrade
    const replay = this.replay();
    if (replay.length > 0) this.pool.write(socket, replay, this.recent.size);
    if (start.resync) this.resync.add(socket);
  }

  /** Providers send nothing: what they send is read and dropped (the pool counts it for floods). */
  message(): void {}

  closed(socket: PoolSocket): void {
    this.resync.delete(socket);
  }

  private replay(): Buffer {
    const cutoff = this.clock.now() - this.opts.replayWindowMs;
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
    for (const socket of this.pool.sockets("compat")) {
      if (this.pool.write(socket, buf, messages)) written++;
    }
    this.telemetry.wsBroadcast(written, messages, buf.length);
  }

  /** Public for tests: one keepalive message to every socket. */
  keepalive(): void {
    if (this.size === 0) return;
    const user = this.nextKeepalive();
    if (user?.status === undefined) return;
    this.writeAll(statusFrame(user.id, user.email, user.status), 1);
  }

  /** The next visible user, round-robin (the list may have shrunk since: then from the start). */
  private nextKeepalive(): PresenceUser | undefined {
    const visible = this.opts.snapshot.visible();
    if (visible.length === 0) return undefined;
    if (this.keepaliveCursor >= visible.length) this.keepaliveCursor = 0;
    return visible[this.keepaliveCursor++];
  }
}

function statusFrame(userId: string, email: string, status: ProviderStatus): Buffer {
  return textFrame(`${encodeStatus(userId, email, status)}\n`);
}
