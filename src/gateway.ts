import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createBroker, type Broker } from "./broker/index.js";
import { MAKE_A_SECRET, MIN_SECRET_LENGTH, secretWeakness, type Config } from "./config/load.js";
import { redactSecrets, type Logger } from "./log.js";
import { MattermostClient } from "./mattermost/client.js";
import { MattermostEvents } from "./mattermost/events.js";
import {
  PluginSettingsError,
  PluginSettingsFollower,
  fetchPluginSettings,
} from "./mattermost/plugin-settings.js";
import { PresenceSync } from "./mattermost/sync.js";
import { PresenceSnapshot } from "./presence/snapshot.js";
import { AuthFailureLimiter, AuthFailures } from "./http/auth-limit.js";
import { clientAddressFrom } from "./http/client-address.js";
import { compatApi } from "./http/compat.js";
import { NOT_READY_MESSAGES, healthApi, type NotReady } from "./http/health.js";
import { createHttpServer } from "./http/router.js";
import { WsHub } from "./http/ws-hub.js";
import type { UnsentBytes } from "./http/sockets/unsent-bytes.js";
import { SocketPool } from "./http/sockets/pool.js";
import { presenceApiV2, type V2Api } from "./http/v2/index.js";
import { adminApi, type AdminApi } from "./http/admin.js";
import { GatewayMetrics, composeTelemetry, logTelemetry, metricsApi } from "./metrics/index.js";
import { NO_TELEMETRY, type Telemetry } from "./telemetry.js";

/**
 * The whole service, wired in the one direction data flows:
 * Mattermost → sync (on the leader only) → snapshot ⇄ broker (other replicas) →
 * (pages, hub, API v2, admin feed) → providers and clients.
 */
export class Gateway {
  readonly snapshot = new PresenceSnapshot();
  readonly client: MattermostClient;
  readonly sync: PresenceSync;
  /** Every WebSocket, both protocols: admission, buffer cap, dead peers, closes (http/sockets). */
  readonly sockets: SocketPool;
  /** The compat `/ws` protocol on the pool. */
  readonly hub: WsHub;
  /** The unsent-bytes cap every write on every WebSocket (both protocols) goes through. */
  readonly unsent: UnsentBytes;
  /** API v2: /api/v2/presence, /api/v2/stream (resumable), /api/v2/openapi.json. */
  readonly v2: V2Api;
  readonly server: Server;
  /** Prometheus metrics (GET /metrics); the core reports to them through `telemetry`. */
  readonly metrics = new GatewayMetrics();
  /** What the core reports to: the metrics, a debug log of poll cycles, and any extra given. */
  readonly telemetry: Telemetry;
  private readonly admin: AdminApi;
  private readonly events: MattermostEvents;
  /** Set when the secret comes from the old plugin's settings in Mattermost. */
  readonly pluginSettings: PluginSettingsFollower | undefined;
  /** Shares the snapshot between replicas; only its leader talks to Mattermost. */
  readonly broker: Broker;
  /** Watches for the first moment of readiness, for the one `ready` log line. */
  private readyWatch: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();

