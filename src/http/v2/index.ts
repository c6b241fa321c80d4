import type { Logger } from "../../log.js";
import type { PresenceSnapshot } from "../../presence/snapshot.js";
import type { Telemetry } from "../../telemetry.js";
import { sendError, type ErrorCode } from "../errors.js";
import { refuseUpgrade, type HttpModule } from "../router.js";
import { presenceRoutes } from "./presence-api.js";
import { V2_BASE } from "./protocol.js";
import { V2Stream } from "./stream.js";
import { parsePosition } from "../../presence/position.js";
import type { UnsentBytes } from "../unsent-bytes.js";
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
  maxBufferBytes: number;
  /** The unsent-bytes cap shared with the compat pool. */
  unsent?: UnsentBytes;
  pingIntervalMs: number;
  /** Sockets open elsewhere (the compat pool): they share PRESENCE_MAX_CONNECTIONS. */
  otherSockets: () => number;
  maxConnections: number;
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
    snapshot: deps.snapshot,
    view,
    log: deps.log,
    secrets: deps.secrets,
    retainedChanges: deps.retainedChanges,
    maxBufferBytes: deps.maxBufferBytes,
    unsent: deps.unsent,
    pingIntervalMs: deps.pingIntervalMs,
    authTimeoutMs: deps.authTimeoutMs,
    clientAddress: deps.clientAddress,
    authFailures: deps.authFailures,
    admit: () => admit(),
  });
  /** One more authenticated socket fits PRESENCE_MAX_CONNECTIONS, shared with the compat pool. */
  const admit = (): boolean => stream.authenticated + deps.otherSockets() < deps.maxConnections;
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
          const refuse = (code: ErrorCode, message: string): void => {
            deps.telemetry.wsRefused(code);
            refuseUpgrade(socket, code, message);
          };
          const rawSince = url.searchParams.get("since");
          const since = rawSince ? parsePosition(rawSince) : undefined;
          if (rawSince && !since) {
            return refuse("invalid_query", "since must be <epoch>:<seq> as the gateway sent them (or a seq)");
          }
          let filter: UserFilter | undefined;
          try {
            filter = filterFromQuery(url.searchParams);
          } catch (err) {
            if (err instanceof FilterError) return refuse("invalid_query", err.message);
            throw err;
          }
          const authorized = presented === "ok";
          const notReady = deps.notReadyReason();
          if (notReady !== undefined) return refuse("not_ready", notReady);
          const address = (deps.clientAddress ?? peerAddress)(req);
          const waiting = authorized ? "ok" : stream.mayWaitForAuth(address);
          if (waiting !== "ok") {
            deps.log.warn(
              { event: "v2_refused", remote: address, pending: stream.pendingAuth, over: waiting },
              waiting === "total"
                ? "too many sockets waiting to authenticate"
                : "too many sockets from one address waiting to authenticate",
            );
            return refuse("too_many_connections", "too many sockets waiting to authenticate; retry later");
          }
          if (authorized && !admit()) {
            deps.log.warn({ event: "v2_refused", sockets: stream.size }, "connection limit reached");
            return refuse("too_many_connections", "connection limit reached; retry later");
          }
          stream.accept(req, socket, head, {
            authorized,
            since,
            filter,
          });
        },
      },
    ],
  };
}
