import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createBroker, type Broker } from "./broker/index.js";
import type { Config } from "./config/load.js";
import type { Logger } from "./log.js";
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
import { healthApi } from "./http/health.js";
import { createHttpServer } from "./http/router.js";
import { WsHub } from "./http/ws-hub.js";
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
  readonly hub: WsHub;
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
        onChange: () => {
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
    this.hub = new WsHub({
      snapshot: this.snapshot,
      log,
      keepaliveMs: config.keepaliveMs,
      replayWindowMs: config.replayWindowMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      pingIntervalMs: config.wsPingIntervalMs,
      resyncBytesPerSecond: config.resyncBytesPerSecond,
      telemetry,
      clientAddress,
    });
    this.admin = adminApi({
      snapshot: this.snapshot,
      log,
      tokens: () => (this.config.adminToken ? [this.config.adminToken] : this.secrets()),
      sockets: () => this.hub.size,
      health: () => this.sync.health,
      notReadyReason: () => this.notReadyReason(),
      mattermostUrl: config.mattermostUrl,
      pollIntervalMs: () => this.config.pollIntervalMs,
      leader: () => this.broker.isLeader,
      clientAddress,
      authFailures,
    });
    this.metrics.observe({
      countsByStatus: () => this.snapshot.countsByStatus(),
      directoryUsers: () => this.snapshot.size,
      sockets: () => this.hub.size,
      v2Sockets: () => this.v2.stream.size,
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
      maxBufferBytes: config.wsMaxBufferBytes,
      pingIntervalMs: config.wsPingIntervalMs,
      otherSockets: () => this.hub.size,
      maxConnections: config.maxConnections,
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
          maxConnections: config.maxConnections,
          otherSockets: () => this.v2.stream.authenticated,
          authFailures,
          clientAddress,
          telemetry,
        }),
        healthApi({
          notReadyReason: () => this.notReadyReason(),
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

  notReadyReason(): string | undefined {
    if (this.sync.health.tokenRejected) return "Mattermost rejected the token (401)";
    if (this.pluginSettings && !this.pluginSettings.settings) {
      const err = this.pluginSettings.lastError;
      return `the secret has not been read from Mattermost yet${err ? `: ${err}` : ""}`;
    }
    const cutOff = this.broker.problem();
    if (cutOff) return cutOff;
    if (!this.snapshot.ready) {
      if (!this.broker.isLeader) return "waiting for the leader's snapshot in Redis";
      const err = this.sync.health.lastError;
      return `first snapshot not loaded yet${err ? `: ${err}` : ""}`;
    }
    return undefined;
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
    // Before listening: an unreachable Redis is a startup error, with no port left bound.
    this.broker.onHint((id) => this.sync.hintUser(id));
    this.broker.onPluginSettings((shared) => this.pluginSettings?.adopt(shared));
    try {
      await this.broker.start(this.snapshot, (leader) => this.onLeadership(leader));
    } catch (err) {
      this.hub.close();
      this.v2.stream.close();
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
      throw err;
    }
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${addr.port}`;
    this.log.info({ event: "listening", host: addr.address, port: addr.port }, `gateway listening on ${url}`);
    return url;
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
    this.events.stop();
    this.pluginSettings?.stop();
    // Mattermost's answers are not needed any more: a hanging request must not hold the exit.
    this.client.close();
    const syncStopped = this.sync.stop().then(() => this.broker.stop());
    this.hub.close();
    this.v2.stream.close();
    this.admin.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.all([closed, syncStopped]), timeout]);
    this.hub.terminateAll();
    this.v2.stream.terminateAll();
    this.server.closeAllConnections();
  }
}

/** PRESENCE_SECRET and PRESENCE_SECRET_PREVIOUS, those that are set. */
function staticSecrets(config: Config): string[] {
  return [config.secret, config.secretPrevious].filter((s): s is string => s !== undefined);
}
