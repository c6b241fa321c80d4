/**
 * A Mattermost API v4 simulator: the tests' upstream and the backend of `outlook-presence demo`.
 *
 * Endpoints (all under /api/v4, answered as Mattermost answers them; JSON answers carry
 * `Content-Type: application/json` exactly, every answer `X-Version-Id` and `X-Request-Id`):
 * - GET  system/ping[?get_server_status=true]  (no session)
 * - GET  users/me                          the token's own user
 * - GET  users?page=&per_page=&active=&inactive=   sorted by username; per_page default 60, capped at
 *        200; a page or per_page that is not a non-negative integer falls back to its default (as
 *        Mattermost's strconv.Atoi parsing does); `active=true` → delete_at = 0 only, `inactive=true` →
 *        deactivated only, neither (or both) → everyone
 * - GET  users/stats                       {"total_users_count": active users, bots included}
 * - POST users/status/ids                  see http.ts for the exact refusals
 * - GET  users/{user_id}, users/{user_id}/status
 * - PUT  users/{user_id}/status            {"user_id","status"[,"dnd_end_time"]}: the token's own
 *                                          user, or anyone for an admin token; no ooo
 * - GET  config/client[?format=…]          a few keys, whatever the format; without a session the
 *                                          limited config (no ShowEmailAddress)
 * - GET  config                            {ServiceSettings, PrivacySettings, PluginSettings} (admin;
 *                                          settings of plugins not installed left out)
 * - GET  websocket                         upgrade; hello, new_user, user_updated,
 *                                          user_activation_status_change
 *
 * The token belongs to a bot user (`botUser`, roles "system_user system_admin") that is part of the
 * directory like any bot: it appears in `listUsers()`, `GET /users` and the stats count, on top of
 * the `users` generated ones. It has no status record (→ offline) and is never churned.
 *
 * Faults: `setFault({ kind, ..., paths? })`; `paths` holds route keys (ROUTE_KEYS):
 * `ping`, `users/me`, `users`, `users/stats`, `status/ids`, `users/{id}`, `users/{id}/status`,
 * `update-status`, `config/client`, `config`, `websocket`, `unknown`. Without `paths` a fault applies to every
 * /api/v4 route, and only `down` also reaches the WebSocket (closes open sockets, refuses upgrades);
 * naming `websocket` in `paths` makes `http-error`, `echo-auth`, `rate-limit` and `slow` apply to the
 * upgrade too. `echo-auth` answers an error repeating the request's Authorization header.
 */
import { randomInt } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { SimContext, type PluginSettings, type SimStats } from "./context.js";
import { faultApplies, validateFault, type Fault } from "./faults.js";
import { createRequestListener } from "./http.js";
import { ID_ALPHABET, pick, randInt } from "./prng.js";
import { SimState, type SimEvent, type SimStatus, type SimUser } from "./state.js";
import { WsHub } from "./websocket.js";

export type { Fault, FaultKind, RouteKey } from "./faults.js";
export { ROUTE_KEYS } from "./faults.js";
export type { SimStats, PluginSettings } from "./context.js";
export type { SimStatus, SimUser, SimProfileJson, SimStatusJson, SimEvent } from "./state.js";

export interface SimulatorOptions {
  /** The only accepted token (see setToken). */
  token: string;
  /** Number of generated users (default 0), on top of the token's bot. */
  users?: number;
  /** PRNG seed (default 1): same seed, same directory, same answer orders. */
  seed?: number;
  /**
   * ShowEmailAddress, default true. Off, a token without manage_system sees email "" for every user
   * (its own too, in lists); an admin token (see botIsAdmin) still sees every email, as in Mattermost.
   */
  emailsVisible?: boolean;
  /** Default true: the token's bot has system_admin (manage_system). See setBotIsAdmin. */
  botIsAdmin?: boolean;
  /** Default true; false → status/ids answers []. */
  enableUserStatuses?: boolean;
  /** X-Version-Id / client config version, default "10.5.0". */
  version?: string;
  /** Username of the token's bot user, default "presence-bot". */
  botUsername?: string;
  /**
   * A second accepted token, of a bot ("plain-bot") with only system_user: it sees others' emails
   * only while ShowEmailAddress is on, and GET /api/v4/config answers it 403. Default: none.
   */
  plainToken?: string;
  /**
   * PluginSettings.Plugins served by GET /api/v4/config, e.g. { "com.mattermost.outlook-presence": { secret: "…" } };
   * these plugins count as installed.
   */
  pluginSettings?: PluginSettings;
  /** Close a WebSocket that has not authenticated within this time (default 5000 ms). */
  wsAuthTimeoutMs?: number;
  /** Receives a few lines (start, stop, WebSocket auth); nothing is logged by default. Never sees tokens. */
  log?: (msg: string) => void;
}

export interface ChurnOptions {
  intervalMs: number;
  changesPerTick: number;
  onChange?: (u: SimUser, from: SimStatus | undefined, to: SimStatus) => void;
}

const CHURN_STATUSES: readonly SimStatus[] = ["online", "away", "dnd", "offline"];