  constructor(
    private config: Config,
    private readonly log: Logger,
    extraTelemetry: Telemetry = NO_TELEMETRY,
    /** Told every accepted secret whenever they change, so the log scrubber knows them. */
    private readonly onSecrets: (secrets: readonly string[]) => void = () => undefined,
  ) {
    const telemetry = composeTelemetry(this.metrics, logTelemetry(log), extraTelemetry);
    this.telemetry = telemetry;
    this.broker = createBroker(config, log);
    this.client = new MattermostClient({
      url: config.mattermostUrl,
      token: config.mattermostToken,
      timeoutMs: config.requestTimeoutMs,
      onRequest: (endpoint, status, ms) => telemetry.upstreamRequest(endpoint, status, ms),
    });
    this.sync = new PresenceSync({
      client: this.client,
      snapshot: this.snapshot,
      log,
      pollIntervalMs: config.pollIntervalMs,
      directoryRefreshMs: config.directoryRefreshMs,
      concurrency: config.pollConcurrency,
      backoffMaxMs: config.backoffMaxMs,
      hintRequestsPerSecond: config.hintsPerSecond,
      mayPoll: () => this.broker.isLeader,
      telemetry,
    });
    this.events = new MattermostEvents({
      url: config.mattermostUrl,
      token: () => this.config.mattermostToken,
      log,
      onHint: (reason) => this.sync.hintDirectory(reason),
      onConfigChanged: () => void this.pluginSettings?.refresh("config_changed"),
      maxBackoffMs: config.backoffMaxMs,
    });
    if (config.settingsFromMattermost) {
      this.pluginSettings = new PluginSettingsFollower({
        client: this.client,
        log,
        overlapMs: config.secretOverlapMs,
        refreshMs: config.directoryRefreshMs,
        extra: () => staticSecrets(this.config),
        onChange: (settings) => {
          this.warnIfWeak(settings.secret);
          this.onSecrets(this.secrets());
          this.sharePluginSettings();
        },
      });
    }
    const clientAddress = clientAddressFrom(config.trustedProxies);
    const authFailures = new AuthFailures(
      new AuthFailureLimiter(config.authFailureBurst, config.authFailureWindowMs),
      log,
      clientAddress,
    );
    this.sockets = new SocketPool({
      log,
      telemetry,
      maxConnections: config.maxConnections,
      pingIntervalMs: config.wsPingIntervalMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      maxBufferedTotalBytes: config.maxBufferedTotalBytes,
      clientAddress,
    });
    this.unsent = this.sockets.unsent;
    this.hub = new WsHub({
      pool: this.sockets,
      snapshot: this.snapshot,
      keepaliveMs: config.keepaliveMs,
      replayWindowMs: config.replayWindowMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      resyncBytesPerSecond: config.resyncBytesPerSecond,
      telemetry,
    });
    this.admin = adminApi({
      snapshot: this.snapshot,
      log,
      tokens: () => (this.config.adminToken ? [this.config.adminToken] : this.secrets()),
      sockets: () => this.hub.size,
      health: () => {
        const h = this.sync.health;
        return h.lastError === undefined ? h : { ...h, lastError: this.redact(h.lastError) };
      },
      notReadyReason: () => this.notReadyDetail(),
      mattermostUrl: config.mattermostUrl,
      pollIntervalMs: () => this.config.pollIntervalMs,
      leader: () => this.broker.isLeader,
      clientAddress,
      authFailures,
      providers: () => this.sockets.list(),
      providerCount: () => this.sockets.connections,
    });
    this.metrics.observe({
      countsByStatus: () => this.snapshot.countsByStatus(),
      directoryUsers: () => this.snapshot.size,
      sockets: () => this.hub.size,
      v2Sockets: () => this.v2.stream.size,
      unsentBytes: () => this.unsent.unsent(),
      health: () => this.sync.health,
      ready: () => this.notReadyReason() === undefined,
      lastSeq: () => this.snapshot.lastSeq,
      leader: () => this.broker.isLeader,
    });
    this.v2 = presenceApiV2({
      snapshot: this.snapshot,
      log,
      secrets: () => this.secrets(),
      notReadyReason: () => this.notReadyReason(),
      retainedChanges: config.v2RetainedChanges,
      pool: this.sockets,
      telemetry,
      clientAddress,
      authFailures,
    });
    this.server = createHttpServer(
      log,
      telemetry,
      [
        compatApi({
          snapshot: this.snapshot,
          hub: this.hub,
          log,
          secrets: () => this.secrets(),
          pageSize: () => this.pageSize(),
          notReadyReason: () => this.notReadyReason(),
          hintUser: (id) => (this.broker.isLeader ? this.sync.hintUser(id) : this.broker.forwardHint(id)),
          hintsPerAddress: config.hintsPerAddress,
          replayWindowMs: config.replayWindowMs,
          authFailures,
          clientAddress,
          telemetry,
        }),
        healthApi({
          notReady: () => this.notReady(),
          details: () => ({ users: this.snapshot.visible().length, sockets: this.hub.size }),
        }),
        metricsApi({ metrics: this.metrics, log, token: () => this.config.metricsToken, authFailures }),
        this.admin,
        this.v2,
      ],
      { clientAddress },
    );
    this.snapshot.onChanges((changes) => {
      telemetry.statusChanges(changes.length);
      for (const c of changes) {
        log.debug(
          { event: "status_change", userId: c.userId, status: c.status, seq: c.seq },
          "status changed",
        );
      }
    });
  }

