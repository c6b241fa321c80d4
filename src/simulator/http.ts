/** The REST routes of the simulator, answered as Mattermost's API v4 answers them. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { SimContext } from "./context.js";
import { faultApplies, type Fault, type RouteKey } from "./faults.js";
import { shuffle } from "./prng.js";
import { appError, errors, faultError, json, type Reply } from "./reply.js";
import type { SimStatusJson, SimUser } from "./state.js";

export const API_PREFIX = "/api/v4/";
const MAX_BODY_BYTES = 1 << 20;
const PER_PAGE_DEFAULT = 60;
const PER_PAGE_MAX = 200;

interface Route {
  key: RouteKey;
  method: "GET" | "POST" | "PUT";
  /** The {user_id} path segment, for the users/{id} routes. */
  userId?: string;
}

/**
 * Maps a path below /api/v4/ to its route (gorilla-mux-like: exact segments, no trailing slash).
 * `method` only tells apart the routes that share a path.
 */
export function matchRoute(sub: string, method = "GET"): Route {
  switch (sub) {
    case "system/ping":
      return { key: "ping", method: "GET" };
    case "users/me":
      return { key: "users/me", method: "GET" };
    case "users":
      return { key: "users", method: "GET" };
    case "users/stats":
      return { key: "users/stats", method: "GET" };
    case "users/status/ids":
      return { key: "status/ids", method: "POST" };
    case "config/client":
      return { key: "config/client", method: "GET" };
    case "config":
      return { key: "config", method: "GET" };
    case "websocket":
      return { key: "websocket", method: "GET" };
  }
  let m = /^users\/([A-Za-z0-9]+)$/.exec(sub);
  if (m) return { key: "users/{id}", method: "GET", userId: m[1] };
  m = /^users\/([A-Za-z0-9]+)\/status$/.exec(sub);
  if (m) {
    return method === "PUT"
      ? { key: "update-status", method: "PUT", userId: m[1] }
      : { key: "users/{id}/status", method: "GET", userId: m[1] };
  }
  return { key: "unknown", method: "GET" };
}

/** Go's strconv.Atoi: optional sign, decimal digits, nothing else; NaN otherwise. */
function goAtoi(s: string | null): number {
  if (s === null || !/^[+-]?[0-9]+$/.test(s)) return NaN;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : NaN;
}

/** Go's strconv.ParseBool, with errors read as false (as Mattermost's handlers do). */
function goBool(s: string | null): boolean {
  return s !== null && ["1", "t", "T", "TRUE", "true", "True"].includes(s);
}

function headersFor(ctx: SimContext, rid: string, reply: Reply, body: Buffer): Record<string, string> {
  return {
    "Content-Type": reply.contentType,
    "Content-Length": String(body.length),
    "X-Request-Id": rid,
    "X-Version-Id": ctx.versionId(),
    ...reply.headers,
  };
}

function send(ctx: SimContext, res: ServerResponse, rid: string, reply: Reply): void {
  if (res.destroyed || res.headersSent) return;
  const body = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
  res.writeHead(reply.status, headersFor(ctx, rid, reply, body));
  res.end(body);
}

/**
 * Writes `reply` padded with spaces (JSON whitespace) to `fault.bytes`, a chunk at a time as the
 * client takes them, so `oversizedBytesWritten` tells how much a client read before it gave up.
 */
async function sendOversized(
  ctx: SimContext,
  res: ServerResponse,
  rid: string,
  reply: Reply,
  fault: Extract<Fault, { kind: "oversized" }>,
): Promise<void> {
  if (res.destroyed || res.headersSent) return;
  const body = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
  const total = Math.max(body.length, fault.bytes);
  const headers = headersFor(ctx, rid, reply, body);
  if (fault.contentLength) headers["Content-Length"] = String(total);
  else delete headers["Content-Length"];
  res.writeHead(reply.status, headers);
  const filler = Buffer.alloc(64 * 1024, 0x20);
  const write = (chunk: Buffer): Promise<boolean> => {
    ctx.stats.oversizedBytesWritten += chunk.length;
    if (res.write(chunk)) return Promise.resolve(!res.destroyed);
    return new Promise((resolve) => {
      const done = (ok: boolean) => () => {
        res.off("drain", onDrain);
        res.off("close", onClose);
        resolve(ok);
      };
      const onDrain = done(true);
      const onClose = done(false);
      res.once("drain", onDrain);
      res.once("close", onClose);
    });
  };
  let left = total - body.length;
  let ok = await write(body);
  while (ok && left > 0) {
    const n = Math.min(left, filler.length);
    left -= n;
    ok = await write(n === filler.length ? filler : filler.subarray(0, n));
  }
  if (ok) res.end();
  else ctx.stats.oversizedAborted++;
}