/** A random 26-character token (not from the seeded PRNG: tokens should not be guessable). */
export function randomToken(): string {
  let t = "";
  for (let i = 0; i < 26; i++) t += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return t;
}

export class MattermostSimulator {
  private readonly ctx: SimContext;
  private readonly state: SimState;
  private hub: WsHub | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly churns = new Set<() => void>();

  constructor(opts: SimulatorOptions) {
    if (!opts.token) throw new Error("MattermostSimulator: token is required");
    const users = opts.users ?? 0;
    if (!Number.isInteger(users) || users < 0)
      throw new Error("MattermostSimulator: users must be an integer >= 0");
    const seed = opts.seed ?? 1;
    const log = opts.log ?? (() => {});
    this.state = new SimState(
      {
        users,
        seed,
        emailsVisible: opts.emailsVisible ?? true,
        enableUserStatuses: opts.enableUserStatuses ?? true,
        botUsername: opts.botUsername ?? "presence-bot",
      },
      (ev: SimEvent) => this.hub?.broadcast(ev),
    );
    this.ctx = new SimContext(
      this.state,
      opts.token,
      opts.version ?? "10.5.0",
      seed,
      { ...opts.pluginSettings },
      opts.wsAuthTimeoutMs ?? 5000,
      log,
    );
    for (const id of Object.keys(opts.pluginSettings ?? {})) this.ctx.installedPlugins.add(id);
    if (opts.botIsAdmin === false) this.ctx.botIsAdmin = false;
    if (opts.plainToken) {
      if (opts.plainToken === opts.token)
        throw new Error("MattermostSimulator: plainToken must differ from token");
      this.state.addPlainBot("plain-bot");
      this.ctx.plainToken = opts.plainToken;
    }
  }

