import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { RawData } from "ws";
import type { Logger } from "../../log.js";
import { ChangeLog } from "../../presence/change-log.js";
import { decideResume, type Position } from "../../presence/position.js";
import type { Change, PresenceSnapshot } from "../../presence/snapshot.js";
import { secretMatches } from "../auth.js";
import { setMaxPayload, textFrame } from "../ws-frames.js";
import { addressKey } from "../auth-limit.js";
import type { AuthFailures } from "../auth-limit.js";
import { BACKGROUND_CLOCK, type Clock } from "../../util/clock.js";
import type { SocketHandler, SocketPool } from "../sockets/pool.js";
import type { PoolSocket } from "../sockets/socket.js";
import { V2_MAX_AUTH_MESSAGE_BYTES, parseClientMessage } from "./protocol.js";
import { changeJson, makeFilter, matches, type PresenceView, type UserFilter } from "./view.js";

export interface StreamOptions {
  /** The socket pool (shared with the compat `/ws`). */
  pool: SocketPool;
  snapshot: PresenceSnapshot;
  view: PresenceView;
  log: Logger;
  secrets: () => readonly string[];
  /** Changes kept for resuming (PRESENCE_V2_RETAINED_CHANGES). */
  retainedChanges: number;
  /** How long a socket without an Authorization header has to send its auth message. */
  authTimeoutMs?: number;
  /** Wrong secrets in auth messages count with every other credential check. */
  authFailures?: AuthFailures;
  clock?: Clock;
}

/** What the upgrade request said, checked before the handshake. */
export interface StreamStart {
  authorized: boolean;
  since: Position | undefined;
  filter: UserFilter | undefined;
}

/** What the stream keeps per socket, besides what the pool keeps (PoolSocket). */
interface Session {
  /** Authenticated and caught up: receives live batches. */
  live: boolean;
  since: Position | undefined;
  filter: UserFilter | undefined;
  /** Set while the socket has not sent its auth message yet. */
  authTimer: NodeJS.Timeout | undefined;
}

/** Missed changes are replayed in messages of at most this many changes. */
const CATCHUP_CHUNK = 1000;
/** Subscriptions can be long lists of emails: up to 50,000 of them fit (once authenticated). */
const MAX_CLIENT_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * Sockets still waiting for their auth message, at most. They are not counted in the shared
 * connection limit (so sockets that never authenticate cannot lock desktops out), and each may
 * send one message of up to V2_MAX_AUTH_MESSAGE_BYTES before the secret is checked: with the
 * cap below, at most 16 MiB of unauthenticated input, and 32 addresses to fill it.
 */
export const MAX_PENDING_AUTH = 256;
/**
 * Of those, from one address (as the auth-failure limit keys it: IPv6 by /64): one address held
 * all 32 of the former total, reopening them every 5 s, and every browser client got 503.
 */
export const MAX_PENDING_AUTH_PER_ADDRESS = 8;

function session(socket: PoolSocket): Session {
  return socket.session as Session;
}

/**
 * The /api/v2/stream protocol, on the socket pool. One snapshot change batch becomes one
 * `changes` message: framed once and written as the same bytes to every unsubscribed socket; a
 * subscribed socket gets its own message holding only its people (built per socket, and only
 * when it has some). A resuming socket first gets exactly the changes after its `since` from the
 * retained log (or a snapshot when they are no longer all there), then `ready`, then live
 * batches. A socket without an Authorization header must send `{"type":"auth"}` first; until then
 * it does not count in PRESENCE_MAX_CONNECTIONS but in MAX_PENDING_AUTH. Admission, the buffer
 * cap, dead peers, close codes and their telemetry are the pool's.
 */
export class V2Stream implements SocketHandler<StreamStart> {
  readonly protocol = "v2";
  // Raised to MAX_CLIENT_MESSAGE_BYTES once the socket has authenticated (setMaxPayload).
  readonly maxPayload = V2_MAX_AUTH_MESSAGE_BYTES;
  readonly changeLog: ChangeLog;
  /** The epoch the change log's numbers belong to. */
  private logEpoch: string | undefined;
  private pending = 0;
  /** Sockets waiting for their auth message, by addressKey. */
  private readonly pendingByAddress = new Map<string, number>();
  private unsubscribe: (() => void) | undefined;
  /** The unfiltered `snapshot` frame of one snapshot version (see snapshotFrame). */
  private sharedSnapshot: { version: number; frame: Buffer } | undefined;
  private readonly pool: SocketPool;
  private readonly clock: Clock;

