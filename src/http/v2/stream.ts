import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { Logger } from "../../log.js";
import { ChangeLog } from "../../presence/change-log.js";
import { decideResume, type Position } from "../../presence/position.js";
import type { Change, PresenceSnapshot } from "../../presence/snapshot.js";
import { secretMatches } from "../auth.js";
import { pingPool, setMaxPayload, textFrame, type Pingable } from "../ws-frames.js";
import { UnsentBytes } from "../unsent-bytes.js";
import { addressKey } from "../auth-limit.js";
import type { AuthFailures } from "../auth-limit.js";
import { V2_CLOSE, V2_MAX_AUTH_MESSAGE_BYTES, parseClientMessage } from "./protocol.js";
import { changeJson, makeFilter, matches, type PresenceView, type UserFilter } from "./view.js";
import { peerAddress, remoteLabel, type ClientAddress } from "../client-address.js";
import type { ProviderSocket } from "../provider-sockets.js";

export interface StreamOptions {
  snapshot: PresenceSnapshot;
  view: PresenceView;
  log: Logger;
  secrets: () => readonly string[];
  /** Changes kept for resuming (PRESENCE_V2_RETAINED_CHANGES). */
  retainedChanges: number;
  /** A socket with more unsent bytes than this (beyond its catch-up) is closed with 1013. */
  maxBufferBytes: number;
  /** The unsent-bytes cap shared with the other pool; default: one of its own, per socket only. */
  unsent?: UnsentBytes;
  pingIntervalMs: number;
  /** How long a socket without an Authorization header has to send its auth message. */
  authTimeoutMs?: number;
  /**
   * Whether one more authenticated socket fits the shared PRESENCE_MAX_CONNECTIONS; asked when a
   * socket authenticates by message (header-authorized ones are checked before the upgrade).
   */
  admit?: () => boolean;
  /** Wrong secrets in auth messages count with every other credential check. */
  authFailures?: AuthFailures;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
}

/** What the upgrade request said, checked before the handshake. */
export interface StreamStart {
  authorized: boolean;
  since: Position | undefined;
  filter: UserFilter | undefined;
}

interface Client extends Pingable {
  readonly ws: WebSocket;
  readonly remote: string;
  /** The client's address, for the auth-failure limit. */
  readonly address: string;
  live: boolean;
  since: Position | undefined;
  filter: UserFilter | undefined;
  /** Set while the socket has not sent its auth message yet. */
  authTimer?: NodeJS.Timeout;
  /** For the admin page's list of providers. */
  readonly connectedAt: number;
  sent: number;
}

/** Client messages tolerated per ping interval (a client sends a handful: auth, subscribe). */
const MAX_CLIENT_MESSAGES_PER_ROUND = 100;
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

/**
 * The /api/v2/stream pool. One snapshot change batch becomes one `changes` message: framed once
 * and written as the same bytes to every unsubscribed socket; a subscribed socket gets its own
 * message holding only its people (built per socket, and only when it has some). A resuming
 * socket first gets exactly the changes after its `since` from the retained log (or a snapshot
 * when they are no longer all there), then `ready`, then live batches.
 */
export class V2Stream {
  readonly changeLog: ChangeLog;
  /** The epoch the change log's numbers belong to. */
  private logEpoch: string | undefined;
  private readonly wss = new WebSocketServer({
    noServer: true,
    // Raised to MAX_CLIENT_MESSAGE_BYTES once the socket has authenticated (setMaxPayload).
    maxPayload: V2_MAX_AUTH_MESSAGE_BYTES,
    perMessageDeflate: false, // frames are pre-built and written raw (see writeFrames)
    clientTracking: false,
  });
  private readonly clients = new Map<WebSocket, Client>();
  private pending = 0;
  /** Sockets waiting for their auth message, by addressKey. */
  private readonly pendingByAddress = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  private readonly unsent: UnsentBytes;
  /** The unfiltered `snapshot` frame of one snapshot version (see snapshotFrame). */
  private sharedSnapshot: { version: number; frame: Buffer } | undefined;

  constructor(private readonly opts: StreamOptions) {
    this.changeLog = new ChangeLog(opts.retainedChanges);
    this.unsent =
      opts.unsent ??
      new UnsentBytes({ perSocket: opts.maxBufferBytes, total: Number.MAX_SAFE_INTEGER, log: opts.log });
  }