  /**
   * The old plugin's secret is served even when too short: refusing it would lock out every
   * desktop of a drop-in migration. It is said loudly instead, on every change (and by `doctor`).
   */
  private warnIfWeak(secret: string): void {
    const weakness = secretWeakness(secret);
    if (!weakness) return;
    this.log.error(
      { event: "weak_secret", source: "mattermost", length: secret.length, minLength: MIN_SECRET_LENGTH },
      `the old plugin's secret in Mattermost is ${weakness}: anyone can guess it and open /status and /admin; regenerate it in System Console › Plugins › Outlook Presence, or set PRESENCE_SECRET: ${MAKE_A_SECRET}`,
    );
  }

  /** Accepted secrets, current first. */
  secrets(): readonly string[] {
    return this.pluginSettings ? this.pluginSettings.accepted() : staticSecrets(this.config);
  }

  /** PRESENCE_PAGE_SIZE when set, else the plugin's PerPageStatuses when read from Mattermost. */
  pageSize(): number {
    const fromMattermost = this.pluginSettings?.settings?.pageSize;
    return this.config.pageSizeExplicit || fromMattermost === undefined
      ? this.config.pageSize
      : fromMattermost;
  }

  /** Why the gateway is not ready (undefined when it is), with Mattermost's error text if any. */
  notReady(): NotReady | undefined {
    if (this.sync.health.tokenRejected) return { reason: "token_rejected" };
    if (this.pluginSettings && !this.pluginSettings.settings) {
      return { reason: "settings_pending", detail: this.pluginSettings.lastError };
    }
    const cutOff = this.broker.problem();
    if (cutOff) return { reason: "redis_unreachable", detail: cutOff };
    if (!this.snapshot.ready) {
      if (!this.broker.isLeader) return { reason: "waiting_for_leader" };
      return { reason: "snapshot_pending", detail: this.sync.health.lastError };
    }
    return undefined;
  }

  /** What any client may be told: one fixed sentence per reason, never Mattermost's text. */
  notReadyReason(): string | undefined {
    const notReady = this.notReady();
    return notReady && NOT_READY_MESSAGES[notReady.reason];
  }

  /** For the admin page: the reason and Mattermost's last error, secrets and tokens redacted. */
  notReadyDetail(): string | undefined {
    const notReady = this.notReady();
    if (!notReady) return undefined;
    const message = NOT_READY_MESSAGES[notReady.reason];
    return notReady.detail ? `${message}: ${this.redact(notReady.detail)}` : message;
  }

  /** `text` without the token or any secret the gateway holds (see redactSecrets). */
  redact(text: string): string {
    const c = this.config;
    return redactSecrets(text, [c.mattermostToken, c.metricsToken, c.adminToken, ...this.secrets()]);
  }

  /**
   * The leader polls Mattermost, listens to its events and follows the old plugin's settings; a
   * follower only serves, with the settings the leader shares through the broker.
   */
  private onLeadership(leader: boolean): void {
    if (leader) {
      this.sync.start();
      this.events.start();
      this.pluginSettings?.start();
      this.sharePluginSettings();
    } else {
      this.events.stop();
      this.pluginSettings?.stop();
      void this.sync.stop();
    }
  }

  private sharePluginSettings(): void {
    const shared = this.pluginSettings?.shared();
    if (shared && this.broker.isLeader) this.broker.sharePluginSettings(shared);
  }

