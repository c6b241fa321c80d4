/** State shared by the HTTP routes, the WebSocket hub and the public class. */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Fault, RouteKey } from "./faults.js";
import { newId, stream, type Rng } from "./prng.js";
import type { SimState, SimUser } from "./state.js";

export interface SimStats {
  /** Requests received per route key (faulted ones included; see ROUTE_KEYS in faults.ts). */
  requests: Record<string, number>;
  statusIdsRequests: number;
  /** Highest number of `status/ids` requests in flight at once (from arrival to answer). */
  statusIdsMaxInFlight: number;
  /** Most distinct ids seen in one (well-formed) `status/ids` request. */
  statusIdsMaxIds: number;
  /**
   * `status/ids` requests holding an id without a status record. Mattermost's status cache holds
   * only records, so each such request costs it a database query (bench upstream-real).
   */
  statusIdsMissingRecord: number;
  /** Date.now() of the last request per route key. */
  lastRequestAt: Record<string, number>;
  /** Bytes of `oversized` answers written to sockets (the client's reads hold writing back). */
  oversizedBytesWritten: number;
  /** `oversized` answers whose client went away before their end. */
  oversizedAborted: number;
}

export type PluginSettings = Record<string, Record<string, unknown>>;

export class SimContext {
  token: string;
  fault: Fault | null = null;
  url = "";
  statusIdsInFlight = 0;
  /** false: the token lacks manage_system, so GET /api/v4/config answers 403. */
  botIsAdmin = true;
  /** The second accepted token, of a bot without system_admin (state.plainBot); undefined: none. */
  plainToken: string | undefined;
  /** Plugins Mattermost has installed: GET /api/v4/config leaves out the settings of any other. */
  readonly installedPlugins = new Set<string>();
  /** true: GET /api/v4/config masks every plugin setting, as Mattermost does for secret settings. */
  obfuscatePluginSettings = false;
  readonly stats: SimStats = {
    requests: {},
    statusIdsRequests: 0,
    statusIdsMaxInFlight: 0,
    statusIdsMaxIds: 0,
    statusIdsMissingRecord: 0,
    lastRequestAt: {},
    oversizedBytesWritten: 0,
    oversizedAborted: 0,
  };
  readonly shuffleRng: Rng;
  readonly churnRng: Rng;
  private readonly idRng: Rng;
  private readonly pending = new Set<() => void>();

  constructor(
    readonly state: SimState,
    token: string,
    readonly version: string,
    seed: number,
    readonly pluginSettings: PluginSettings,
    readonly wsAuthTimeoutMs: number,
    readonly log: (msg: string) => void,
  ) {
    this.token = token;
    this.shuffleRng = stream(seed, 1);
    this.churnRng = stream(seed, 2);
    this.idRng = stream(seed, 3);
  }

  requestId(): string {
    return newId(this.idRng);
  }

  /**
   * Mattermost's client config (format=old), a few keys; values are strings as in Mattermost. Without
   * a session Mattermost answers the limited one, which has EnableUserStatuses but not ShowEmailAddress.
   */
  clientConfig(full = true): Record<string, string> {
    const cfg: Record<string, string> = {
      BuildEnterpriseReady: "false",
      BuildHash: "simulator",
      BuildNumber: "12345",
      DiagnosticsEnabled: "false",
      EnableUserStatuses: String(this.state.enableUserStatuses),
      ShowEmailAddress: String(this.state.emailsVisible),
      SiteName: "Mattermost Simulator",
      SiteURL: this.url,
      Version: this.version,
    };
    if (!full) delete cfg.ShowEmailAddress;
    return cfg;
  }

  /** Like Mattermost's X-Version-Id: version.build.clientConfigHash.enterpriseReady. */
  versionId(): string {
    const hash = createHash("md5").update(JSON.stringify(this.clientConfig())).digest("hex");
    return `${this.version}.12345.${hash}.false`;
  }

  /** The token as Mattermost reads it: `Authorization: Bearer|Token <t>`, the MMAUTHTOKEN cookie, `?access_token=`. */
  tokenFrom(req: IncomingMessage, url: URL): string | undefined {
    const cookie = req.headers.cookie;
    if (cookie) {
      for (const part of cookie.split(";")) {
        const [name, ...rest] = part.trim().split("=");
        if (name === "MMAUTHTOKEN") return rest.join("=");
      }
    }
    const auth = req.headers.authorization ?? "";
    if (auth.length > 6 && auth.slice(0, 6).toUpperCase() === "BEARER") return auth.slice(7);
    if (auth.length > 5 && auth.slice(0, 5).toLowerCase() === "token") return auth.slice(6);
    return url.searchParams.get("access_token") || undefined;
  }

  isValidToken(token: string | undefined): boolean {
    return this.callerOf(token) !== undefined;
  }

  /** Who a token belongs to, and whether it has manage_system; undefined for a token nobody has. */
  callerOf(token: string | undefined): { user: SimUser; admin: boolean } | undefined {
    if (token === undefined || token === "") return undefined;
    if (token === this.token) return { user: this.state.bot, admin: this.botIsAdmin };
    if (token === this.plainToken && this.state.plainBot) return { user: this.state.plainBot, admin: false };
    return undefined;
  }

  countRequest(key: RouteKey): void {
    this.stats.requests[key] = (this.stats.requests[key] ?? 0) + 1;
    this.stats.lastRequestAt[key] = Date.now();
  }

  resetStats(): void {
    for (const k of Object.keys(this.stats.requests)) delete this.stats.requests[k];
    for (const k of Object.keys(this.stats.lastRequestAt)) delete this.stats.lastRequestAt[k];
    this.stats.statusIdsRequests = 0;
    this.stats.statusIdsMaxInFlight = this.statusIdsInFlight;
    this.stats.statusIdsMaxIds = 0;
    this.stats.statusIdsMissingRecord = 0;
    this.stats.oversizedBytesWritten = 0;
    this.stats.oversizedAborted = 0;
  }

  /** Resolves true after ms, or false if the simulator stops first. */
  delay(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const cancel = (): void => {
        clearTimeout(timer);
        this.pending.delete(cancel);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.pending.delete(cancel);
        resolve(true);
      }, ms);
      this.pending.add(cancel);
    });
  }

  cancelPending(): void {
    for (const cancel of [...this.pending]) cancel();
  }
}
