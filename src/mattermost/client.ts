import mattermostClient from "@mattermost/client";

// The package is CommonJS with getter exports that Node's ESM loader cannot name; go through default.
const { Client4 } = mattermostClient;
import { readCapped } from "./body.js";
import { UpstreamError, parseRetryAfter } from "./errors.js";

/** The fields of a Mattermost user the gateway needs; validated by hand (hot path, 50k users). */
export interface DirectoryUser {
  id: string;
  username: string;
  /** "" when the token may not see emails. */
  email: string;
  isBot: boolean;
}

export interface RawStatus {
  userId: string;
  status: string;
  /** Set by the user rather than by activity (false when Mattermost leaves it out). */
  manual: boolean;
  /** ms since epoch; 0 when Mattermost leaves it out. */
  lastActivityAt: number;
}

/** A status record as GET/PUT /users/{id}/status return it. */
export interface UserStatusRecord {
  userId: string;
  status: string;
  manual: boolean;
  /** Unix seconds; 0 when unset. */
  dndEndTime: number;
}

export interface UpstreamOptions {
  url: string;
  token: string;
  timeoutMs: number;
  /** Called after every request, for metrics and tests. */
  onRequest?: (endpoint: string, status: number | "error", ms: number) => void;
}

export const MAX_IDS_PER_STATUS_REQUEST = 200;
export const MAX_USERS_PER_PAGE = 200;

/**
 * The most bytes each answer may have: what the endpoint can legitimately return, generously.
 * Past it the request is aborted (a 400 MB `/users` answer took the gateway to 1.69 GB RSS).
 * A Mattermost user is about 1.5 KB of JSON (notify_props, timezone, props with a custom status);
 * a status about 150 B. The count is of decoded bytes, so a gzip bomb stops at the same place.
 */
export const BODY_LIMITS = {
  /** Per user of a `/users` page (per_page users at most). */
  perUser: 16 * 1024,
  /** Per id of a `status/ids` request (on top of `small`). */
  perStatus: 1024,
  /** One user (users/me), the stats object; the floor of every 200 answer. */
  small: 64 * 1024,
  /** Mattermost's whole configuration, plugin settings included (typically tens of KB). */
  config: 8 * 1024 * 1024,
  /** An error answer is read only for its message: the status decides what happens. */
  error: 8 * 1024,
} as const;
const ID_RE = /^[a-z0-9]{26}$/;

export function isMattermostId(id: unknown): id is string {
  return typeof id === "string" && ID_RE.test(id);
}

/**
 * Mattermost API v4, the few endpoints the gateway uses.
 *
 * Routes and auth headers come from the official Client4. The request itself is ours, because
 * Client4 drops what the scheduler needs: the HTTP status of a non-JSON error (a proxy's 502),
 * the `Retry-After` header of a 429, and a per-request timeout.
 */
export class MattermostClient {
  private readonly c4 = new Client4();
  /** Aborts every request in flight (close). */
  private readonly closing = new AbortController();

  constructor(private opts: UpstreamOptions) {
    this.c4.setUrl(opts.url);
    this.c4.setToken(opts.token);
    this.c4.setUserAgent("mattermost-outlook-presence");
  }

  get url(): string {
    return this.opts.url;
  }

  /** Aborts requests in flight and refuses new ones: the gateway is stopping. */
  close(): void {
    this.closing.abort();
  }

  setToken(token: string): void {
    this.opts = { ...this.opts, token };
    this.c4.setToken(token);
  }

  /** One page of active users, ordered by username (Mattermost's order). */
  async getActiveUsers(page: number, perPage: number): Promise<DirectoryUser[]> {
    const url = `${this.c4.getUsersRoute()}?active=true&page=${page}&per_page=${perPage}`;
    const body = await this.request(
      "users",
      url,
      { method: "get" },
      BODY_LIMITS.small + perPage * BODY_LIMITS.perUser,
    );
    if (!Array.isArray(body)) throw this.malformed("users", "expected an array of users");
    if (body.length > perPage) throw this.malformed("users", `more than per_page=${perPage} users`);
    const users: DirectoryUser[] = [];
    for (const u of body as unknown[]) {
      if (typeof u !== "object" || u === null) throw this.malformed("users", "expected user objects");
      const r = u as Record<string, unknown>;
      if (!isMattermostId(r.id) || typeof r.username !== "string") {
        throw this.malformed("users", "a user without a valid id or username");
      }
      // A user the API lists as active but with delete_at set would be a Mattermost bug; trust the filter.
      users.push({
        id: r.id,
        username: r.username,
        email: typeof r.email === "string" ? r.email : "",
        isBot: r.is_bot === true,
      });
    }
    return users;
  }

