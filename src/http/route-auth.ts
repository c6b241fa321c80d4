import type { IncomingMessage, ServerResponse } from "node:http";
import { AUTH_RATE_LIMITED, type AuthFailures } from "./auth-limit.js";
import { bearerToken, constantTimeEquals, presentedSecret, secretMatches } from "./auth.js";
import type { ErrorCode } from "./errors.js";

/**
 * What a request presents of the credential its route takes: the right one, a wrong one (a guess:
 * counted by the shared failure limiter) or nothing at all (a first visit, a client that
 * authenticates later: not a guess, not counted, unless the credential says otherwise).
 */
export type Presented = "ok" | "wrong" | "none";

/** How a route refuses a request whose credential is wrong (or missing), under the limiter's burst. */
export interface Refusal {
  code: ErrorCode;
  message: string;
  /** `WWW-Authenticate` on HTTP answers; an upgrade refusal carries none (no WebSocket client answers it). */
  challenge?: string;
  /** Answers in place of the JSON error (the admin sign-in page). */
  send?: (res: ServerResponse) => void;
}

/**
 * A credential a route or upgrade declares. The router checks it once, before the handler runs,
 * with the failure limiter every route shares (http/auth-limit.ts), so that no route forgets the
 * limit and guessing cannot move to whichever route does.
 */
export interface Credential {
  /** What the request presents; `url` is the parsed request target (the compat secret is in the query). */
  check(req: IncomingMessage, url: { readonly searchParams: URLSearchParams }): Presented;
  refusal: Refusal;
  /** A request presenting nothing is refused and counted like a wrong credential (compat, see compatSecret). */
  countsMissing?: boolean;
  /**
   * A request presenting nothing reaches the handler, told "none" (the API v2 stream: such a
   * socket authenticates with its first message). Only upgrades take this.
   */
  passesMissing?: boolean;
  /** Called for a wrong credential refused under the burst (the admin page logs each one). */
  onRefused?: (req: IncomingMessage) => void;
}

/** What a route declares: a credential, or "none" for public routes (health, assets, hints). */
export type RouteAuth = Credential | "none";

/** The router's decision: let the request through (with what it presented), or refuse it. */
export type Verdict =
  | { readonly pass: true; readonly presented: "ok" | "none" }
  /** Refused with `refusal`; `retryAfter` (seconds) when the failure limiter answers 429. */
  | { readonly pass: false; readonly refusal: Refusal; readonly retryAfter?: number };

/** The limiter's answer, the same on every route. */
export const RATE_LIMITED: Refusal = { code: "auth_rate_limited", message: AUTH_RATE_LIMITED };

const PASS_OK: Verdict = { pass: true, presented: "ok" };
const PASS_NONE: Verdict = { pass: true, presented: "none" };

/**
 * Checks `auth` for one request. A wrong credential (or a missing one where it counts) is recorded
 * with `failures`: past the burst the answer is 429 `auth_rate_limited` with `Retry-After`, on
 * every route alike; under it, the credential's own refusal. Allocation-free when it passes (it
 * runs on every `/status` request).
 */
export function checkAuth(
  auth: RouteAuth,
  req: IncomingMessage,
  url: { readonly searchParams: URLSearchParams },
  failures: AuthFailures | undefined,
): Verdict {
  if (auth === "none") return PASS_OK;
  const presented = auth.check(req, url);
  if (presented === "ok") return PASS_OK;
  if (presented === "none") {
    if (auth.passesMissing) return PASS_NONE;
    if (!auth.countsMissing) return { pass: false, refusal: auth.refusal };
  }
  const retryAfter = failures?.fail(req);
  if (retryAfter !== undefined) return { pass: false, refusal: RATE_LIMITED, retryAfter };
  if (presented === "wrong") auth.onRefused?.(req);
  return { pass: false, refusal: auth.refusal };
}

/**
 * The compat secret, as deployed providers send it: `Authorization: Bearer S` or the first
 * `secret` query value, URL-decoded as often as the old plugin did (http/auth.ts). A request
 * without one is counted too, as it always has been on the compat paths: a provider always sends
 * its secret, so a request without one is a misconfigured client or a probe of the public path.
 */
export function compatSecret(secrets: () => readonly string[]): Credential {
  return {
    check(req, url) {
      const got = presentedSecret(req.headers.authorization, url.searchParams);
      if (got === null) return "none";
      return secretMatches(secrets(), got) ? "ok" : "wrong";
    },
    countsMissing: true,
    refusal: { code: "invalid_secret", message: "missing or wrong secret" },
  };
}

/**
 * The presence secret as API v2 takes it: `Authorization: Bearer <secret>` only (URLs end up in
 * logs). Any Authorization header that is not the right Bearer secret is a wrong credential.
 */
export function presenceBearer(secrets: () => readonly string[]): Credential {
  return {
    check(req) {
      const header = req.headers.authorization;
      if (header === undefined) return "none";
      return secretMatches(secrets(), bearerToken(header)) ? "ok" : "wrong";
    },
    refusal: {
      code: "unauthorized",
      message: "send Authorization: Bearer <the presence secret>",
      challenge: 'Bearer realm="presence"',
    },
  };
}

/** The API v2 stream's upgrade: a Bearer secret, or none (the socket then sends an auth message). */
export function presenceBearerOrMessage(secrets: () => readonly string[]): Credential {
  return { ...presenceBearer(secrets), passesMissing: true };
}

/**
 * PRESENCE_METRICS_TOKEN as Prometheus sends it (`authorization` scrape setting: Bearer); never
 * from the query string, which proxies log. Unset: the route is open. A header that is not a
 * Bearer token presents nothing.
 */
export function metricsToken(token: () => string | undefined): Credential {
  return {
    check(req) {
      const wanted = token();
      if (wanted === undefined) return "ok";
      const got = bearerToken(req.headers.authorization);
      if (got === undefined) return "none";
      return constantTimeEquals(got, wanted) ? "ok" : "wrong";
    },
    refusal: {
      code: "invalid_secret",
      message: "missing or wrong metrics token (Authorization: Bearer)",
      challenge: 'Bearer realm="metrics"',
    },
  };
}
