import {
  STATUS_CODES,
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Duplex } from "node:stream";
import { redactUrl, type Logger } from "../log.js";
import type { Telemetry } from "../telemetry.js";
import { peerAddress, type ClientAddress } from "./client-address.js";
import { ERRORS, errorBody, sendError, type ErrorCode } from "./errors.js";
import type { AuthFailures } from "./auth-limit.js";
import { discardBody } from "./body.js";
import { checkAuth, type Refusal, type RouteAuth } from "./route-auth.js";

/**
 * A plain HTTP route: exact path, the methods it takes, the credential it takes. The handler runs
 * only once the router has checked that credential (http/route-auth.ts).
 */
export interface HttpRoute {
  path: string;
  methods: readonly string[];
  auth: RouteAuth;
  handle(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void;
}

/**
 * A WebSocket path: the credential it takes, checked by the router before `handle` completes (or
 * refuses) the upgrade. `presented` is "none" only for a credential that lets a request without
 * one through (`passesMissing`).
 */
export interface UpgradeRoute {
  path: string;
  auth: RouteAuth;
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestUrl, presented: "ok" | "none"): void;
}

/** What a feature adds to the server; the gateway composes them (compat API, health, ...). */
export interface HttpModule {
  routes?: readonly HttpRoute[];
  upgrades?: readonly UpgradeRoute[];
}

/** Answers an upgrade request with an HTTP error and closes the socket; no WebSocket is opened. */
export function refuseUpgrade(
  socket: Duplex,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = errorBody(code, message);
  const status = ERRORS[code];
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function sendJson(res: ServerResponse, code: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

/** Whether `Accept-Encoding` accepts gzip: listed, and not with `q=0` (which means "never"). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header || !/gzip/i.test(header)) return false;
  for (const part of header.split(",")) {
    const [coding = "", ...params] = part.split(";");
    if (coding.trim().toLowerCase() !== "gzip") continue;
    const q = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/** Answers a request its route's credential refused (the route's own refusal, or the limiter's 429). */
function refuseRequest(
  req: IncomingMessage,
  res: ServerResponse,
  refusal: Refusal,
  retryAfter?: number,
): void {
  discardBody(req); // a refused body is never read, but what is drained is bounded (body.ts)
  if (refusal.send) return refusal.send(res);
  const headers: Record<string, string> = {};
  if (retryAfter !== undefined) headers["Retry-After"] = String(retryAfter);
  if (refusal.challenge !== undefined) headers["WWW-Authenticate"] = refusal.challenge;
  sendError(res, refusal.code, refusal.message, headers);
}

/** What handlers read of a request's URL. */
export interface RequestUrl {
  readonly pathname: string;
  readonly searchParams: URLSearchParams;
}

/**
 * Paths that a URL parser would rewrite into another path: backslashes, dot segments, and
 * escaped dots, slashes or backslashes. They are refused (404), never resolved: behind the
 * documented nginx prefix route, `/plugins/com.mattermost.outlook-presence/..\..\metrics`
 * stays under the prefix for nginx (a backslash is no separator there) but would resolve to
 * `/metrics` here, putting the private routes on the public hostname.
 */
const REWRITABLE = /\\|%2e|%2f|%5c|(?:^|\/)\.{1,2}(?:\/|$)/i;

/**
 * The request target as a path and query, or undefined (404) for one that is not a plain path.
 * Origin-form targets (all that proxies and providers send) are split by hand, which also costs a
 * fraction of `new URL` on every /status request; an absolute-form target goes through WHATWG URL
 * (it can no longer rewrite the path, see REWRITABLE).
 */
function parseUrl(req: IncomingMessage): RequestUrl | undefined {
  const raw = req.url ?? "/";
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  if (REWRITABLE.test(path)) return undefined;
  if (raw.charCodeAt(0) === 47 /* / */) {
    return { pathname: path, searchParams: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)) };
  }
  try {
    return new URL(raw);
  } catch {
    return undefined;
  }
}

/**
 * The route key of a path: repeated slashes collapsed (a provider configured with a server URL
 * ending in "/" asks for `//plugins/...`, and nginx passes that on as sent) and trailing ones
 * dropped.
 */
function normalize(path: string): string {
  const p = path.includes("//") ? path.replace(/\/{2,}/g, "/") : path;
  if (p.charCodeAt(p.length - 1) !== 47 /* / */) return p; // the usual case: no copy, no regex
  return p.replace(/\/+$/, "") || "/";
}

/** One debug line per answered request; the query's secret is redacted, headers are not logged. */
function logRequest(
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  clientAddress: ClientAddress,
): void {
  const started = performance.now();
  res.once("finish", () =>
    log.debug(
      {
        event: "http_request",
        method: req.method,
        url: redactUrl(req.url ?? ""),
        status: res.statusCode,
        remote: clientAddress(req),
        ms: Math.round((performance.now() - started) * 10) / 10,
      },
      "request",
    ),
  );
}

/**
 * node:http with an exact-path route table. A handler that throws gets a 500 JSON answer and one
 * log line (with the secret redacted from the URL); the process never goes down for a request.
 */