  /**
   * Subscribes the socket pools, starts the broker (which starts polling once this instance
   * leads), then listens; resolves with the base URL once the port is bound. When the
   * secret comes from Mattermost, a setting only an admin can fix (no permission, no secret,
   * masked) rejects with PluginSettingsError before listening; an unreachable Mattermost does
   * not: the gateway starts, not ready, and keeps trying.
   */
  async start(): Promise<string> {
    this.onSecrets(this.secrets());
    if (this.pluginSettings) {
      try {
        this.pluginSettings.seed(await fetchPluginSettings(this.client));
      } catch (err) {
        if (err instanceof PluginSettingsError) throw err;
        this.log.warn(
          { event: "plugin_settings_failed", reason: "startup" },
          `cannot read the plugin's settings yet (${(err as Error).message}); retrying`,
        );
      }
    }
    // The pools subscribe before any change can be emitted, so the v2 change log has no gap.
    this.hub.start();
    this.v2.stream.start();
    this.sockets.start();
    // Before listening: an unreachable Redis is a startup error, with no port left bound.
    this.broker.onHint((id) => this.sync.hintUser(id));
    this.broker.onPluginSettings((shared) => this.pluginSettings?.adopt(shared));
    try {
      await this.broker.start(this.snapshot, (leader) => this.onLeadership(leader));
    } catch (err) {
      this.hub.close();
      this.v2.stream.close();
      this.sockets.stop();
      throw err;
    }
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once("error", reject);
        this.server.listen(this.config.port, this.config.host, () => {
          this.server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      this.events.stop();
      await this.sync.stop();
      await this.broker.stop();
      this.hub.close();
      this.v2.stream.close();
      this.sockets.stop();
      throw err;
    }
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${addr.port}`;
    this.log.info({ event: "listening", host: addr.address, port: addr.port }, `gateway listening on ${url}`);
    this.watchReady();
    return url;
  }

  /**
   * Logs `ready` once, the first time the gateway can serve `/status`. Readiness has several
   * sources (the first snapshot, a follower's copy from Redis, the secret read from Mattermost),
   * none of which announces itself, so it is checked on a short timer until then.
   */
  private watchReady(): void {
    const check = () => {
      if (this.notReadyReason() !== undefined) return;
      clearInterval(this.readyWatch);
      const users = this.snapshot.visible().length;
      const pageSize = this.pageSize();
      this.log.info(
        {
          event: "ready",
          users,
          pages: Math.ceil(users / pageSize),
          leader: this.broker.isLeader,
          startupMs: Date.now() - this.startedAt,
        },
        `gateway ready: serving ${users} users`,
      );
    };
    this.readyWatch = setInterval(check, 100).unref();
    check();
  }

  /** Replaces the secret(s) and token without dropping sockets (SIGHUP). */
  reload(next: Config): void {
    const tokenChanged = next.mattermostToken !== this.config.mattermostToken;
    this.config = {
      ...this.config,
      mattermostToken: next.mattermostToken,
      secret: next.secret,
      secretPrevious: next.secretPrevious,
      metricsToken: next.metricsToken,
      adminToken: next.adminToken,
    };
    this.client.setToken(next.mattermostToken);
    // A rejected token waits out the longest backoff; a new one is tried at once.
    if (tokenChanged) this.sync.retryNow();
    this.onSecrets(this.secrets());
    this.log.info({ event: "reloaded" }, "secret and token reloaded");
  }

  /**
   * Stops accepting, closes every socket with 1001 (providers reconnect elsewhere), lets
   * in-flight responses finish, and resolves within graceMs.
   */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    clearInterval(this.readyWatch);
    this.events.stop();
    this.pluginSettings?.stop();
    // Mattermost's answers are not needed any more: a hanging request must not hold the exit.
    this.client.close();
    const syncStopped = this.sync.stop().then(() => this.broker.stop());
    this.hub.close();
    this.v2.stream.close();
    this.sockets.stop();
    this.admin.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.all([closed, syncStopped]), timeout]);
    this.sockets.terminateAll();
    this.server.closeAllConnections();
  }
}

/** PRESENCE_SECRET and PRESENCE_SECRET_PREVIOUS, those that are set. */
function staticSecrets(config: Config): string[] {
  return [config.secret, config.secretPrevious].filter((s): s is string => s !== undefined);
}
