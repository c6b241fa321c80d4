import mattermostClient from "@mattermost/client";

// The package is CommonJS with getter exports that Node's ESM loader cannot name; go through default.
const { Client4 } = mattermostClient;
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
    const body = await this.request("users", url, { method: "get" });
    if (!Array.isArray(body)) throw this.malformed("users", "expected an array of users");
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
    const body = await this.request("status/ids", url, { method: "post", body: JSON.stringify(ids) });
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

  async getMe(): Promise<{ id: string; username: string; roles: string; isBot: boolean }> {
    const body = (await this.request("users/me", `${this.c4.getUsersRoute()}/me`, {
      method: "get",
    })) as Record<string, unknown>;
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
      await this.request("users/{id}/status", `${this.c4.getUserRoute(userId)}/status`, { method: "get" }),
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
      await this.request("update-status", `${this.c4.getUserRoute(userId)}/status`, {
        method: "put",
        body: JSON.stringify(body),
      }),
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
    return this.request("config", `${this.c4.getBaseRoute()}/config`, { method: "get" });
  }

  private malformed(endpoint: string, what: string): UpstreamError {
    return new UpstreamError("malformed", `Mattermost answered ${endpoint} with ${what}`, endpoint);
  }

  private async request(
    endpoint: string,
    url: string,
    init: { method: string; body?: string },
  ): Promise<unknown> {
    const started = performance.now();
    let res: Response;
    try {
      res = await fetch(url, {
        ...(this.c4.getOptions(init) as RequestInit),
        signal: AbortSignal.any([AbortSignal.timeout(this.opts.timeoutMs), this.closing.signal]),
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
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      this.opts.onRequest?.(endpoint, "error", performance.now() - started);
      const e = err as Error;
      const kind = e.name === "TimeoutError" || e.name === "AbortError" ? "timeout" : "network";
      throw new UpstreamError(kind, `${endpoint}: body not received: ${e.message}`, endpoint, res.status);
    }
    this.opts.onRequest?.(endpoint, res.status, performance.now() - started);
    if (res.ok) {
      try {
        return JSON.parse(text);
      } catch {
        throw new UpstreamError("malformed", `${endpoint}: answer is not JSON`, endpoint, res.status);
      }
    }
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
