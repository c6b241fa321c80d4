import { createHmac, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log.js";
import type { UpstreamHealth } from "../mattermost/sync.js";
import type { Change, PresenceSnapshot } from "../presence/snapshot.js";
import type { ProviderStatus } from "../presence/status.js";
import { VERSION } from "../version.js";
import { ADMIN_CSS, ADMIN_HTML, ADMIN_JS, SIGNIN_HTML, SIGNIN_JS } from "./admin-page.js";
import { MinuteHistory } from "./admin-history.js";
import { listProviders } from "./admin-providers.js";
import type { ProviderSocket } from "./provider-sockets.js";
import { bearerToken, constantTimeEquals } from "./auth.js";
import { errorBody, sendError } from "./errors.js";
import { sendJson, type HttpModule, type RequestUrl } from "./router.js";
import { peerAddress, remoteLabel, type ClientAddress } from "./client-address.js";
import type { Credential, Presented } from "./route-auth.js";

export interface AdminDeps {
  snapshot: PresenceSnapshot;
  log: Logger;
  /** What opens the page: PRESENCE_ADMIN_TOKEN when set, else the accepted presence secrets. */
  tokens: () => readonly string[];
  sockets: () => number;
  health: () => Readonly<UpstreamHealth>;
  notReadyReason: () => string | undefined;
  mattermostUrl: string;
  pollIntervalMs: () => number;
  /** Whether this instance polls Mattermost (with Redis, the lease holder); default true. */
  leader?: () => boolean;
  /** How often the page gets a fresh summary (default 2000 ms). */
  summaryIntervalMs?: number;
  now?: () => number;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
  /** Every open provider socket, both protocols (the page lists at most PROVIDERS_MAX). */
  providers?: () => Iterable<ProviderSocket> | Promise<Iterable<ProviderSocket>>;
  /** Signs session cookies; default a random key per process (worker processes share one). */
  sessionKey?: Buffer;
  /** Connected providers of both protocols (the card and the chart); default `sockets`. */
  providerCount?: () => number;
  /** How often the chart's provider count is sampled (default 10 s). */
  historySampleMs?: number;
}

export interface AdminSummary {
  version: string;
  now: number;
  ready: boolean;
  notReadyReason: string | null;
  leader: boolean;
  /** Compat `/ws` sockets. */
  sockets: number;
  /** Connected providers of both protocols (compat and API v2 stream). */
  providers: number;
  lastSeq: number;
  pollIntervalMs: number;
  users: {
    visible: number;
    directory: number;
    withoutEmail: number;
    byStatus: Record<ProviderStatus, number>;
  };
  upstream: {
    url: string;
    tokenRejected: boolean;
    consecutiveFailures: number;
    lastError: string | null;
    lastPollAt: number | null;
    lastPollMs: number | null;
    lastDirectoryAt: number | null;
    statusRequestsLastCycle: number;
  };
}

export interface AdminApi extends HttpModule {
  /** Ends every live feed (so shutdown does not wait for browsers) and stops the timer. */
  close(): void;
}

const COOKIE = "op_admin";
const COOKIE_MAX_AGE_S = 12 * 3600;
const RECENT_MAX = 50;
const MAX_FEEDS = 32;
/** A browser this far behind on the feed is dropped; EventSource reconnects by itself. */
const MAX_FEED_BUFFER = 256 * 1024;

const PAGE_HEADERS = {
  "Cache-Control": "no-store",
  "X-Frame-Options": "DENY",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
};

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sse(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

const changeJson = (c: Change) => ({
  seq: c.seq,
  user_id: c.userId,
  email: c.email,
  status: c.status,
  at: c.at,
});

/**
 * `/admin`: a small page for Mattermost admins: readiness, upstream health, counts by status,
 * the last hour's changes and providers (a ring of one-minute buckets), the list of connected
 * providers, a live feed of changes (server-sent events on `/admin/events`, never on
 * the compat `/ws` path, whose every message must be a status) and a lookup by email.
 *
 * Access: `Authorization: Bearer <token>` (scripts), or open `/admin?token=<token>` once: the
 * answer sets an HttpOnly, SameSite=Strict cookie and redirects to `/admin`, so the token leaves
 * the address bar. The cookie is its issue time and an HMAC of the token and that time, under a
 * key made at process start: it does not reveal the token, it is refused once older than its
 * Max-Age (12 h) even if a copy of it is replayed, and a restart or a new token signs everyone
 * out.
 */
export function adminApi(deps: AdminDeps): AdminApi {
  const now = deps.now ?? Date.now;
  const sessionKey = deps.sessionKey ?? randomBytes(32);
  const signature = (token: string, issuedAt: number): string =>
    createHmac("sha256", sessionKey).update(`${issuedAt}\n${token}`).digest("base64url");
  const sessionOf = (token: string): string => {
    const issuedAt = now();
    return `${issuedAt}.${signature(token, issuedAt)}`;
  };
  const feeds = new Set<ServerResponse>();
  const recent: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const history = new MinuteHistory(now);
  const providerCount = deps.providerCount ?? deps.sockets;
  const sampleProviders = () => history.sampleProviders(providerCount());
  const sampler = setInterval(sampleProviders, deps.historySampleMs ?? 10_000).unref();

  const matchesToken = (got: string | undefined): boolean => {
    if (!got) return false;
    let ok = false;
    for (const t of deps.tokens()) ok = constantTimeEquals(got, t) || ok; // no early exit
    return ok;
  };
  const matchesSession = (got: string | undefined): boolean => {
    const m = /^(\d{1,15})\.([\w-]+)$/.exec(got ?? "");
    if (!m) return false;
    const issuedAt = Number(m[1]);
    const age = now() - issuedAt;
    if (age < 0 || age > COOKIE_MAX_AGE_S * 1000) return false;
    let ok = false;
    for (const t of deps.tokens()) ok = constantTimeEquals(m[2]!, signature(t, issuedAt)) || ok;
    return ok;
  };
  /**
   * What a request presents: "ok" (a right token or a live session), "wrong" (a Bearer token or
   * a session cookie that is not: a guess, counted by the router's limiter) or "none" (nothing
   * presented, as on a first visit: not a guess, so not counted, as on /metrics and API v2).
   */
  const credentials = (req: IncomingMessage): Presented => {
    const header = req.headers.authorization;
    const bearer = header === undefined ? undefined : (bearerToken(header) ?? "");
    const cookie = cookieValue(req, COOKIE);
    if (matchesToken(bearer) || matchesSession(cookie)) return "ok";
    return bearer === undefined && cookie === undefined ? "none" : "wrong";
  };
  const remote = (req: IncomingMessage) => remoteLabel(req, deps.clientAddress ?? peerAddress);
  /** One warning per wrong credential under the limiter's burst (past it, one line per window). */
  const onRefused = (req: IncomingMessage): void =>
    deps.log.warn({ event: "admin_refused", remote: remote(req) }, "admin page: wrong token or session");
  /** The data routes: a token or a session, else a JSON 403. */
  const adminCredential: Credential = {
    check: credentials,
    refusal: { code: "invalid_secret", message: "admin token required" },
    onRefused,
  };
  /**
   * The page: the same, or `?token=` (a sign-in: when present it alone decides), else the
   * sign-in page with a 403.
   */
  const pageCredential: Credential = {
    check(req, url) {
      const token = url.searchParams.get("token");
      if (token === null) return credentials(req);
      return matchesToken(token) ? "ok" : "wrong";
    },
    refusal: { code: "invalid_secret", message: "admin token required", send: (res) => denied(res) },
    onRefused,
  };

  function summary(): AdminSummary {
    const h = deps.health();
    const reason = deps.notReadyReason();
    return {
      version: VERSION,
      now: now(),
      ready: reason === undefined,
      notReadyReason: reason ?? null,
      leader: deps.leader?.() ?? true,
      sockets: deps.sockets(),
      providers: providerCount(),
      lastSeq: deps.snapshot.lastSeq,
      pollIntervalMs: deps.pollIntervalMs(),
      users: {
        visible: deps.snapshot.visible().length,
        directory: deps.snapshot.size,
        withoutEmail: h.usersWithoutEmail,
        byStatus: deps.snapshot.countsByStatus(),
      },
      upstream: {
        url: deps.mattermostUrl,
        tokenRejected: h.tokenRejected,
        consecutiveFailures: h.consecutiveFailures,
        lastError: h.lastError ?? null,
        lastPollAt: h.lastPollAt ?? null,
        lastPollMs: h.lastPollMs ?? null,
        lastDirectoryAt: h.lastDirectoryAt ?? null,
        statusRequestsLastCycle: h.statusRequestsLastCycle,
      },
    };
  }

  function broadcast(chunk: string): void {
    for (const res of feeds) {
      if (res.writableLength > MAX_FEED_BUFFER) {
        res.end();
        continue;
      }
      res.write(chunk);
    }
  }

  const unsubscribe = deps.snapshot.onChanges((changes) => {
    history.addChanges(changes.length);
    // Only the newest RECENT_MAX of a burst matter to a person watching.
    const shown = changes.slice(-RECENT_MAX).map((c) => sse("change", changeJson(c), c.seq));
    recent.push(...shown);
    recent.splice(0, Math.max(0, recent.length - RECENT_MAX));
    if (feeds.size > 0) broadcast(shown.join(""));
  });

  /** Runs once pageCredential has passed: a right `?token=` signs in, anything else is the page. */
  function page(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void {
    const token = url.searchParams.get("token");
    if (token !== null) {
      deps.log.info({ event: "admin_login", remote: remote(req) }, "admin page opened with a token");
      const secure = req.headers["x-forwarded-proto"] === "https" ? "; Secure" : "";
      res.writeHead(303, {
        ...PAGE_HEADERS,
        Location: "/admin",
        "Set-Cookie": `${COOKIE}=${sessionOf(token)}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${COOKIE_MAX_AGE_S}${secure}`,
        "Content-Length": 0,
      });
      res.end();
      return;
    }
    res.writeHead(200, {
      ...PAGE_HEADERS,
      "Content-Type": "text/html; charset=utf-8",
      "Content-Length": Buffer.byteLength(ADMIN_HTML),
    });
    res.end(req.method === "HEAD" ? undefined : ADMIN_HTML);
  }

  function denied(res: ServerResponse): void {
    const body = SIGNIN_HTML;
    res.writeHead(403, {
      ...PAGE_HEADERS,
      "Content-Type": "text/html; charset=utf-8",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  }

  const asset = (body: string, type: string) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, {
      ...PAGE_HEADERS,
      "Content-Type": type,
      "Content-Length": Buffer.byteLength(body),
      "Cache-Control": "no-cache",
    });
    res.end(body);
  };

  function events(req: IncomingMessage, res: ServerResponse): void {
    if (feeds.size >= MAX_FEEDS) return sendError(res, "too_many_connections", "too many open admin pages");
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      "X-Accel-Buffering": "no", // nginx: stream, do not buffer
    });
    res.write(`retry: 3000\n\n${sse("summary", summary())}${recent.join("")}`);
    feeds.add(res);
    deps.log.debug({ event: "admin_feed_open", remote: remote(req), feeds: feeds.size }, "admin feed opened");
    res.on("close", () => {
      feeds.delete(res);
      if (feeds.size === 0) {
        clearInterval(timer);
        timer = undefined;
      }
      deps.log.debug({ event: "admin_feed_closed", feeds: feeds.size }, "admin feed closed");
    });
    timer ??= setInterval(() => broadcast(sse("summary", summary())), deps.summaryIntervalMs ?? 2000).unref();
  }

  function user(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void {
    const email = (url.searchParams.get("email") ?? "").trim().toLowerCase();
    if (!email) return sendError(res, "invalid_body", "give ?email=");
    const suggestions: string[] = [];
    for (const u of deps.snapshot.visible()) {
      const e = u.email.toLowerCase();
      if (e === email) {
        return sendJson(res, 200, {
          user_id: u.id,
          username: u.username,
          email: u.email,
          status: u.status,
          is_bot: u.isBot,
        });
      }
      if (suggestions.length < 5 && e.includes(email)) suggestions.push(u.email);
    }
    const body = JSON.parse(
      errorBody("not_found", "no active user with that email is visible to the providers"),
    ) as object;
    sendJson(res, 404, { ...body, suggestions });
  }

  function providers(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void {
    const address = url.searchParams.get("address") ?? "";
    // With worker processes the list is gathered from every worker (asynchronously).
    void Promise.resolve(deps.providers?.() ?? []).then(
      (list) => sendJson(res, 200, listProviders(list, address)),
      (err: Error) => {
        deps.log.error({ event: "admin_providers_failed", err: err.message }, "cannot list the providers");
        if (!res.headersSent) sendJson(res, 503, JSON.parse(errorBody("not_ready", err.message)) as object);
      },
    );
  }

  return {
    routes: [
      { path: "/admin", methods: ["GET", "HEAD"], auth: pageCredential, handle: page },
      {
        path: "/admin/admin.css",
        methods: ["GET"],
        auth: "none",
        handle: asset(ADMIN_CSS, "text/css; charset=utf-8"),
      },
      {
        path: "/admin/admin.js",
        methods: ["GET"],
        auth: "none",
        handle: asset(ADMIN_JS, "text/javascript; charset=utf-8"),
      },
      { path: "/admin/events", methods: ["GET"], auth: adminCredential, handle: events },
      {
        path: "/admin/api/summary",
        methods: ["GET"],
        auth: adminCredential,
        handle: (_req, res) => sendJson(res, 200, summary()),
      },
      { path: "/admin/api/user", methods: ["GET"], auth: adminCredential, handle: user },
      { path: "/admin/api/providers", methods: ["GET"], auth: adminCredential, handle: providers },
      {
        path: "/admin/api/history",
        methods: ["GET"],
        auth: adminCredential,
        handle(_req, res) {
          sampleProviders();
          sendJson(res, 200, history.series());
        },
      },
      {
        path: "/admin/signin.js",
        methods: ["GET"],
        auth: "none",
        handle: asset(SIGNIN_JS, "text/javascript; charset=utf-8"),
      },
    ],
    close() {
      clearInterval(sampler);
      unsubscribe();
      clearInterval(timer);
      timer = undefined;
      for (const res of feeds) res.end();
      feeds.clear();
    },
  };
}
