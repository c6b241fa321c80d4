/**
 * A client of the gateway's presence API v2 (docs/API-V2.md):
 *
 * ```ts
 * import { PresenceClient } from "mattermost-outlook-presence/client";
 * const client = new PresenceClient({ url: "https://presence.example.com", secret });
 * client.on("changes", (changes) => console.log(changes));
 * client.start();
 * ```
 *
 * It keeps a view of everyone (or of its subscription) in `users`, resumes the stream from the
 * last position (epoch and seq) it processed after any disconnect (so nothing is lost while the
 * gateway still retains the changes; otherwise it receives a fresh snapshot), and reconnects with
 * exponential backoff.
 */
import { EventEmitter } from "node:events";
import WebSocket from "ws";
import {
  ErrorResponse,
  V2_CLOSE,
  V2_MAX_AUTH_MESSAGE_BYTES,
  type AuthMessage,
  type ChangeJson,
  type ChangesMessage,
  type ClientMessage,
  type ErrorMessage,
  type PresenceQuery,
  type PresenceResponse,
  type PresenceStatus,
  type PresenceUserJson,
  type ReadyMessage,
  type ServerMessage,
  type SnapshotMessage,
  type SubscribeMessage,
  type UnsubscribeMessage,
} from "../http/v2/protocol.js";
import { parsePosition } from "../presence/position.js";

// The wire types are the server's own, derived from its zod contract (src/http/v2/protocol.ts).
export type {
  AuthMessage,
  ChangeJson,
  ChangesMessage,
  ClientMessage,
  ErrorMessage,
  PresenceQuery,
  PresenceResponse,
  PresenceStatus,
  PresenceUserJson,
  ReadyMessage,
  ServerMessage,
  SnapshotMessage,
  SubscribeMessage,
  UnsubscribeMessage,
};

/** Close codes of /api/v2/stream: the server's own table. */
export const STREAM_CLOSE = V2_CLOSE;

export interface PresenceFilter {
  emails?: readonly string[];
  userIds?: readonly string[];
}

export interface PresenceClientOptions extends PresenceFilter {
  /** The gateway's base URL, e.g. https://presence.example.com (http, https, ws or wss). */
  url: string;
  /** The presence secret (sent as `Authorization: Bearer`). */
  secret: string;
  /** First reconnect delay; doubled after each failed attempt up to maxBackoffMs. Default 500. */
  minBackoffMs?: number;
  /** Default 30000. */
  maxBackoffMs?: number;
  /** A socket that received nothing (not even a ping) for this long is dropped. Default 75000. */
  idleTimeoutMs?: number;
  /**
   * Resume from here on the first connect: a `position` saved earlier (`<epoch>:<seq>`). A bare
   * seq is accepted but always answered with a snapshot (it cannot be tied to an epoch).
   */
  since?: string | number;
}

/** One person as the client knows them. */
export interface PresenceEntry {
  user_id: string;
  email: string;
  status: PresenceStatus;
  /** "" when only known from a change (not yet in a snapshot). */
  username: string;
  manual: boolean;
  last_activity_at: number;
  /** When the last change was seen by the gateway (ms since epoch); 0 when from a snapshot. */
  changed_at: number;
}

export interface PresenceClientEvents {
  /** Connected and authenticated; catch-up follows. */
  open: [];
  /** The view was replaced (first connect, resume too old, or a new subscription). */
  snapshot: [message: SnapshotMessage];
  /** Changes in order (one message: one poll cycle, or a part of a catch-up). */
  changes: [changes: ChangeJson[], seq: number];
  /** Caught up; from here on, live. `resumed` false: a snapshot was sent instead of missed changes. */
  ready: [message: ReadyMessage];
  /** The socket closed; the client reconnects unless stopped or the secret was refused. */
  disconnected: [info: { code: number; reason: string }];
  reconnecting: [info: { attempt: number; delayMs: number }];
  /** The server refused a message (e.g. an invalid subscription). */
  serverError: [message: ErrorMessage];
  /** Connection problems (the client keeps retrying) and, fatally, a refused secret (it stops). */
  error: [err: Error];
  /** stop() was called, or the secret was refused. */
  stopped: [];
}

/** An error answer of the HTTP API. */
export class PresenceApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "PresenceApiError";
  }
}

/** Filters longer than this (in URL characters) go in a request body or an auth message. */
const MAX_QUERY_CHARS = 4000;