  constructor(private readonly opts: StreamOptions) {
    this.pool = opts.pool;
    this.clock = opts.clock ?? BACKGROUND_CLOCK;
    this.changeLog = new ChangeLog(opts.retainedChanges);
    this.pool.register(this);
  }

  /** Open sockets, authenticated or not (the metric). */
  get size(): number {
    return this.pool.size("v2");
  }

  /** Sockets still waiting for their auth message (at most MAX_PENDING_AUTH). */
  get pendingAuth(): number {
    return this.pending;
  }

  /**
   * Whether one more socket from `address` may wait for its auth message: under
   * MAX_PENDING_AUTH in total and MAX_PENDING_AUTH_PER_ADDRESS from that address.
   */
  mayWaitForAuth(address: string): "ok" | "total" | "address" {
    if (this.pending >= MAX_PENDING_AUTH) return "total";
    if ((this.pendingByAddress.get(addressKey(address)) ?? 0) >= MAX_PENDING_AUTH_PER_ADDRESS) {
      return "address";
    }
    return "ok";
  }

  /** Whether one more authenticated socket fits PRESENCE_MAX_CONNECTIONS (shared with `/ws`). */
  hasRoom(): boolean {
    return this.pool.hasRoom();
  }

  /** Sockets that count in the shared connection limit. */
  get authenticated(): number {
    return this.size - this.pending;
  }

  /** Subscribes to the snapshot; call before the first change can happen (before sync starts). */
  start(): void {
    this.unsubscribe = this.opts.snapshot.onChanges((changes, meta?: { resync?: boolean }) =>
      this.broadcast(changes, meta?.resync === true),
    );
  }

  accept(req: IncomingMessage, socket: Duplex, head: Buffer, start: StreamStart): void {
    this.pool.accept(this, req, socket, head, start);
  }

  /** Closes every socket (1001). */
  close(): void {
    this.unsubscribe?.();
    for (const socket of this.pool.sockets("v2")) this.clock.clearTimeout(session(socket).authTimer);
    this.pool.closeAll("v2");
  }

  terminateAll(): void {
    this.pool.terminateAll("v2");
  }