  /** Statuses of at most 200 ids. The answer's order is not the request's. */
  async getStatuses(ids: readonly string[]): Promise<RawStatus[]> {
    if (ids.length === 0 || ids.length > MAX_IDS_PER_STATUS_REQUEST) {
      throw new RangeError(`getStatuses takes 1 to ${MAX_IDS_PER_STATUS_REQUEST} ids, got ${ids.length}`);
    }
    const url = `${this.c4.getUsersRoute()}/status/ids`;
    const body = await this.request(
      "status/ids",
      url,
      { method: "post", body: JSON.stringify(ids) },
      BODY_LIMITS.small + ids.length * BODY_LIMITS.perStatus,
    );
    if (!Array.isArray(body)) throw this.malformed("status/ids", "expected an array of statuses");
    const out: RawStatus[] = [];
    for (const s of body as unknown[]) {
      const r = s as Record<string, unknown> | null;
      if (typeof r !== "object" || r === null || !isMattermostId(r.user_id) || typeof r.status !== "string") {
        throw this.malformed("status/ids", "a status without a valid user_id or status");
      }
      const last = r.last_activity_at;
      out.push({
        userId: r.user_id,
        status: r.status,
        manual: r.manual === true,
        lastActivityAt: typeof last === "number" && Number.isFinite(last) && last > 0 ? last : 0,
      });
    }
    return out;
  }