export class PresenceClient extends EventEmitter<PresenceClientEvents> {
  /** Everyone the stream covers, by user id. */
  readonly users = new Map<string, PresenceEntry>();
  private readonly base: URL;
  private filter: PresenceFilter | undefined;
  private ws: WebSocket | undefined;
  private seq: number | undefined;
  private epoch: string | undefined;
  private running = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private live = false;
  /**
   * Set while a subscription too long for the auth message is being set up: the empty catch-up
   * and its `ready` are not the view asked for; the subscription's snapshot is, and it is
   * followed by the `ready` held back (`held`).
   */
  private split: { held?: ReadyMessage } | undefined;

  constructor(private readonly opts: PresenceClientOptions) {
    super();
    this.base = new URL(opts.url);
    this.filter = opts.emails || opts.userIds ? { emails: opts.emails, userIds: opts.userIds } : undefined;
    // A malformed saved position would be refused (400) on every reconnect: start afresh instead.
    const since = opts.since === undefined ? undefined : parsePosition(String(opts.since));
    this.epoch = since?.epoch;
    this.seq = since?.seq;
  }

  /** Where a reconnect resumes from, `<epoch>:<seq>`: save it to resume after a restart. */
  get position(): string | undefined {
    if (this.seq === undefined) return undefined;
    return this.epoch === undefined ? String(this.seq) : `${this.epoch}:${this.seq}`;
  }

  /** The seq of the last message processed (a reconnect resumes from `position`). */
  get lastSeq(): number | undefined {
    return this.seq;
  }

  /** True between `ready` and the next disconnect. */
  get isLive(): boolean {
    return this.live;
  }