  /** One batch, one message per socket; unsubscribed sockets share one frame. */
  broadcast(changes: readonly Change[], resync = false): void {
    if (changes.length === 0) return;
    // A resync is a difference against this replica's own past, not the changes that happened:
    // only a client exactly at the batch's start can apply it as a resume.
    const epoch = this.opts.snapshot.epoch;
    if (resync || epoch !== this.logEpoch) this.changeLog.reset(changes[0]!.seq - 1);
    this.logEpoch = epoch;
    this.changeLog.append(changes);
    const seq = changes[changes.length - 1]!.seq;
    const head = `{"type":"changes","epoch":"${epoch}","seq":${seq},"changes":[`;
    let items: string[] | undefined;
    let shared: Buffer | undefined;
    for (const socket of this.pool.sockets("v2")) {
      const s = session(socket);
      if (!s.live) continue;
      items ??= changes.map(changeJson);
      if (!s.filter) {
        shared ??= textFrame(`${head}${items.join(",")}]}`);
        this.pool.write(socket, shared);
        continue;
      }
      const mine: string[] = [];
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        if (matches(s.filter, c.userId, c.email)) mine.push(items[i]!);
      }
      if (mine.length > 0) this.pool.write(socket, textFrame(`${head}${mine.join(",")}]}`));
    }
  }

  connectFields(start: StreamStart): Record<string, unknown> {
    return { since: start.since && `${start.since.epoch ?? ""}:${start.since.seq}` };
  }

  opened(socket: PoolSocket, start: StreamStart): void {
    const s: Session = { live: false, since: start.since, filter: start.filter, authTimer: undefined };
    socket.session = s;
    if (start.authorized) return this.goLive(socket); // the route checked hasRoom()
    this.pending++;
    const key = addressKey(socket.address);
    this.pendingByAddress.set(key, (this.pendingByAddress.get(key) ?? 0) + 1);
    s.authTimer = this.clock.setTimeout(
      () => this.pool.close(socket, "auth_timeout"),
      this.opts.authTimeoutMs ?? 5000,
    );
  }

  closed(socket: PoolSocket): void {
    this.endAuthWait(socket);
  }

  message(socket: PoolSocket, data: RawData, isBinary: boolean): void {
    const s = session(socket);
    // The one place a v2 client message is parsed and checked (the contract in protocol.ts).
    const parsed = parseClientMessage(isBinary ? null : data.toString(), s.live);
    if (!parsed.ok && parsed.code === "bad_message")
      return this.pool.close(socket, "bad_message", parsed.message);
    if (!s.live) {
      if (parsed.secret === undefined) {
        return this.pool.close(socket, "unauthorized", 'first send {"type":"auth"}');
      }
      if (!secretMatches(this.opts.secrets(), parsed.secret)) {
        this.opts.authFailures?.fail(socket.address);
        return this.pool.close(socket, "unauthorized", "wrong secret");
      }
      // Invalid: the client is told and stays unauthenticated, its auth timeout still running.
      if (!parsed.ok) return this.sendError(socket, parsed.code, parsed.message);
      if (parsed.msg.type === "auth") {
        s.filter = makeFilter(parsed.msg.emails, parsed.msg.user_ids) ?? s.filter;
      }
      this.endAuthWait(socket);
      if (!this.pool.hasRoom()) return this.pool.close(socket, "too_many_connections");
      return this.goLive(socket);
    }
    if (!parsed.ok) return this.sendError(socket, parsed.code, parsed.message);
    switch (parsed.msg.type) {
      case "subscribe":
        s.filter = makeFilter(parsed.msg.emails ?? [], parsed.msg.user_ids);
        return this.sendSnapshot(socket);
      case "unsubscribe":
        s.filter = undefined;
        return this.sendSnapshot(socket);
      default:
        return this.sendError(socket, "unknown_type", "expected subscribe or unsubscribe");
    }
  }

  private endAuthWait(socket: PoolSocket): void {
    const s = session(socket);
    if (s?.authTimer === undefined) return;
    this.clock.clearTimeout(s.authTimer);
    s.authTimer = undefined;
    this.pending--;
    const key = addressKey(socket.address);
    const n = (this.pendingByAddress.get(key) ?? 1) - 1;
    if (n > 0) this.pendingByAddress.set(key, n);
    else this.pendingByAddress.delete(key);
  }

  /** Catch-up (exactly the missed changes, or a snapshot), then `ready`, then live batches. */
  private goLive(socket: PoolSocket): void {
    const { snapshot } = this.opts;
    const s = session(socket);
    const seq = snapshot.lastSeq;
    const epoch = snapshot.epoch;
    const missed = decideResume(s.since, { epoch, seq }, { epoch: this.logEpoch, changes: this.changeLog });
    const frames: Buffer[] = [];
    if (!missed) frames.push(this.snapshotFrame(s));
    else {
      for (let i = 0; i < missed.length; i += CATCHUP_CHUNK) {
        const part = missed.slice(i, i + CATCHUP_CHUNK);
        const items = part.filter((c) => !s.filter || matches(s.filter, c.userId, c.email));
        if (items.length === 0) continue;
        const last = part[part.length - 1]!.seq;
        frames.push(
          textFrame(
            `{"type":"changes","epoch":"${epoch}","seq":${last},"changes":[${items.map(changeJson).join(",")}]}`,
          ),
        );
      }
    }
    s.live = true;
    s.since = undefined;
    this.pool.count(socket);
    setMaxPayload(socket, MAX_CLIENT_MESSAGE_BYTES);
    // The snapshot is written on its own, not copied into one buffer with `ready`: unfiltered, it
    // is the same frame for every socket (see snapshotFrame).
    const catchUp = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    const shared = !missed && !s.filter;
    if (catchUp.length > 0 && !this.pool.write(socket, catchUp, frames.length, true, shared)) return;
    this.pool.write(
      socket,
      textFrame(`{"type":"ready","epoch":"${epoch}","seq":${seq},"resumed":${missed !== undefined}}`),
    );
  }

  /** A subscription's snapshot: a catch-up, refused (and the socket closed) over an undrained one. */
  private sendSnapshot(socket: PoolSocket): void {
    const s = session(socket);
    this.pool.write(socket, this.snapshotFrame(s), 1, true, !s.filter);
  }

  /**
   * A `snapshot` message for the socket's people. The unfiltered one is framed once per snapshot
   * version and the same bytes are queued on every socket that needs it: built per socket, 200
   * sockets connecting at once to a 30,000-user directory allocated 2.7 GB of copies (RSS 998 MB).
   */
  private snapshotFrame(s: { filter?: UserFilter | undefined }): Buffer {
    const { view } = this.opts;
    if (s.filter) return textFrame(view.body(s.filter, '"type":"snapshot",').json);
    if (this.sharedSnapshot?.version !== view.version) {
      this.sharedSnapshot = {
        version: view.version,
        frame: textFrame(view.body(undefined, '"type":"snapshot",').json),
      };
    }
    return this.sharedSnapshot.frame;
  }

  private sendError(socket: PoolSocket, code: string, message: string): void {
    this.pool.write(socket, textFrame(JSON.stringify({ type: "error", code, message })));
  }
}