/** Reads the request body; undefined if it is larger than MAX_BODY_BYTES. */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on("end", () => resolve(tooLarge ? undefined : Buffer.concat(chunks)));
    req.on("error", reject);
    // An aborted request never ends; its answer goes nowhere (send() checks), but the handler finishes.
    req.on("close", () => {
      if (!req.complete) resolve(undefined);
    });
  });
}

/** The i-th user of an `endless-pages` directory: never in the state, same answer every time. */
function madeUpUser(i: number): SimUser {
  const username = `endless.${String(i).padStart(9, "0")}`;
  return {
    id: `endless${i.toString(36).padStart(19, "0")}`,
    username,
    email: `${username}@example.com`,
    first_name: "Endless",
    last_name: String(i),
    is_bot: false,
    delete_at: 0,
    create_at: 0,
    update_at: 0,
    roles: "system_user",
  };
}

export function rateLimitReply(retryAfterSeconds: number): Reply {
  const reset = Math.max(1, Math.ceil(retryAfterSeconds));
  return {
    status: 429,
    contentType: "text/plain; charset=utf-8",
    body: "limit exceeded\n",
    headers: {
      "Retry-After": String(reset),
      "X-RateLimit-Limit": "10",
      "X-RateLimit-Remaining": "0",
      "X-RateLimit-Reset": String(reset),
      "X-Content-Type-Options": "nosniff",
    },
  };
}

/** The reply an early fault (answered before the route runs) produces, if any. */
export function earlyFaultReply(fault: Fault, rid: string, req: IncomingMessage): Reply | undefined {
  if (fault.kind === "rate-limit") return rateLimitReply(fault.retryAfterSeconds);
  if (fault.kind === "http-error") return faultError(fault.status, rid);
  if (fault.kind === "echo-auth") {
    const header = `Authorization: ${req.headers.authorization ?? "(none)"}`;
    if (fault.format === "text") {
      return {
        status: fault.status,
        contentType: "text/plain; charset=utf-8",
        body: `${header}\nrequest refused\n`,
      };
    }
    return appError(fault.status, "app.simulator.echo", `Request refused (${header}).`, rid);
  }
  return undefined;
}

/** malformed / truncated rewrite 200 JSON answers only. */
function lateFault(fault: Fault | null, reply: Reply): Reply {
  if (!fault || reply.status !== 200) return reply;
  if (fault.kind === "malformed") {
    return { ...reply, contentType: "application/json", body: "<html><body>502 Bad Gateway</body></html>" };
  }
  if (fault.kind === "truncated") {
    const bytes = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
    return { ...reply, body: bytes.subarray(0, Math.floor(bytes.length / 2)) };
  }
  return reply;
}

