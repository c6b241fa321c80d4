import type { IncomingMessage } from "node:http";
import type { Logger } from "../log.js";
import type { ClientAddress } from "./client-address.js";
/**
 * Failed secret checks per remote address: after `burst` failures within a window, further
 * failures from that address are answered 429 with `Retry-After` until the window ends.
 *
 * The address is the desktop's own when its proxy is trusted (see client-address.ts). Only
 * failures are limited; a request with the right secret is always served: behind a reverse proxy
 * that is not in PRESENCE_TRUSTED_PROXIES (docs/DEPLOY.md, section 4) every desktop shares the
 * proxy's address, so blocking the address would let a few desktops with a stale secret, or a
 * secret rotation, lock out every desktop. The limiter caps what wrong guesses cost (log lines,
 * CPU) and tells misconfigured clients to back off; resistance to guessing comes from the
 * secret's length (`outlook-presence secret` makes 256 random bits).
 *
 * Memory-bounded: at most `maxKeys` addresses are tracked; when full, expired windows are
 * dropped first, then the oldest quarter (a dropped address starts a fresh window, which only
 * ever errs towards answering 403 rather than 429).
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { failures: number; resetAt: number }>();

  constructor(
    /** Failures accepted per window before 429; 0 turns the limiter off. */
    private readonly burst: number,
    private readonly windowMs: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records one failed check from `remote`. Returns the ms until its window ends when the
   * address is over the burst (answer 429), undefined otherwise (answer 403).
   */
  fail(remote: string | undefined): number | undefined {
    if (this.burst <= 0) return undefined;
    const key = addressKey(remote);
    const now = this.now();
    let w = this.windows.get(key);
    if (!w || w.resetAt <= now) {
      if (w)
        this.windows.delete(key); // re-inserted below: Map order stays oldest window first
      else if (this.windows.size >= this.maxKeys) this.evict(now);
      w = { failures: 0, resetAt: now + this.windowMs };
      this.windows.set(key, w);
    }
    w.failures++;
    return w.failures > this.burst ? w.resetAt - now : undefined;
  }

  /** True exactly when `fail` has just crossed the burst (for one log line per address and window). */
  justLimited(remote: string | undefined): boolean {
    return this.windows.get(addressKey(remote))?.failures === this.burst + 1;
  }

  get size(): number {
    return this.windows.size;
  }

  private evict(now: number): void {
    for (const [key, w] of this.windows) if (w.resetAt <= now) this.windows.delete(key);
    if (this.windows.size < this.maxKeys) return;
    let n = Math.ceil(this.windows.size / 4);
    for (const key of this.windows.keys()) {
      if (n-- <= 0) break;
      this.windows.delete(key);
    }
  }
}

/**
 * The key an address is limited under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64, the
 * block one host usually holds (so that rotating through its addresses does not escape the limit).
 */
export function addressKey(remote: string | undefined): string {
  if (!remote) return "";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (mapped) return mapped[1]!;
  if (!remote.includes(":")) return remote;
  const [head = "", tail] = remote.toLowerCase().split("%")[0]!.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/**
 * The one failed-credential limiter every route shares (compat secret, API v2 Bearer, admin and
 * metrics tokens), so that guessing cannot move to whichever route is not limited. It resolves
 * the client's address and writes one `auth_rate_limited` line per address and window.
 */
export class AuthFailures {
  constructor(
    private readonly limiter: AuthFailureLimiter,
    private readonly log: Logger,
    private readonly clientAddress: ClientAddress,
  ) {}

  /**
   * Records a failed check from a request (or an address already resolved from one). Returns
   * undefined (answer the route's usual 401/403) or, once the address is over the burst, the
   * `Retry-After` seconds for a 429.
   */
  fail(from: IncomingMessage | string): number | undefined {
    const remote = typeof from === "string" ? from : this.clientAddress(from);
    const waitMs = this.limiter.fail(remote);
    if (waitMs === undefined) return undefined;
    if (this.limiter.justLimited(remote)) {
      this.log.warn(
        { event: "auth_rate_limited", remote },
        "too many wrong secrets or tokens from one address: answering 429 until its window ends",
      );
    }
    return Math.max(1, Math.ceil(waitMs / 1000));
  }
}

/** The 429 answer's message, the same on every route. */
export const AUTH_RATE_LIMITED = "too many wrong secrets from this address; check the secret and retry later";