export interface ServerOptions {
  clientAddress?: ClientAddress;
  /** A connection with no traffic either way for this long is closed (WebSockets excepted). */
  idleTimeoutMs?: number;
  /** A request's headers must arrive within this (default 20 s); smaller in tests. */
  headersTimeoutMs?: number;
  /** A whole request, body included, must arrive within this (default 60 s); smaller in tests. */
  requestTimeoutMs?: number;
  /** Failed credential checks, limited per address across every route; unset: not limited. */
  authFailures?: AuthFailures;
}

/**
 * How often Node looks for requests past their header or request timeout. Node only checks every
 * `connectionsCheckingInterval` (30 s by default), so a slow-header socket was held 31–40 s
 * against a documented 20 s and a dripped body 88 s against 60 s (security review). Checking at
 * least every second keeps each bound within a second of what is documented; a check walks only
 * the connections with a request in progress, not the WebSockets.
 */
export function timeoutCheckMs(headersTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(headersTimeoutMs / 4)));
}

export function createHttpServer(
  log: Logger,
  telemetry: Telemetry,
  modules: readonly HttpModule[],
  opts: ServerOptions = {},
): Server {
  const clientAddress = opts.clientAddress ?? peerAddress;
  const routes = new Map<string, HttpRoute>();
  const upgrades = new Map<string, UpgradeRoute>();
  for (const m of modules) {
    for (const r of m.routes ?? []) routes.set(normalize(r.path), r);
    for (const u of m.upgrades ?? []) upgrades.set(normalize(u.path), u);
  }

  const headersTimeout = opts.headersTimeoutMs ?? 20_000;
  const server = createServer({ connectionsCheckingInterval: timeoutCheckMs(headersTimeout) }, (req, res) => {
    if (log.isLevelEnabled("debug")) logRequest(log, req, res, clientAddress);
    const url = parseUrl(req);
    try {
      const route = url && routes.get(normalize(url.pathname));
      if (!url || !route) {
        telemetry.httpRequest("other", 404);
        return sendError(res, "not_found", "no such path");
      }
      const method = req.method ?? "GET";
      if (!route.methods.includes(method)) {
        const allow = route.methods.join(", ");
        sendError(res, "method_not_allowed", `use ${allow}`, { Allow: allow });
      } else {
        const verdict = checkAuth(route.auth, req, url, opts.authFailures);
        if (verdict.pass) route.handle(req, res, url);
        else refuseRequest(req, res, verdict.refusal, verdict.retryAfter);
      }
      // Most answers are written synchronously (pages are pre-built): count them now rather
      // than through a listener per request; the others when they finish.
      if (res.headersSent) telemetry.httpRequest(route.path, res.statusCode);
      else res.once("finish", () => telemetry.httpRequest(route.path, res.statusCode));
    } catch (err) {
      log.error(
        { event: "http_error", url: redactUrl(req.url ?? ""), err: (err as Error).stack },
        "request failed",
      );
      if (!res.headersSent) sendError(res, "internal", "internal error");
      else res.destroy();
    }
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", ignoreError);
    const url = parseUrl(req);
    const route = url && upgrades.get(normalize(url.pathname));
    if (!url || !route) return refuseUpgrade(socket, "not_found", "no such path");
    try {
      const verdict = checkAuth(route.auth, req, url, opts.authFailures);
      if (verdict.pass) {
        route.handle(req, socket, head, url, verdict.presented);
        // Accepted: `ws` listens for the socket's errors now; one listener less per open socket.
        if (socket.listenerCount("error") > 1) socket.off("error", ignoreError);
        return;
      }
      // No WWW-Authenticate here: no WebSocket client answers a challenge.
      const { refusal, retryAfter } = verdict;
      telemetry.wsRefused(refusal.code);
      refuseUpgrade(
        socket,
        refusal.code,
        refusal.message,
        retryAfter === undefined ? {} : { "Retry-After": String(retryAfter) },
      );
    } catch (err) {
      log.error(
        { event: "upgrade_error", url: redactUrl(req.url ?? ""), err: (err as Error).stack },
        "upgrade failed",
      );
      refuseUpgrade(socket, "internal", "internal error");
    }
  });

  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    // A request past headersTimeout/requestTimeout is told so (408), as Node's default does.
    const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });

  // Node's header and request timeouts start with a request's first byte: a connection that
  // never sends one would hold its file descriptor forever, and enough of them lock every
  // desktop out. Any HTTP connection quiet for idleTimeoutMs is closed; WebSockets are not
  // affected (`ws` clears the socket timeout on upgrade, and pings its own).
  server.timeout = opts.idleTimeoutMs ?? 30_000;
  server.headersTimeout = headersTimeout;
  server.requestTimeout = opts.requestTimeoutMs ?? 60_000;
  // After listening, accept errors (EMFILE when out of file descriptors) arrive here: without a
  // listener they would end the process.
  server.on("error", (err) => {
    if (server.listening) log.warn({ event: "server_error", err: err.message }, "HTTP server error");
  });
  return server;
}

/** Errors of a socket being upgraded (a refused one is answered and closed; `ws` takes the rest). */
function ignoreError(): void {}