  /** `total_users_count` of `/users/stats`: active users, bots included. */
  async getTotalUsers(): Promise<number> {
    const body = (await this.request(
      "users/stats",
      `${this.c4.getUsersRoute()}/stats`,
      { method: "get" },
      BODY_LIMITS.small,
    )) as { total_users_count?: unknown } | null;
    const n = typeof body === "object" && body !== null ? body.total_users_count : undefined;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      throw this.malformed("users/stats", "no total_users_count");
    }
    return n;
  }

  async getMe(): Promise<{ id: string; username: string; roles: string; isBot: boolean }> {
    const body = (await this.request(
      "users/me",
      `${this.c4.getUsersRoute()}/me`,
      { method: "get" },
      BODY_LIMITS.small,
    )) as Record<string, unknown>;
    if (typeof body !== "object" || body === null || typeof body.id !== "string") {
      throw this.malformed("users/me", "expected a user");
    }
    return {
      id: body.id,
      username: String(body.username ?? ""),
      roles: String(body.roles ?? ""),
      isBot: body.is_bot === true,
    };
  }

  /** One user's status record, with the fields needed to put it back (doctor --end-to-end). */
  async getStatus(userId: string): Promise<UserStatusRecord> {
    return this.statusRecord(
      "users/{id}/status",
      await this.request(
        "users/{id}/status",
        `${this.c4.getUserRoute(userId)}/status`,
        { method: "get" },
        BODY_LIMITS.small,
      ),
    );
  }

  /**
   * Sets a user's status as an admin or the user does (PUT /users/{id}/status): the token's own
   * user, or anyone with edit_other_users. Mattermost refuses "ooo" here.
   */
  async setStatus(
    userId: string,
    status: "online" | "away" | "dnd" | "offline",
    dndEndTime = 0,
  ): Promise<UserStatusRecord> {
    const body: Record<string, unknown> = { user_id: userId, status };
    if (status === "dnd" && dndEndTime > 0) body.dnd_end_time = dndEndTime;
    return this.statusRecord(
      "update-status",
      await this.request(
        "update-status",
        `${this.c4.getUserRoute(userId)}/status`,
        { method: "put", body: JSON.stringify(body) },
        BODY_LIMITS.small,
      ),
    );
  }

  private statusRecord(endpoint: string, body: unknown): UserStatusRecord {
    const r = body as Record<string, unknown> | null;
    if (typeof r !== "object" || r === null || !isMattermostId(r.user_id) || typeof r.status !== "string") {
      throw this.malformed(endpoint, "a status without a valid user_id or status");
    }
    return {
      userId: r.user_id,
      status: r.status,
      manual: r.manual === true,
      dndEndTime: typeof r.dnd_end_time === "number" && r.dnd_end_time > 0 ? r.dnd_end_time : 0,
    };
  }

  /** The server's configuration (needs manage_system; 403 otherwise). */
  async getConfig(): Promise<unknown> {
    return this.request("config", `${this.c4.getBaseRoute()}/config`, { method: "get" }, BODY_LIMITS.config);
  }

  private malformed(endpoint: string, what: string): UpstreamError {
    return new UpstreamError("malformed", `Mattermost answered ${endpoint} with ${what}`, endpoint);
  }

  /**
   * One request whose answer is read up to `maxBytes` (an error answer up to BODY_LIMITS.error).
   * The body is counted as it streams and the request aborted past the limit, never buffered first.
   */
  private async request(
    endpoint: string,
    url: string,
    init: { method: string; body?: string },
    maxBytes: number,
  ): Promise<unknown> {
    const started = performance.now();
    const aborter = new AbortController();
    let res: Response;
    try {
      res = await fetch(url, {
        ...(this.c4.getOptions(init) as RequestInit),
        signal: AbortSignal.any([
          AbortSignal.timeout(this.opts.timeoutMs),
          this.closing.signal,
          aborter.signal,
        ]),
      });
    } catch (err) {
      this.opts.onRequest?.(endpoint, "error", performance.now() - started);
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === "TimeoutError" || e.name === "AbortError") {
        throw new UpstreamError(
          "timeout",
          `${endpoint}: no answer within ${this.opts.timeoutMs} ms`,
          endpoint,
        );
      }
      throw new UpstreamError("network", `${endpoint}: ${e.cause?.code ?? e.message}`, endpoint);
    }
    const limit = res.ok ? maxBytes : BODY_LIMITS.error;
    let text: string;
    let complete: boolean;
    try {
      ({ text, complete } = await readCapped(res, limit, aborter));
    } catch (err) {
      this.opts.onRequest?.(endpoint, "error", performance.now() - started);
      const e = err as Error;
      const kind = e.name === "TimeoutError" || e.name === "AbortError" ? "timeout" : "network";
      throw new UpstreamError(kind, `${endpoint}: body not received: ${e.message}`, endpoint, res.status);
    }
    if (res.ok && !complete) {
      this.opts.onRequest?.(endpoint, "error", performance.now() - started);
      throw new UpstreamError(
        "too-large",
        `${endpoint}: answer larger than ${limit} bytes, more than this endpoint can return; aborted`,
        endpoint,
        res.status,
      );
    }
    this.opts.onRequest?.(endpoint, res.status, performance.now() - started);
    if (res.ok) {
      try {
        return JSON.parse(text);
      } catch {
        throw new UpstreamError("malformed", `${endpoint}: answer is not JSON`, endpoint, res.status);
      }
    }
    // An error's status decides what happens (a 401 with a huge body is still a rejected token);
    // its body past the limit is left unread and only the start is shown.
    const detail = mattermostMessage(text);
    const msg = `${endpoint}: HTTP ${res.status}${detail ? ` (${detail})` : ""}`;
    if (res.status === 401) throw new UpstreamError("unauthorized", msg, endpoint, 401);
    if (res.status === 403) throw new UpstreamError("forbidden", msg, endpoint, 403);
    if (res.status === 429) {
      const wait = parseRetryAfter(res.headers.get("retry-after"), 1000);
      throw new UpstreamError("rate-limited", msg, endpoint, 429, wait);
    }
    if (res.status >= 500) throw new UpstreamError("server", msg, endpoint, res.status);
    throw new UpstreamError("bad-request", msg, endpoint, res.status);
  }
}

function mattermostMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { message?: unknown };
    return typeof body.message === "string" ? body.message.slice(0, 200) : "";
  } catch {
    return text.slice(0, 100).trim();
  }
}