  /** Listens (port 0 = any free port) and returns the base URL, e.g. "http://127.0.0.1:41234". */
  async start(port = 0, host = "127.0.0.1"): Promise<string> {
    if (this.server) throw new Error("MattermostSimulator: already started");
    const hub = new WsHub(this.ctx);
    const server = createServer(createRequestListener(this.ctx));
    server.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      const f = this.ctx.fault;
      if (f?.kind === "down" && !f.paths) socket.destroy();
    });
    server.on("upgrade", (req, socket, head: Buffer) => hub.handleUpgrade(req, socket, head));
    server.on("clientError", (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const addr = server.address();
    if (addr === null || typeof addr === "string") throw new Error("MattermostSimulator: no TCP address");
    const shownHost =
      host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
    this.server = server;
    this.hub = hub;
    this.ctx.url = `http://${shownHost}:${addr.port}`;
    this.ctx.log(`simulator: listening on ${this.ctx.url} with ${this.state.all().length} users`);
    return this.ctx.url;
  }

  /** Closes the server, every socket and WebSocket, churn timers and pending slow answers. */
  async stop(): Promise<void> {
    for (const stopChurn of [...this.churns]) stopChurn();
    this.ctx.cancelPending();
    const server = this.server;
    const hub = this.hub;
    this.server = undefined;
    this.hub = undefined;
    if (!server) return;
    await hub?.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
    this.ctx.log("simulator: stopped");
  }

  /** The base URL ("" before start). */
  get url(): string {
    return this.server ? this.ctx.url : "";
  }

  /** The token's own user (a system-admin bot, part of the directory). */
  get botUser(): SimUser {
    return { ...this.state.bot };
  }

  /** Open WebSocket connections (authenticated or not). */
  get webSocketCount(): number {
    return this.hub?.size ?? 0;
  }

  // ---- state ----

  /** Every user (copies), deactivated ones and the token's bot included. */
  listUsers(): readonly SimUser[] {
    return this.state.all().map((u) => ({ ...u }));
  }

  /** Adds a user (defaults: generated id, "user.NNNNN", "<username>@example.com", no status record); emits `new_user`. */
  addUser(partial?: Partial<SimUser> & { status?: SimStatus }): SimUser {
    return this.state.addUser(partial);
  }

  /**
   * Sets a user's status record; no event (Mattermost sends status_change only to the user
   * concerned). `dndEndTime` (seconds since the epoch) is truncated to the minute, as Mattermost does.
   */
  setStatus(userId: string, status: SimStatus, dndEndTime?: number): void {
    this.state.setStatus(userId, status, dndEndTime);
  }

  /** undefined = no status record. */
  getStatus(userId: string): SimStatus | undefined {
    return this.state.getStatus(userId)?.status;
  }

  /** delete_at = now (status record untouched); emits `user_updated` then `user_activation_status_change`. */
  deactivateUser(userId: string): void {
    this.state.setActive(userId, false);
  }

  /** delete_at = 0; emits `user_updated` then `user_activation_status_change`. */
  reactivateUser(userId: string): void {
    this.state.setActive(userId, true);
  }

  /** Permanent delete: the user and its status record disappear; no event (as in Mattermost). */
  deleteUser(userId: string): void {
    this.state.deleteUser(userId);
  }

  /** Emails and usernames are stored lower-case, as Mattermost does; emits `user_updated`. */
  updateUser(
    userId: string,
    patch: Partial<Pick<SimUser, "email" | "username" | "first_name" | "last_name">>,
  ): void {
    this.state.updateUser(userId, patch);
  }

  /** Changes the accepted token: the old one gets 401, WebSockets authenticated with it are closed. */
  setToken(token: string): void {
    if (!token) throw new Error("setToken: empty token");
    const old = this.ctx.token;
    this.ctx.token = token;
    if (old !== token) this.hub?.revokeToken(old);
  }

  setEmailsVisible(v: boolean): void {
    this.state.emailsVisible = v;
  }

  setEnableUserStatuses(v: boolean): void {
    this.state.enableUserStatuses = v;
  }

  /**
   * Sets (or with undefined, removes) one plugin's settings in GET /api/v4/config's
   * PluginSettings.Plugins, and broadcasts `config_changed` as Mattermost does on a save.
   * `installed` (default true) says whether Mattermost has the plugin: if not, GET /api/v4/config
   * leaves its settings out, as Mattermost does.
   */
  setPluginSettings(
    pluginId: string,
    settings: Record<string, unknown> | undefined,
    { installed = true }: { installed?: boolean } = {},
  ): void {
    if (settings === undefined) delete this.ctx.pluginSettings[pluginId];
    else this.ctx.pluginSettings[pluginId] = { ...settings };
    this.setPluginInstalled(pluginId, installed);
    this.hub?.broadcast({ event: "config_changed", data: { config: { Version: this.ctx.version } } });
  }

  /** Whether Mattermost has this plugin installed (see setPluginSettings). */
  setPluginInstalled(pluginId: string, installed: boolean): void {
    if (installed) this.ctx.installedPlugins.add(pluginId);
    else this.ctx.installedPlugins.delete(pluginId);
  }

  /** The settings the simulator serves (copies). */
  get config(): {
    showEmailAddress: boolean;
    enableUserStatuses: boolean;
    pluginSettings: PluginSettings;
    installedPlugins: string[];
  } {
    return {
      showEmailAddress: this.state.emailsVisible,
      enableUserStatuses: this.state.enableUserStatuses,
      pluginSettings: structuredClone(this.ctx.pluginSettings),
      installedPlugins: [...this.ctx.installedPlugins],
    };
  }

  /** false: the token loses manage_system (GET /api/v4/config → 403; emails only with ShowEmailAddress). */
  setBotIsAdmin(v: boolean): void {
    this.ctx.botIsAdmin = v;
  }

  /** true: GET /api/v4/config masks plugin setting values, as Mattermost does for secret settings. */
  setObfuscatePluginSettings(v: boolean): void {
    this.ctx.obfuscatePluginSettings = v;
  }

  // ---- faults ----

  /** One fault at a time; null clears it. `down` also drops open connections it applies to. */
  setFault(f: Fault | null): void {
    if (f) validateFault(f);
    this.ctx.fault = f ? { ...f } : null;
    if (f?.kind !== "down") return;
    if (faultApplies(f, "websocket")) this.hub?.terminateAll();
    if (!f.paths) for (const s of this.sockets) s.destroy();
  }

  get fault(): Fault | null {
    return this.ctx.fault;
  }

  // ---- counters ----

  /** Live counters (the same object across resetStats). */
  get stats(): SimStats {
    return this.ctx.stats;
  }

  resetStats(): void {
    this.ctx.resetStats();
  }

  // ---- demo churn ----

  /**
   * Every intervalMs, moves `changesPerTick` distinct random active non-bot users to another status
   * among online/away/dnd/offline (no event, like setStatus). Returns an idempotent stop function;
   * stop() also stops it.
   */
  startChurn(opts: ChurnOptions): () => void {
    if (!(opts.intervalMs > 0)) throw new Error("startChurn: intervalMs must be > 0");
    if (!Number.isInteger(opts.changesPerTick) || opts.changesPerTick < 0)
      throw new Error("startChurn: changesPerTick must be an integer >= 0");
    const rng = this.ctx.churnRng;
    const tick = (): void => {
      const candidates = this.state.all().filter((u) => u.delete_at === 0 && !u.is_bot);
      const n = Math.min(opts.changesPerTick, candidates.length);
      for (let i = 0; i < n; i++) {
        const j = i + randInt(rng, candidates.length - i);
        const u = candidates[j] as SimUser;
        candidates[j] = candidates[i] as SimUser;
        candidates[i] = u;
        const from = this.state.getStatus(u.id)?.status;
        const to = pick(
          rng,
          CHURN_STATUSES.filter((s) => s !== from),
        );
        this.state.setStatus(u.id, to);
        try {
          opts.onChange?.({ ...u }, from, to);
        } catch (err) {
          this.ctx.log(
            `simulator: churn onChange threw: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      }
    };
    const timer = setInterval(tick, opts.intervalMs);
    timer.unref();
    const stopChurn = (): void => {
      clearInterval(timer);
      this.churns.delete(stopChurn);
    };
    this.churns.add(stopChurn);
    return stopChurn;
  }
}