  /** Open sockets, authenticated or not (the metric). */
  get size(): number {
    return this.clients.size;
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

  /** Sockets that count in the shared connection limit. */
  get authenticated(): number {
    return this.clients.size - this.pending;
  }

  /** The authenticated sockets, copied when asked (for the admin page). */
  *list(): Iterable<ProviderSocket> {
    for (const c of this.clients.values()) {
      if (!c.live) continue;
      yield {
        address: c.address,
        remote: c.remote,
        protocol: "v2",
        connectedAt: c.connectedAt,
        sent: c.sent,
      };
    }
  }

  /** Subscribes to the snapshot; call before the first change can happen (before sync starts). */
  start(): void {
    this.unsubscribe = this.opts.snapshot.onChanges((changes, meta?: { resync?: boolean }) =>
      this.broadcast(changes, meta?.resync === true),
    );
    this.timers.push(setInterval(() => this.pingRound(), this.opts.pingIntervalMs).unref());
    if (!this.opts.unsent) this.unsent.start();
  }

  accept(req: IncomingMessage, socket: Duplex, head: Buffer, start: StreamStart): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onOpen(ws, req, start));
  }

  /** Closes every socket (1001) and stops the timers. */
  close(): void {
    this.unsubscribe?.();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (!this.opts.unsent) this.unsent.stop();
    for (const [ws, client] of this.clients) {
      client.closeReason = "shutdown";
      clearTimeout(client.authTimer);
      ws.close(V2_CLOSE.goingAway, "server shutting down");
    }
  }

  terminateAll(): void {
    for (const ws of this.clients.keys()) ws.terminate();
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
    for (const client of this.clients.values()) {
      if (!client.live) continue;
      items ??= changes.map(changeJson);
      if (!client.filter) {
        shared ??= textFrame(`${head}${items.join(",")}]}`);
        this.write(client, shared);
        continue;
      }
      const mine: string[] = [];
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        if (matches(client.filter, c.userId, c.email)) mine.push(items[i]!);
      }
      if (mine.length > 0) {
        this.write(client, textFrame(`${head}${mine.join(",")}]}`));
      }
    }
  }

  private onOpen(ws: WebSocket, req: IncomingMessage, start: StreamStart): void {
    const address = (this.opts.clientAddress ?? peerAddress)(req);
    const remote = remoteLabel(req, this.opts.clientAddress ?? peerAddress);
    const client: Client = {
      ws,
      remote,
      address,
      live: false,
      since: start.since,
      filter: start.filter,
      alive: true,
      received: 0,
      connectedAt: Date.now(),
      sent: 0,
    };
    this.clients.set(ws, client);
    this.unsent.add(client, "v2", (reason) =>
      this.closeWith(client, V2_CLOSE.tooSlow, reason, "too slow: reconnect with since"),
    );
    this.opts.log.info(
      {
        event: "v2_connect",
        remote,
        since: start.since && `${start.since.epoch ?? ""}:${start.since.seq}`,
        sockets: this.clients.size,
      },
      "v2 stream client connected",
    );
    ws.on("pong", () => (client.alive = true));
    ws.on("message", (data, isBinary) => this.onMessage(client, data, isBinary));
    ws.on("error", (err) =>
      this.opts.log.debug({ event: "v2_ws_error", remote, err: err.message }, "v2 socket error"),
    );
    ws.on("close", (code) => {
      this.endAuthWait(client);
      this.clients.delete(ws);
      this.unsent.delete(client);
      this.opts.log.info(
        {
          event: "v2_disconnect",
          remote,
          code,
          reason: client.closeReason ?? "client",
          sockets: this.clients.size,
        },
        "v2 stream client disconnected",
      );
    });
    if (start.authorized) {
      this.goLive(client);
    } else {
      this.pending++;
      const key = addressKey(address);
      this.pendingByAddress.set(key, (this.pendingByAddress.get(key) ?? 0) + 1);
      client.authTimer = setTimeout(
        () => this.closeWith(client, V2_CLOSE.unauthorized, "auth_timeout", "no auth message in time"),
        this.opts.authTimeoutMs ?? 5000,
      );
    }
  }

  private onMessage(client: Client, data: RawData, isBinary: boolean): void {
    if (client.closeReason) return;
    if (++client.received > MAX_CLIENT_MESSAGES_PER_ROUND) {
      return this.closeWith(client, V2_CLOSE.protocolError, "abuse", "too many client messages");
    }
    const parsed = parseClientMessage(isBinary ? null : data.toString(), client.live);
    if (!parsed.ok && parsed.code === "bad_message") {
      return this.closeWith(client, V2_CLOSE.protocolError, "bad_message", parsed.message);
    }
    if (!client.live) {
      if (parsed.secret === undefined) {
        return this.closeWith(client, V2_CLOSE.unauthorized, "unauthorized", 'first send {"type":"auth"}');
      }
      if (!secretMatches(this.opts.secrets(), parsed.secret)) {
        this.opts.authFailures?.fail(client.address);
        return this.closeWith(client, V2_CLOSE.unauthorized, "unauthorized", "wrong secret");
      }
      // Invalid: the client is told and stays unauthenticated, its auth timeout still running.
      if (!parsed.ok) return this.sendError(client, parsed.code, parsed.message);
      if (parsed.msg.type === "auth") {
        client.filter = makeFilter(parsed.msg.emails, parsed.msg.user_ids) ?? client.filter;
      }
      this.endAuthWait(client);
      if (this.opts.admit?.() === false) {
        return this.closeWith(client, V2_CLOSE.tooSlow, "too_many_connections", "connection limit reached");
      }
      return this.goLive(client);
    }
    if (!parsed.ok) return this.sendError(client, parsed.code, parsed.message);
    switch (parsed.msg.type) {
      case "subscribe":
        client.filter = makeFilter(parsed.msg.emails ?? [], parsed.msg.user_ids);
        return this.sendSnapshot(client);
      case "unsubscribe":
        client.filter = undefined;
        return this.sendSnapshot(client);
      default:
        return this.sendError(client, "unknown_type", "expected subscribe or unsubscribe");
    }
  }

  private endAuthWait(client: Client): void {
    if (client.authTimer === undefined) return;
    clearTimeout(client.authTimer);
    client.authTimer = undefined;
    this.pending--;
    const key = addressKey(client.address);
    const n = (this.pendingByAddress.get(key) ?? 1) - 1;
    if (n > 0) this.pendingByAddress.set(key, n);
    else this.pendingByAddress.delete(key);
  }

  /** Catch-up (exactly the missed changes, or a snapshot), then `ready`, then live batches. */
  private goLive(client: Client): void {
    const { snapshot } = this.opts;
    const seq = snapshot.lastSeq;
    const epoch = snapshot.epoch;
    const missed = decideResume(
      client.since,
      { epoch, seq },
      { epoch: this.logEpoch, changes: this.changeLog },
    );
    const frames: Buffer[] = [];
    if (!missed) frames.push(this.snapshotFrame(client));
    else {
      for (let i = 0; i < missed.length; i += CATCHUP_CHUNK) {
        const part = missed.slice(i, i + CATCHUP_CHUNK);
        const items = part.filter((c) => !client.filter || matches(client.filter, c.userId, c.email));
        if (items.length === 0) continue;
        const last = part[part.length - 1]!.seq;
        frames.push(
          textFrame(
            `{"type":"changes","epoch":"${epoch}","seq":${last},"changes":[${items.map(changeJson).join(",")}]}`,
          ),
        );
      }
    }
    client.live = true;
    setMaxPayload(client.ws, MAX_CLIENT_MESSAGE_BYTES);
    // The snapshot is written on its own, not copied into one buffer with `ready`: unfiltered, it
    // is the same frame for every socket (see snapshotFrame).
    const catchUp = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    const shared = !missed && !client.filter;
    if (catchUp.length > 0) {
      if (!this.unsent.write(client, catchUp, true, shared)) return;
      client.sent += frames.length;
    }
    this.write(
      client,
      textFrame(`{"type":"ready","epoch":"${epoch}","seq":${seq},"resumed":${missed !== undefined}}`),
    );
  }

  /** A subscription's snapshot: a catch-up, refused (and the socket closed) over an undrained one. */
  private sendSnapshot(client: Client): void {
    if (this.unsent.write(client, this.snapshotFrame(client), true, !client.filter)) client.sent++;
  }

  /**
   * A `snapshot` message for the socket's people. The unfiltered one is framed once per snapshot
   * version and the same bytes are queued on every socket that needs it: built per socket, 200
   * sockets connecting at once to a 30,000-user directory allocated 2.7 GB of copies (RSS 998 MB).
   */
  private snapshotFrame(client: Client): Buffer {
    const { view } = this.opts;
    if (client.filter) return textFrame(view.body(client.filter, '"type":"snapshot",').json);
    if (this.sharedSnapshot?.version !== view.version) {
      this.sharedSnapshot = {
        version: view.version,
        frame: textFrame(view.body(undefined, '"type":"snapshot",').json),
      };
    }
    return this.sharedSnapshot.frame;
  }

  private sendError(client: Client, code: string, message: string): void {
    this.write(client, textFrame(JSON.stringify({ type: "error", code, message })));
  }

  private write(client: Client, frame: Buffer): void {
    if (this.unsent.write(client, frame)) client.sent++;
  }

  /** A peer that does not read will not finish the closing handshake: cut after 1 s. */
  private closeWith(client: Client, code: number, reason: string, text: string): void {
    if (client.closeReason) return;
    client.closeReason = reason;
    clearTimeout(client.authTimer);
    client.ws.close(code, text);
    setTimeout(() => client.ws.terminate(), 1000).unref();
  }

  /** Pings every socket, a slice at a time, and drops those that did not answer the last ping. */
  private pingRound(): void {
    pingPool(
      this.clients,
      () => undefined,
      () => this.timers.length > 0,
    );
  }
}
