/**
 * Mattermost's WebSocket (GET /api/v4/websocket): auth by the upgrade's Authorization header or an
 * `authentication_challenge` message, a `hello` event, then broadcast events with a per-connection seq.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import type { SimContext } from "./context.js";
import { faultApplies } from "./faults.js";
import { API_PREFIX, earlyFaultReply } from "./http.js";
import { errors, type Reply } from "./reply.js";
import type { SimEvent } from "./state.js";

interface Conn {
  ws: WebSocket;
  connectionId: string;
  /** Next `seq` for an event on this connection (hello is 0). */
  seq: number;
  /** The token it authenticated with; undefined until authenticated. */
  token: string | undefined;
  authTimer: NodeJS.Timeout | undefined;
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

function broadcastFor(userId: string) {
  return {
    omit_users: null,
    user_id: userId,
    channel_id: "",
    team_id: "",
    connection_id: "",
    omit_connection_id: "",
  };
}

export class WsHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  private readonly conns = new Set<Conn>();

  constructor(private readonly ctx: SimContext) {}

  get size(): number {
    return this.conns.size;
  }

  /** The http server's `upgrade` listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrade(req, socket, head).catch((err: unknown) => {
      this.ctx.log(
        `simulator: websocket upgrade failed: ${err instanceof Error ? err.message : String(err)}`,
      );
      socket.destroy();
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { ctx } = this;
    const url = new URL(req.url ?? "/", "http://simulator.invalid");
    const rid = ctx.requestId();
    if (url.pathname !== `${API_PREFIX}websocket`) {
      this.rawReply(socket, rid, errors.notFound(url.pathname));
      return;
    }
    ctx.countRequest("websocket");
    const fault = faultApplies(ctx.fault, "websocket") ? ctx.fault : null;
    if (fault?.kind === "down") {
      socket.destroy();
      return;
    }
    if (fault) {
      const early = earlyFaultReply(fault, rid, req);
      if (early) {
        this.rawReply(socket, rid, early);
        return;
      }
      if (fault.kind === "slow" && !(await ctx.delay(fault.delayMs))) {
        socket.destroy();
        return;
      }
      if (socket.destroyed) return;
    }
    const token = ctx.tokenFrom(req, url);
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.onOpen(ws, ctx.isValidToken(token) ? token : undefined),
    );
  }

  private rawReply(socket: Duplex, rid: string, reply: Reply): void {
    const body = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
    const headers: Record<string, string> = {
      "Content-Type": reply.contentType,
      "Content-Length": String(body.length),
      "X-Request-Id": rid,
      "X-Version-Id": this.ctx.versionId(),
      Connection: "close",
      ...reply.headers,
    };
    const head =
      `HTTP/1.1 ${reply.status} ${STATUS_TEXT[reply.status] ?? "Error"}\r\n` +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("") +
      "\r\n";
    socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
  }

  private onOpen(ws: WebSocket, token: string | undefined): void {
    const conn: Conn = {
      ws,
      connectionId: this.ctx.requestId(),
      seq: 0,
      token: undefined,
      authTimer: undefined,
    };
    this.conns.add(conn);
    ws.on("close", () => {
      if (conn.authTimer) clearTimeout(conn.authTimer);
      this.conns.delete(conn);
    });
    ws.on("error", () => ws.terminate());
    ws.on("message", (data, isBinary) => this.onMessage(conn, data, isBinary));
    if (token !== undefined) {
      this.authenticate(conn, token);
    } else {
      conn.authTimer = setTimeout(() => {
        if (conn.token === undefined) ws.close(1008, "authentication required");
      }, this.ctx.wsAuthTimeoutMs);
    }
  }

  private authenticate(conn: Conn, token: string): void {
    if (conn.authTimer) clearTimeout(conn.authTimer);
    conn.authTimer = undefined;
    conn.token = token;
    this.ctx.log(`simulator: websocket ${conn.connectionId} authenticated (${this.conns.size} open)`);
    this.sendEvent(conn, "hello", {
      connection_id: conn.connectionId,
      server_version: this.ctx.versionId(),
      server_hostname: "simulator",
    });
  }

  private onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    if (isBinary) return;
    let msg: unknown;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (typeof msg !== "object" || msg === null) return;
    const { action, seq, data: payload } = msg as { action?: unknown; seq?: unknown; data?: unknown };
    const seqReply = typeof seq === "number" ? seq : 0;
    if (action === "authentication_challenge") {
      if (conn.token !== undefined) return; // already authenticated: Mattermost ignores it
      const token = (payload as { token?: unknown } | null | undefined)?.token;
      if (typeof token !== "string" || !this.ctx.isValidToken(token)) {
        conn.ws.close(1008, "invalid token");
        return;
      }
      this.send(conn, { status: "OK", seq_reply: seqReply });
      this.authenticate(conn, token);
      return;
    }
    const [id, message, statusCode] =
      conn.token === undefined
        ? ["api.web_socket_router.not_authenticated.app_error", "No websocket authentication", 401]
        : ["api.web_socket_router.bad_action.app_error", "Unknown WebSocket action.", 501];
    this.send(conn, {
      status: "FAIL",
      seq_reply: seqReply,
      error: { id, message, detailed_error: "", request_id: "", status_code: statusCode },
    });
  }

  private send(conn: Conn, value: unknown): void {
    if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(value));
  }

  private sendEvent(conn: Conn, event: string, data: unknown, userId = this.ctx.state.bot.id): void {
    this.send(conn, {
      event,
      data,
      broadcast: broadcastFor(event === "hello" ? userId : ""),
      seq: conn.seq++,
    });
  }

  /** Sends an event to every authenticated connection. */
  broadcast(ev: SimEvent): void {
    for (const conn of this.conns) {
      if (conn.token !== undefined) this.sendEvent(conn, ev.event, ev.data);
    }
  }

  /** Closes connections authenticated with this token (its session is gone). */
  revokeToken(token: string): void {
    for (const conn of this.conns) {
      if (conn.token === token) conn.ws.close(1008, "session expired");
    }
  }

  /** Abruptly drops every connection (outage, stop). */
  terminateAll(): void {
    for (const conn of this.conns) {
      if (conn.authTimer) clearTimeout(conn.authTimer);
      conn.ws.terminate();
    }
    this.conns.clear();
  }

  close(): Promise<void> {
    this.terminateAll();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}
