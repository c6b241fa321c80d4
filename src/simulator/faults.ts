/**
 * Injected faults. Each applies to every /api/v4 route (not the WebSocket, except `down`) unless
 * `paths` restricts it to some route keys (see ROUTE_KEYS).
 */

export type Fault = FaultKind & {
  /** Route keys the fault applies to; absent = all /api/v4 routes. */
  paths?: readonly string[];
};

export type FaultKind =
  /** Connections are destroyed as they arrive (ECONNRESET-like); open WebSockets are closed, upgrades refused. */
  | { kind: "down" }
  /** The status (e.g. 500, 502, 503) with a Mattermost-style JSON error body. */
  | { kind: "http-error"; status: number }
  /** 429, text/plain "limit exceeded\n", Retry-After and X-RateLimit-* headers (Mattermost's throttled answer). */
  | { kind: "rate-limit"; retryAfterSeconds: number }
  /** The right answer, after delayMs (the delay is spent while the request counts as in flight). */
  | { kind: "slow"; delayMs: number }
  /** A 200 application/json answer whose body is not JSON (replaces only 200 answers). */
  | { kind: "malformed" }
  /** A 200 application/json answer with the real body cut in half (replaces only 200 answers). */
  | { kind: "truncated" }
  /** `status/ids` answers carry this status value for every user. */
  | { kind: "bad-status-value"; value: string }
  /**
   * An error (`status`) whose message repeats the request's `Authorization` header, as some
   * proxies' and debugging servers' error pages do: Mattermost's JSON error body, or with
   * `format: "text"` a plain-text page that starts with the header.
   */
  | { kind: "echo-auth"; status: number; format?: "json" | "text" }
  /** `users` answers page 0 whatever `page` says (a proxy that drops it): with per_page users or more, full pages forever. */
  | { kind: "ignore-page" }
  /** `users` pages never end: past the real directory, every page is full of made-up active users. */
  | { kind: "endless-pages" }
  /**
   * The answer padded with JSON whitespace to `bytes` and streamed as the client reads it
   * (`stats.oversizedBytesWritten` counts what was written); with `status`, a Mattermost error
   * of that status instead of the real answer; `contentLength` declares the size up front
   * (otherwise chunked, as a streaming proxy sends it).
   */
  | { kind: "oversized"; bytes: number; status?: number; contentLength?: boolean };

/**
 * Route keys, used by `Fault.paths` and by `stats.requests` / `stats.lastRequestAt`:
 * - `ping`              GET  /api/v4/system/ping
 * - `users/me`          GET  /api/v4/users/me
 * - `users`             GET  /api/v4/users
 * - `users/stats`       GET  /api/v4/users/stats
 * - `status/ids`        POST /api/v4/users/status/ids
 * - `users/{id}`        GET  /api/v4/users/{user_id}
 * - `users/{id}/status` GET  /api/v4/users/{user_id}/status
 * - `update-status`     PUT  /api/v4/users/{user_id}/status
 * - `config/client`     GET  /api/v4/config/client
 * - `config`            GET  /api/v4/config
 * - `websocket`         GET  /api/v4/websocket (upgrade)
 * - `unknown`           any other /api/v4 path (404)
 */
export const ROUTE_KEYS = [
  "ping",
  "users/me",
  "users",
  "users/stats",
  "status/ids",
  "users/{id}",
  "users/{id}/status",
  "update-status",
  "config/client",
  "config",
  "websocket",
  "unknown",
] as const;

export type RouteKey = (typeof ROUTE_KEYS)[number];

/** Whether `fault` applies to a request for `key`. Only `down` reaches the WebSocket without naming it. */
export function faultApplies(fault: Fault | null, key: RouteKey): fault is Fault {
  if (!fault) return false;
  if (fault.paths) return fault.paths.includes(key);
  return key !== "websocket" || fault.kind === "down";
}

export function validateFault(f: Fault): void {
  switch (f.kind) {
    case "http-error":
    case "echo-auth":
      if (!Number.isInteger(f.status) || f.status < 400 || f.status > 599)
        throw new Error(`${f.kind} fault: status must be 400..599, got ${f.status}`);
      break;
    case "rate-limit":
      if (!Number.isFinite(f.retryAfterSeconds) || f.retryAfterSeconds < 0)
        throw new Error(`rate-limit fault: retryAfterSeconds must be >= 0`);
      break;
    case "slow":
      if (!Number.isFinite(f.delayMs) || f.delayMs < 0) throw new Error(`slow fault: delayMs must be >= 0`);
      break;
    case "oversized":
      if (!Number.isSafeInteger(f.bytes) || f.bytes < 0)
        throw new Error(`oversized fault: bytes must be an integer >= 0`);
      if (f.status !== undefined && (!Number.isInteger(f.status) || f.status < 400 || f.status > 599))
        throw new Error(`oversized fault: status must be 400..599, got ${f.status}`);
      break;
    case "down":
    case "ignore-page":
    case "endless-pages":
    case "malformed":
    case "truncated":
    case "bad-status-value":
      break;
    default:
      throw new Error(`unknown fault kind ${JSON.stringify((f as { kind: unknown }).kind)}`);
  }
  for (const p of f.paths ?? []) {
    if (!(ROUTE_KEYS as readonly string[]).includes(p))
      throw new Error(`unknown route key in fault paths: ${p}`);
  }
}
