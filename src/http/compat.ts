import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { Logger } from "../log.js";
import { isMattermostId } from "../mattermost/client.js";
import type { PresenceSnapshot } from "../presence/snapshot.js";
import { PROVIDER_STATUSES } from "../presence/status.js";
import type { Telemetry } from "../telemetry.js";
import { sendError, type ErrorCode } from "./errors.js";
import { acceptsGzip, refuseUpgrade, sendJson, type HttpModule, type RequestUrl } from "./router.js";
import { KeyedRateLimiter } from "./rate-limit.js";
import { addressKey } from "./auth-limit.js";
import { compatSecret } from "./route-auth.js";
import { peerAddress, type ClientAddress } from "./client-address.js";
import { FRESH_READ_MS, RecentReaders } from "./recent-readers.js";
import { StatusPages, isEndPage } from "./status-pages.js";
import { discardBody, readJsonBody } from "./body.js";
import type { WsHub } from "./ws-hub.js";

/** The old plugin's base path: deployed providers request exactly this. */
export const COMPAT_BASE = "/plugins/com.mattermost.outlook-presence/api/v1";

export interface CompatDeps {
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
  /** Hints accepted per remote address per second (burst twice that). */
  hintsPerAddress: number;
  /** PRESENCE_REPLAY_WINDOW_MS: a /status read counts as fresh for a socket at most this long. */
  replayWindowMs?: number;
  telemetry: Telemetry;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
}

const PAGE_RE = /^\d+$/;
const MAX_PUBLISH_BODY = 4096;
const publishBody = z.object({ user_id: z.string(), status: z.string() }).passthrough();

/**
 * The frozen compat API, exactly as the old plugin served it (README, "The API it serves"):
 * `/status` from pre-built pages, `/ws` authorized before the handshake, `/status/publish` as a
 * hint only. Nothing here calls Mattermost. `/status` and `/ws` take the compat secret, checked by
 * the router (a wrong one: 403, or 429 once the address has failed too often).
 */
export function compatApi(deps: CompatDeps): HttpModule {
  const pages = new StatusPages(deps.snapshot, deps.pageSize());
  const clientAddress = deps.clientAddress ?? peerAddress;
  const readers = new RecentReaders(Math.min(FRESH_READ_MS, deps.replayWindowMs ?? FRESH_READ_MS));
  const hintLimiter = new KeyedRateLimiter(deps.hintsPerAddress, deps.hintsPerAddress * 2);
  const secret = compatSecret(deps.secrets);
  const notReady = (): string => deps.notReadyReason() ?? "first snapshot not loaded yet";

  function status(req: IncomingMessage, res: ServerResponse, url: RequestUrl): void {
    const raw = url.searchParams.get("page");
    if (raw !== null && raw !== "" && !PAGE_RE.test(raw)) {
      return sendError(res, "invalid_page", "page must be a non-negative integer");
    }
    if (!deps.snapshot.ready) return sendError(res, "not_ready", notReady());
    pages.setPageSize(deps.pageSize());
    const page = pages.get(raw ? Number(raw) : 0);
    if (isEndPage(page)) readers.readToEnd(clientAddress(req));
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
    if (acceptsGzip(req.headers["accept-encoding"])) {
      body = pages.gzip(page);
      headers["Content-Encoding"] = "gzip";
    }
    headers["Content-Length"] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  }

  function publish(req: IncomingMessage, res: ServerResponse): void {
    // Behind a proxy that is not trusted (PRESENCE_TRUSTED_PROXIES) every browser shares its
    // address: hints are only a shortcut (the poll catches every change anyway), so dropping
    // some there costs nothing.
    if (!hintLimiter.take(addressKey(clientAddress(req)))) {
      discardBody(req);
      return sendError(res, "rate_limited", "too many status hints from this address", {
        "Retry-After": "1",
      });
    }
    readJsonBody(req, res, MAX_PUBLISH_BODY, 'expected JSON {"user_id","status"}', (body) => {
      const parsed = publishBody.safeParse(body);
      if (!parsed.success) return sendError(res, "invalid_body", 'expected JSON {"user_id","status"}');
      if (!isMattermostId(parsed.data.user_id))
        return sendError(res, "invalid_user_id", "user id is not valid");
      if (!(PROVIDER_STATUSES as readonly string[]).includes(parsed.data.status)) {
        return sendError(res, "invalid_status", "status is not valid");
      }
      // The claimed status is ignored: only Mattermost's answer to the re-read is published.
      deps.hintUser(parsed.data.user_id);
      sendJson(res, 200, { status: "OK" });
    });
  }

  return {
    routes: [
      { path: `${COMPAT_BASE}/status`, methods: ["GET", "HEAD"], auth: secret, handle: status },
      // A hint changes nothing by itself (only Mattermost's answer to the re-read is published).
      { path: `${COMPAT_BASE}/status/publish`, methods: ["POST"], auth: "none", handle: publish },
      {
        path: `${COMPAT_BASE}/ws`,
        methods: ["GET"],
        auth: "none",
        handle: (_req, res) => sendError(res, "not_websocket", "this path takes a WebSocket upgrade"),
      },
    ],
    upgrades: [
      {
        path: `${COMPAT_BASE}/ws`,
        auth: secret,
        handle(req, socket, head) {
          const refuse = (code: ErrorCode, message: string): void => {
            deps.telemetry.wsRefused(code);
            refuseUpgrade(socket, code, message);
          };
          if (!deps.snapshot.ready) return refuse("not_ready", notReady());
          // PRESENCE_MAX_CONNECTIONS counts both protocols' sockets (the pool's admission).
          if (!deps.hub.hasRoom()) {
            deps.log.warn({ event: "ws_refused", sockets: deps.hub.connections }, "connection limit reached");
            return refuse("too_many_connections", "connection limit reached; retry later");
          }
          deps.hub.accept(req, socket, head, { resync: !readers.take(clientAddress(req)) });
        },
      },
    ],
  };
}
