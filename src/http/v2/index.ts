import type { Logger } from "../../log.js";
import type { PresenceSnapshot } from "../../presence/snapshot.js";
import type { Telemetry } from "../../telemetry.js";
import { sendError, type ErrorCode } from "../errors.js";
import { refuseUpgrade, type HttpModule } from "../router.js";
import { presenceRoutes } from "./presence-api.js";
import { V2_BASE } from "./protocol.js";
import { V2Stream } from "./stream.js";
import { parsePosition } from "../../presence/position.js";
import type { SocketPool } from "../sockets/pool.js";
import type { IncomingMessage } from "node:http";
import type { RequestUrl } from "../router.js";
import type { StreamStart } from "./stream.js";
import { FilterError, filterFromQuery, PresenceView, type UserFilter } from "./view.js";
import { peerAddress, type ClientAddress } from "../client-address.js";
import type { AuthFailures } from "../auth-limit.js";
import { presenceBearerOrMessage } from "../route-auth.js";

export { V2Stream } from "./stream.js";
export { V2_BASE, V2_CLOSE } from "./protocol.js";

export interface V2Deps {
  snapshot: PresenceSnapshot;
  log: Logger;
  /** Accepted secrets (current first); a function so a reload takes effect at once. */
  secrets: () => readonly string[];
  notReadyReason: () => string | undefined;
  /** PRESENCE_V2_RETAINED_CHANGES */
  retainedChanges: number;
  /** The socket pool, shared with the compat `/ws` (and PRESENCE_MAX_CONNECTIONS with it). */
  pool: SocketPool;
  telemetry: Telemetry;
  authTimeoutMs?: number;
  /** Who a request comes from (X-Forwarded-For from a trusted proxy); default: the peer. */
  clientAddress?: ClientAddress;
  /** Wrong secrets in stream auth messages, limited per address with every other credential check. */
  authFailures?: AuthFailures;
}

export interface V2Api extends HttpModule {
  readonly stream: V2Stream;
}

/**
 * API v2 (docs/API-V2.md): GET /api/v2/presence, POST /api/v2/presence/query, GET
 * /api/v2/openapi.json, and the /api/v2/stream WebSocket. Nothing here touches the compat paths.
 */
export function presenceApiV2(deps: V2Deps): V2Api {
  const view = new PresenceView(deps.snapshot);
  const stream = new V2Stream({
    pool: deps.pool,
    snapshot: deps.snapshot,
    view,
    log: deps.log,
    secrets: deps.secrets,
    retainedChanges: deps.retainedChanges,
    authTimeoutMs: deps.authTimeoutMs,
    authFailures: deps.authFailures,
  });
  return {
    stream,
    routes: [
      ...presenceRoutes({
        view,
        secrets: deps.secrets,
        notReadyReason: deps.notReadyReason,
      }),
      {
        path: `${V2_BASE}/stream`,
        methods: ["GET"],
        auth: "none",
        handle: (_req, res) => sendError(res, "not_websocket", "this path takes a WebSocket upgrade"),
      },
    ],
    upgrades: [
      {
        path: `${V2_BASE}/stream`,
        // A Bearer secret checked before the upgrade, or none: the socket then authenticates with
        // its first message (stream.ts), under its own limits.
        auth: presenceBearerOrMessage(deps.secrets),
        handle(req, socket, head, url, presented) {
          const admitted = admitStreamUpgrade(deps, stream, req, url, presented === "ok");
          if ("start" in admitted) return stream.accept(req, socket, head, admitted.start);
          deps.telemetry.wsRefused(admitted.code);
          refuseUpgrade(socket, admitted.code, admitted.message);
        },
      },
    ],
  };
}

/** Why an upgrade is refused: the error code and its message. */
interface StreamRefusal {
  code: ErrorCode;
  message: string;
}

/**
 * Everything checked before a /api/v2/stream handshake once the router has checked the
 * Authorization header if one was sent (route auth `presenceBearerOrMessage`), in order: the query
 * (since, filter), readiness, the auth-message waiting room (for sockets that will authenticate by message), and
 * PRESENCE_MAX_CONNECTIONS (for those authorized by header; the others are admitted when their
 * auth message arrives).
 */
function admitStreamUpgrade(
  deps: V2Deps,
  stream: V2Stream,
  req: IncomingMessage,
  url: RequestUrl,
  /** A right Bearer secret came with the upgrade (the router checked it); else an auth message must. */
  authorized: boolean,
): { start: StreamStart } | StreamRefusal {
  const rawSince = url.searchParams.get("since");
  const since = rawSince ? parsePosition(rawSince) : undefined;
  if (rawSince && !since) {
    return {
      code: "invalid_query",
      message: "since must be <epoch>:<seq> as the gateway sent them (or a seq)",
    };
  }
  let filter: UserFilter | undefined;
  try {
    filter = filterFromQuery(url.searchParams);
  } catch (err) {
    if (err instanceof FilterError) return { code: "invalid_query", message: err.message };
    throw err;
  }
  const notReady = deps.notReadyReason();
  if (notReady !== undefined) return { code: "not_ready", message: notReady };
  const address = (deps.clientAddress ?? peerAddress)(req);
  const waiting = authorized ? "ok" : stream.mayWaitForAuth(address);
  if (waiting !== "ok") {
    deps.log.warn(
      { event: "v2_refused", remote: address, pending: stream.pendingAuth, over: waiting },
      waiting === "total"
        ? "too many sockets waiting to authenticate"
        : "too many sockets from one address waiting to authenticate",
    );
    return { code: "too_many_connections", message: "too many sockets waiting to authenticate; retry later" };
  }
  if (authorized && !stream.hasRoom()) {
    deps.log.warn({ event: "v2_refused", sockets: stream.size }, "connection limit reached");
    return { code: "too_many_connections", message: "connection limit reached; retry later" };
  }
  return { start: { authorized, since, filter } };
}
