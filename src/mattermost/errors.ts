/** Why a request to Mattermost failed; the scheduler picks its reaction from `kind`. */
export type UpstreamErrorKind =
  | "unauthorized" // 401: the token is wrong or revoked
  | "forbidden" // 403: the token lacks a permission
  | "rate-limited" // 429: wait retryAfterMs
  | "server" // 5xx
  | "bad-request" // other 4xx: a bug on our side or an API change
  | "timeout"
  | "network" // refused, reset, DNS
  | "malformed" // 2xx with a body that is not what the API documents
  | "too-large" // 2xx with a body larger than the endpoint can return (aborted, see BODY_LIMITS)
  | "endless-paging"; // /users pages that repeat or outnumber /users/stats (see readDirectory)

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly endpoint: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "UpstreamError";
  }
}

/** `Retry-After` is seconds or an HTTP date; anything else falls back to `fallbackMs`. */
export function parseRetryAfter(value: string | null, fallbackMs: number, now = Date.now()): number {
  if (!value) return fallbackMs;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? fallbackMs : Math.max(0, at - now);
}