export function createRequestListener(ctx: SimContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      ctx.log(`simulator: internal error: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent && !res.destroyed) {
        send(ctx, res, ctx.requestId(), faultError(500, ""));
      } else {
        res.destroy();
      }
    });
  };
}

async function handle(ctx: SimContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const rid = ctx.requestId();
  const url = new URL(req.url ?? "/", "http://simulator.invalid");
  if (!url.pathname.startsWith(API_PREFIX)) {
    req.resume();
    send(ctx, res, rid, errors.notFound(url.pathname));
    return;
  }
  const route = matchRoute(url.pathname.slice(API_PREFIX.length), req.method);
  ctx.countRequest(route.key);

  const fault = faultApplies(ctx.fault, route.key) ? ctx.fault : null;
  if (fault?.kind === "down") {
    req.socket.destroy();
    return;
  }

  if (route.key === "status/ids") {
    ctx.stats.statusIdsRequests++;
    ctx.statusIdsInFlight++;
    ctx.stats.statusIdsMaxInFlight = Math.max(ctx.stats.statusIdsMaxInFlight, ctx.statusIdsInFlight);
    res.once("close", () => {
      ctx.statusIdsInFlight--;
    });
  }

  let body: Buffer | undefined = Buffer.alloc(0);
  if (req.method === "POST" || req.method === "PUT") body = await readBody(req);
  else req.resume();

  if (fault) {
    const early = earlyFaultReply(fault, rid, req);
    if (early) {
      send(ctx, res, rid, early);
      return;
    }
    if (fault.kind === "slow" && !(await ctx.delay(fault.delayMs))) {
      res.destroy();
      return;
    }
  }

  let reply: Reply;
  if (route.key === "unknown") reply = errors.notFound(url.pathname);
  else if (req.method !== route.method) reply = errors.methodNotAllowed(rid);
  else if (body === undefined) reply = errors.bodyTooLarge(rid);
  else if (fault?.kind === "oversized" && fault.status !== undefined) reply = faultError(fault.status, rid);
  else reply = answer(ctx, route, url, req, body, rid, fault);
  if (fault?.kind === "oversized") await sendOversized(ctx, res, rid, reply, fault);
  else send(ctx, res, rid, lateFault(fault, reply));
}

function answer(
  ctx: SimContext,
  route: Route,
  url: URL,
  req: IncomingMessage,
  body: Buffer,
  rid: string,
  fault: Fault | null,
): Reply {
  const { state } = ctx;
  const q = url.searchParams;

  // Routes that need no session.
  if (route.key === "ping") {
    const ping: Record<string, string> = {
      ActiveSearchBackend: "database",
      AndroidLatestVersion: "",
      AndroidMinVersion: "",
      IosLatestVersion: "",
      IosMinVersion: "",
      status: "OK",
    };
    if (goBool(q.get("get_server_status"))) {
      ping.database_status = "OK";
      ping.filestore_status = "OK";
    }
    return json(200, ping);
  }
  if (route.key === "config/client") {
    // Any format is answered in the old one; without a valid session, the limited client config.
    return json(200, ctx.clientConfig(ctx.isValidToken(ctx.tokenFrom(req, url))));
  }
  if (route.key === "websocket") {
    // A plain GET without the upgrade headers (upgrades never reach this listener).
    return appError(
      400,
      "api.web_socket.connect.upgrade.app_error",
      "Failed to upgrade websocket connection.",
      rid,
    );
  }

  const caller = ctx.callerOf(ctx.tokenFrom(req, url));
  if (!caller) return errors.sessionExpired(rid);
  const self = caller.user.id;
  const badStatus = fault?.kind === "bad-status-value" ? fault.value : undefined;

  switch (route.key) {
    case "users/me":
      return json(200, state.profileJson(caller.user, true, caller.admin));

    case "users": {
      let page = goAtoi(q.get("page"));
      if (Number.isNaN(page) || page < 0) page = 0;
      let perPage = goAtoi(q.get("per_page"));
      if (Number.isNaN(perPage)) perPage = goAtoi(q.get("pageSize"));
      if (Number.isNaN(perPage) || perPage < 0) perPage = PER_PAGE_DEFAULT;
      else if (perPage > PER_PAGE_MAX) perPage = PER_PAGE_MAX;
      const active = goBool(q.get("active"));
      const inactive = goBool(q.get("inactive"));
      const matching = state.directory(
        inactive && !active ? "inactive" : active && !inactive ? "active" : "all",
      );
      if (fault?.kind === "ignore-page") page = 0;
      const start = page * perPage;
      const slice = matching.slice(start, start + perPage);
      // Lists hide the caller's own email too (ShowEmailAddress off); users/me shows it.
      const profiles = slice.map((u) => state.profileJson(u, false, caller.admin));
      if (fault?.kind === "endless-pages") {
        for (let i = start + slice.length; profiles.length < perPage; i++) {
          profiles.push(state.profileJson(madeUpUser(i), false, caller.admin));
        }
      }
      return json(200, profiles);
    }

    case "users/stats":
      return json(200, { total_users_count: state.activeCount() });

    case "status/ids": {
      let parsed: unknown;
      try {
        parsed = body.length === 0 ? undefined : JSON.parse(body.toString("utf8"));
      } catch {
        return errors.payloadParse(rid);
      }
      if (parsed === undefined) return errors.payloadParse(rid);
      if (parsed === null) return errors.invalidBodyParam("user_ids", rid);
      if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string" || x === null)) {
        return errors.payloadParse(rid);
      }
      const ids = [...new Set(parsed.map((x: string | null) => x ?? ""))];
      if (ids.length === 0) return errors.invalidBodyParam("user_ids", rid);
      ctx.stats.statusIdsMaxIds = Math.max(ctx.stats.statusIdsMaxIds, ids.length);
      // Mattermost checks only the length here; any 26-character string is answered.
      if (ids.some((id) => id.length !== 26)) return errors.invalidBodyParam("user_ids", rid);
      if (!state.enableUserStatuses) return json(200, []);
      if (ids.some((id) => !state.getStatus(id))) ctx.stats.statusIdsMissingRecord++;
      const out: SimStatusJson[] = ids.map((id) => {
        const s = state.statusJson(id);
        return badStatus === undefined ? s : { ...s, status: badStatus };
      });
      shuffle(ctx.shuffleRng, out);
      // The order is never the request's: with two or more ids, rotate if the shuffle kept it.
      if (out.length > 1 && out.every((s, i) => s.user_id === ids[i])) out.push(out.shift() as SimStatusJson);
      return json(200, out);
    }

    case "users/{id}":
    case "users/{id}/status": {
      const id = route.userId === "me" ? self : (route.userId ?? "");
      if (!/^[a-z0-9]{26}$/.test(id)) return errors.invalidUrlParam("user_id", rid);
      if (route.key === "users/{id}") {
        const u = state.get(id);
        return u ? json(200, state.profileJson(u, u.id === self, caller.admin)) : errors.userNotFound(rid);
      }
      if (!state.enableUserStatuses) return errors.statusNotFound(rid);
      const s = state.statusJson(id);
      return json(200, badStatus === undefined ? s : { ...s, status: badStatus });
    }

    case "update-status":
      return updateStatus(ctx, caller, route.userId === "me" ? self : (route.userId ?? ""), body, rid);

    case "config": {
      if (!caller.admin) return errors.forbidden(rid);
      // Mattermost's config API replaces secret values with this fixed mask.
      const mask = (settings: Record<string, unknown>) =>
        Object.fromEntries(Object.keys(settings).map((k) => [k, "********************************"]));
      // Mattermost leaves out the settings of a plugin it has not installed (no manifest to go by).
      const installed = Object.entries(ctx.pluginSettings).filter(([id]) => ctx.installedPlugins.has(id));
      const plugins = Object.fromEntries(
        ctx.obfuscatePluginSettings ? installed.map(([id, st]) => [id, mask(st)]) : installed,
      );
      return json(200, {
        ServiceSettings: { SiteURL: ctx.url, EnableUserStatuses: state.enableUserStatuses },
        PrivacySettings: { ShowEmailAddress: state.emailsVisible, ShowFullName: true },
        PluginSettings: {
          Enable: true,
          Plugins: plugins,
          PluginStates: Object.fromEntries([...ctx.installedPlugins].map((id) => [id, { Enable: true }])),
        },
      });
    }

    default:
      return errors.notFound(url.pathname);
  }
}

/**
 * PUT /users/{user_id}/status as Mattermost's updateUserStatus answers it: the body's user_id must
 * be the path's; another user's status needs edit_other_users (a system admin); only online, away,
 * dnd (with an optional dnd_end_time in seconds) and offline are accepted, ooo is not; the answer
 * is the user's status afterwards.
 */
function updateStatus(
  ctx: SimContext,
  caller: { user: { id: string }; admin: boolean },
  id: string,
  body: Buffer,
  rid: string,
): Reply {
  const { state } = ctx;
  if (!/^[a-z0-9]{26}$/.test(id)) return errors.invalidUrlParam("user_id", rid);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    return errors.invalidBodyParam("status", rid);
  }
  const req = (typeof parsed === "object" && parsed !== null ? parsed : {}) as Record<string, unknown>;
  if (req.user_id !== id) return errors.invalidBodyParam("user_id", rid);
  if (id !== caller.user.id && !caller.admin) return errors.forbidden(rid);
  const status = req.status;
  if (status !== "online" && status !== "away" && status !== "dnd" && status !== "offline") {
    return errors.invalidBodyParam("status", rid);
  }
  if (!state.get(id)) return errors.userNotFound(rid);
  const end = typeof req.dnd_end_time === "number" && req.dnd_end_time > 0 ? req.dnd_end_time : 0;
  // With statuses off, Mattermost drops the change and then finds no status to answer with.
  if (!state.enableUserStatuses) return errors.statusNotFound(rid);
  state.setStatus(id, status, end);
  return json(200, state.statusJson(id));
}