  /** GET /api/v2/presence (or POST …/query for a long filter). */
  async fetchPresence(filter: PresenceFilter | undefined = this.filter): Promise<PresenceResponse> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.opts.secret}` };
    const url = this.httpUrl("/api/v2/presence");
    const query = filterQuery(filter);
    let res: Response;
    if (query.length <= MAX_QUERY_CHARS) {
      url.search = query;
      res = await fetch(url, { headers });
    } else {
      const body: PresenceQuery = {};
      if (filter?.emails) body.emails = [...filter.emails];
      if (filter?.userIds) body.user_ids = [...filter.userIds];
      res = await fetch(this.httpUrl("/api/v2/presence/query"), {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    }
    const text = await res.text();
    if (res.status !== 200) {
      let code = "http_error";
      let message = `HTTP ${res.status}`;
      try {
        const e = ErrorResponse.safeParse(JSON.parse(text));
        // Otherwise not the gateway's error shape (a proxy's JSON): keep the status.
        if (e.success) ({ code, message } = e.data.error);
      } catch {
        // not JSON: a proxy's page; keep the status
      }
      throw new PresenceApiError(res.status, code, message);
    }
    return JSON.parse(text) as PresenceResponse;
  }

  /** Connects the stream (and keeps it connected until stop()). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes the stream; `lastSeq` and `users` are kept, so start() resumes where it stopped. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.retryTimer);
    clearTimeout(this.idleTimer);
    const ws = this.ws;
    this.ws = undefined;
    this.live = false;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, "client stopping");
      // A server that does not answer the close handshake is cut; "close" follows terminate().
      const timer = setTimeout(() => ws.terminate(), 2000);
      await closed;
      clearTimeout(timer);
    }
    this.emit("stopped");
  }

  /** Replaces the subscription (undefined: everyone); the server answers with a snapshot of it. */
  subscribe(filter: PresenceFilter | undefined): void {
    this.filter = filter;
    if (!this.ws || !this.live) return; // the next connect uses it
    this.send(
      this.ws,
      filter
        ? { type: "subscribe", emails: [...(filter.emails ?? [])], user_ids: [...(filter.userIds ?? [])] }
        : { type: "unsubscribe" },
    );
  }

  private httpUrl(path: string): URL {
    const url = new URL(this.base.href);
    url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
    url.pathname = `${url.pathname.replace(/\/+$/, "")}${path}`;
    return url;
  }

  private connect(): void {
    const url = this.httpUrl("/api/v2/stream");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams();
    const since = this.position;
    if (since !== undefined) params.set("since", since);
    const query = filterQuery(this.filter);
    const inAuthMessage = query.length > MAX_QUERY_CHARS;
    url.search = inAuthMessage ? params.toString() : [params.toString(), query].filter(Boolean).join("&");
    this.split = undefined;
    const ws = new WebSocket(url, {
      headers: inAuthMessage ? {} : { Authorization: `Bearer ${this.opts.secret}` },
      handshakeTimeout: 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on("open", () => {
      if (inAuthMessage) {
        const emails = [...(this.filter?.emails ?? [])];
        const userIds = [...(this.filter?.userIds ?? [])];
        const auth: AuthMessage = { type: "auth", secret: this.opts.secret, emails, user_ids: userIds };
        if (Buffer.byteLength(JSON.stringify(auth)) <= V2_MAX_AUTH_MESSAGE_BYTES) this.send(ws, auth);
        else {
          // Too long to send before authenticating: authenticate covering nobody (an empty
          // snapshot), then subscribe, which is answered by the snapshot of the people asked for.
          this.send(ws, { type: "auth", secret: this.opts.secret, emails: [], user_ids: [] });
          this.send(ws, { type: "subscribe", emails, user_ids: userIds });
          this.split = {};
        }
      }
      this.touch(ws);
      this.emit("open");
    });
    ws.on("ping", () => this.touch(ws));
    ws.on("message", (data) => {
      this.touch(ws);
      let msg: ServerMessage;
      try {
        msg = JSON.parse(data.toString()) as ServerMessage;
      } catch {
        this.fail(new Error("the server sent a message that is not JSON"));
        return;
      }
      this.handle(msg);
    });
    ws.on("unexpected-response", (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      if (status === 401 || status === 403) {
        this.fatal(new PresenceApiError(status, "unauthorized", "the gateway refused the secret"));
      } else {
        this.fail(new PresenceApiError(status, "upgrade_refused", `stream refused: HTTP ${status}`));
      }
      ws.terminate();
    });
    ws.on("error", (err) => this.fail(err));
    ws.on("close", (code, reason) => {
      if (this.ws !== ws) return;
      clearTimeout(this.idleTimer);
      this.ws = undefined;
      this.live = false;
      this.emit("disconnected", { code, reason: reason.toString() });
      if (code === STREAM_CLOSE.unauthorized) {
        this.fatal(new PresenceApiError(401, "unauthorized", `the gateway refused the secret (${reason})`));
        return;
      }
      this.scheduleReconnect();
    });
  }

  private handle(msg: ServerMessage): void {
    const split = this.split;
    if (split !== undefined) {
      if (msg.type === "ready") split.held = msg;
      // The subscription's answer: its snapshot, or an error (then live with the empty view).
      if (split.held && (msg.type === "snapshot" || msg.type === "error")) {
        this.split = undefined;
        this.handle(msg);
        const seq = msg.type === "snapshot" ? msg.seq : split.held.seq;
        this.handle({
          type: "ready",
          epoch: msg.type === "snapshot" ? msg.epoch : split.held.epoch,
          seq,
          resumed: false,
        });
      }
      return;
    }
    switch (msg.type) {
      case "snapshot":
        this.users.clear();
        for (const u of msg.users) this.users.set(u.user_id, { ...u, changed_at: 0 });
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        this.emit("snapshot", msg);
        return;
      case "changes":
        for (const c of msg.changes) {
          const old = this.users.get(c.user_id);
          this.users.set(c.user_id, {
            user_id: c.user_id,
            email: c.email,
            status: c.status,
            username: old?.username ?? "",
            manual: old?.manual ?? false,
            last_activity_at: old?.last_activity_at ?? 0,
            changed_at: c.at,
          });
        }
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        this.emit("changes", msg.changes, msg.seq);
        return;
      case "ready":
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        this.attempt = 0;
        this.live = true;
        this.emit("ready", msg);
        return;
      case "error":
        this.emit("serverError", msg);
        return;
    }
  }

  private send(ws: WebSocket, msg: ClientMessage): void {
    ws.send(JSON.stringify(msg));
  }

  /** Any frame (or ping) proves the connection alive. */
  private touch(ws: WebSocket): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.ws === ws) ws.terminate();
    }, this.opts.idleTimeoutMs ?? 75_000);
    this.idleTimer.unref();
  }

  private scheduleReconnect(): void {
    if (!this.running) return;
    this.attempt++;
    const min = this.opts.minBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const ceiling = Math.min(max, min * 2 ** Math.min(this.attempt - 1, 20));
    const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.emit("reconnecting", { attempt: this.attempt, delayMs });
    this.retryTimer = setTimeout(() => {
      if (this.running) this.connect();
    }, delayMs);
  }

  private fail(err: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  private fatal(err: Error): void {
    this.fail(err);
    void this.stop();
  }
}

function filterQuery(filter: PresenceFilter | undefined): string {
  if (!filter) return "";
  const params = new URLSearchParams();
  params.set("emails", (filter.emails ?? []).join(","));
  if (filter.userIds) params.set("user_ids", filter.userIds.join(","));
  return params.toString();
}
