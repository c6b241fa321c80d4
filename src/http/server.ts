import {
  STATUS_CODES,
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Duplex } from "node:stream";
import { z } from "zod";
import { redactUrl, type Logger } from "../log.js";
import { isMattermostId } from "../mattermost/client.js";
import type { PresenceSnapshot } from "../presence/snapshot.js";
import { PROVIDER_STATUSES } from "../presence/status.js";
import { presentedSecret, secretMatches } from "./auth.js";
import { ERRORS, errorBody, sendError, type ErrorCode } from "./errors.js";
import { StatusPages } from "./status-pages.js";
import type { WsHub } from "./ws-hub.js";

/** The old plugin's base path: deployed providers request exactly this. */
export const COMPAT_BASE = "/plugins/com.mattermost.outlook-presence/api/v1";

export interface HttpDeps {
  snapshot: PresenceSnapshot;
  hub: WsHub;
  log: Logger;
  /** Accepted secrets (current first); a function so a reload takes effect at once. */
  secrets: () => readonly string[];
  pageSize: () => number;
  /** Why the gateway is not ready, or undefined when it is. */
  notReadyReason: () => string | undefined;
  /** Schedules a re-read of one user's status from Mattermost; false when refused. */
  hintUser: (userId: string) => boolean;
  maxConnections: number;
}

const PAGE_RE = /^\d+$/;
const MAX_PUBLISH_BODY = 4096;
const publishBody = z.object({ user_id: z.string(), status: z.string() }).passthrough();

/**
 * The HTTP side: compat routes read pre-built pages, `/ws` upgrades are authorized before the
 * handshake, and nothing here ever calls Mattermost.
 */
export function createHttpServer(deps: HttpDeps): Server {
  const pages = new StatusPages(deps.snapshot, deps.pageSize());
  const server = createServer((req, res) => {
    try {
      route(req, res);
    } catch (err) {
      deps.log.error(
        { event: "http_error", url: redactUrl(req.url ?? ""), err: (err as Error).stack },
        "request failed",
      );
      if (!res.headersSent) sendError(res, "internal", "internal error");
      else res.destroy();
    }
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(req, socket, head));
  server.on("clientError", (_err, socket) => {
    if (socket.writable)
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });

  function parse(req: IncomingMessage): URL | undefined {
    try {
      return new URL(req.url ?? "/", "http://gateway");
    } catch {
      return undefined;
    }
  }

  function route(req: IncomingMessage, res: ServerResponse): void {
    const url = parse(req);
    if (!url) return sendError(res, "not_found", "no such path");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = req.method ?? "GET";
    const allow = (methods: string): boolean => {
      if (methods.split(",").includes(method)) return true;
      sendError(res, "method_not_allowed", `use ${methods}`, { Allow: methods });
      return false;
    };
    switch (path) {
      case `${COMPAT_BASE}/status`:
        if (allow("GET,HEAD")) status(req, res, url);
        return;
      case `${COMPAT_BASE}/status/publish`:
        if (allow("POST")) publish(req, res);
        return;
      case `${COMPAT_BASE}/ws`:
        return sendError(res, "not_websocket", "this path takes a WebSocket upgrade");
      case "/healthz":
        if (allow("GET,HEAD")) json(res, 200, { status: "ok" });
        return;
      case "/readyz": {
        if (!allow("GET,HEAD")) return;
        const reason = deps.notReadyReason();
        if (reason) return sendError(res, "not_ready", reason);
        json(res, 200, { status: "ready", users: deps.snapshot.visible().length, sockets: deps.hub.size });
        return;
      }
      default:
        sendError(res, "not_found", "no such path");
    }
  }

  function authorized(req: IncomingMessage, url: URL): boolean {
    return secretMatches(deps.secrets(), presentedSecret(req.headers.authorization, url.searchParams));
  }

  function status(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (!authorized(req, url)) return sendError(res, "invalid_secret", "missing or wrong secret");
    const raw = url.searchParams.get("page");
    if (raw !== null && raw !== "" && !PAGE_RE.test(raw)) {
      return sendError(res, "invalid_page", "page must be a non-negative integer");
    }
    const reason = deps.notReadyReason();
    if (!deps.snapshot.ready) return sendError(res, "not_ready", reason ?? "first snapshot not loaded yet");
    pages.setPageSize(deps.pageSize());
    const page = pages.get(raw ? Number(raw) : 0);
    const headers: Record<string, string | number> = {
      "Content-Type": "application/json",
      ETag: page.etag,
      "Cache-Control": "no-cache",
      Vary: "Accept-Encoding",
    };
    if (req.headers["if-none-match"] === page.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    let body = page.body;
    if (/\bgzip\b/.test(req.headers["accept-encoding"] ?? "")) {
      body = pages.gzip(page);
      headers["Content-Encoding"] = "gzip";
    }
    headers["Content-Length"] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  }

  function publish(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_PUBLISH_BODY) {
        sendError(res, "body_too_large", `at most ${MAX_PUBLISH_BODY} bytes`, { Connection: "close" });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (res.headersSent) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return sendError(res, "invalid_body", 'expected JSON {"user_id","status"}');
      }
      const parsed = publishBody.safeParse(body);
      if (!parsed.success) return sendError(res, "invalid_body", 'expected JSON {"user_id","status"}');
      if (!isMattermostId(parsed.data.user_id))
        return sendError(res, "invalid_user_id", "user id is not valid");
      if (!(PROVIDER_STATUSES as readonly string[]).includes(parsed.data.status)) {
        return sendError(res, "invalid_status", "status is not valid");
      }
      // The claim itself is ignored: only Mattermost's answer to the re-read is published.
      deps.hintUser(parsed.data.user_id);
      json(res, 200, { status: "OK" });
    });
    req.on("error", () => undefined);
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => undefined);
    const url = parse(req);
    const path = url?.pathname.replace(/\/+$/, "");
    const refuse = (code: ErrorCode, message: string): void => {
      const body = errorBody(code, message);
      socket.end(
        `HTTP/1.1 ${ERRORS[code]} ${STATUS_CODES[ERRORS[code]]}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    if (!url || path !== `${COMPAT_BASE}/ws`) return refuse("not_found", "no such path");
    if (!authorized(req, url)) return refuse("invalid_secret", "missing or wrong secret");
    if (!deps.snapshot.ready)
      return refuse("not_ready", deps.notReadyReason() ?? "first snapshot not loaded yet");
    if (deps.hub.size >= deps.maxConnections) {
      deps.log.warn({ event: "ws_refused", sockets: deps.hub.size }, "connection limit reached");
      return refuse("too_many_connections", "connection limit reached; retry later");
    }
    deps.hub.accept(req, socket, head);
  }

  return server;
}

function json(res: ServerResponse, code: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}
