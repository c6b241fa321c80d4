import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createBroker, type Broker } from "./broker/index.js";
import type { Config } from "./config/load.js";
import { redactSecrets, type Logger } from "./log.js";
import { MattermostClient } from "./mattermost/client.js";
import { MattermostEvents } from "./mattermost/events.js";
import { PresenceSync, type UpstreamHealth } from "./mattermost/sync.js";
import { PresenceSnapshot } from "./presence/snapshot.js";
import { AuthFailureLimiter, AuthFailures } from "./http/auth-limit.js";
import { clientAddressFrom } from "./http/client-address.js";
import { compatApi } from "./http/compat.js";
import { healthApi, type NotReady } from "./http/health.js";
import { createHttpServer } from "./http/router.js";
import { WsHub } from "./http/ws-hub.js";
import { SocketPool } from "./http/sockets/pool.js";
import { presenceApiV2, type V2Api } from "./http/v2/index.js";
import { adminApi, type AdminApi } from "./http/admin.js";
import type { ProviderSocket } from "./http/provider-sockets.js";
import { GatewayMetrics, composeTelemetry, logTelemetry, metricsApi } from "./metrics/index.js";
import { NO_TELEMETRY, type Telemetry } from "./telemetry.js";
import { Components, type Component } from "./gateway/components.js";
import { Readiness } from "./gateway/readiness.js";
import { SecretSource } from "./gateway/secret-source.js";
import type { GatewayRole, WorkerLink } from "./gateway/role.js";

export type { GatewayRole, WorkerLink } from "./gateway/role.js";

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
  /** API v2: /api/v2/presence, /api/v2/stream (resumable), /api/v2/openapi.json. */
  readonly v2: V2Api;
  readonly server: Server;
  /** Prometheus metrics (GET /metrics); the core reports to them through `telemetry`. */
  readonly metrics: GatewayMetrics;
  /** What the core reports to: the metrics, a debug log of poll cycles, and any extra given. */
  readonly telemetry: Telemetry;
  /** Shares the snapshot between replicas; only its leader talks to Mattermost. */
  readonly broker: Broker;
  /** The accepted secrets and the page size (static, or the old plugin's settings). */
  readonly secretSource: SecretSource;
  readonly readiness: Readiness;
  private readonly admin: AdminApi;
  private readonly events: MattermostEvents;
  private readonly components: Components;
  private readonly startedAt = Date.now();
  private readonly worker: WorkerLink | undefined;
  private url = "";

  constructor(
    private config: Config,
    private readonly log: Logger,
    extraTelemetry: Telemetry = NO_TELEMETRY,
    /** Told every accepted secret whenever they change, so the log scrubber knows them. */
    onSecrets: (secrets: readonly string[]) => void = () => undefined,
    private readonly role: GatewayRole = { kind: "single" },
  ) {
    const worker = role.kind === "worker" ? role.link : undefined;
    this.worker = worker;
    this.metrics = new GatewayMetrics({
      worker: role.kind === "single" ? undefined : (worker?.id ?? "primary"),
    });
    const telemetry = composeTelemetry(this.metrics, logTelemetry(log), extraTelemetry);
    this.telemetry = telemetry;
    this.broker = worker ? worker.broker : createBroker(config, log);
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
      onConfigChanged: () => this.secretSource.refresh(),
      maxBackoffMs: config.backoffMaxMs,
    });
    this.secretSource = new SecretSource({
      config: () => this.config,
      client: this.client,
      log,
      onSecrets,
      onShared: (shared) => {
        if (this.broker.isLeader) this.broker.sharePluginSettings(shared);
      },
    });
    this.readiness = new Readiness(
      {
        tokenRejected: () => this.sync.health.tokenRejected,
        settingsPending: () => this.secretSource.pending(),
        brokerProblem: () => this.broker.problem(),
        snapshotReady: () => this.snapshot.ready,
        isLeader: () => this.broker.isLeader,
        lastError: () => this.sync.health.lastError,
        instance: worker && (() => worker.notReady()),
      },
      (text) => this.redact(text),
    );
    // A worker shows the instance: the primary's upstream health, every worker's sockets.
    const health = (): Readonly<UpstreamHealth> => worker?.health() ?? this.sync.health;
    const leader = (): boolean => (worker ? worker.leader() : this.broker.isLeader);
    const sockets = (): number => worker?.instanceSockets()?.compat ?? this.hub.size;
    const providers = (): number =>
      worker?.instanceSockets()?.providers ?? this.hub.size + this.v2.stream.authenticated;
    // Provider connections of the other workers count against PRESENCE_MAX_CONNECTIONS too.
    const otherWorkers = (): number => worker?.otherConnections() ?? 0;
    const clientAddress = clientAddressFrom(config.trustedProxies);
    const authFailures = new AuthFailures(
      worker
        ? worker.authFailureLimiter(config.authFailureBurst, config.authFailureWindowMs)
        : new AuthFailureLimiter(config.authFailureBurst, config.authFailureWindowMs),
      log,
      clientAddress,
    );
    // Budgets for the whole instance are split evenly between its workers (each worker holds
    // its share of the sockets: node:cluster hands connections out in turn).
    const share = (budget: number): number =>
      worker && budget > 0 ? Math.max(1, Math.floor(budget / config.workers)) : budget;
    this.sockets = new SocketPool({
      otherConnections: otherWorkers,
      log,
      telemetry,
      maxConnections: config.maxConnections,
      pingIntervalMs: config.wsPingIntervalMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      maxBufferedTotalBytes: share(config.maxBufferedTotalBytes),
      clientAddress,
    });
    this.hub = new WsHub({
      pool: this.sockets,
      snapshot: this.snapshot,
      keepaliveMs: config.keepaliveMs,
      replayWindowMs: config.replayWindowMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      resyncBytesPerSecond: share(config.resyncBytesPerSecond),
      telemetry,
    });
    this.admin = adminApi({
      snapshot: this.snapshot,
      log,
      tokens: () => (this.config.adminToken ? [this.config.adminToken] : this.secrets()),
      sockets,
      health: () => {
        const h = health();
        return h.lastError === undefined ? h : { ...h, lastError: this.redact(h.lastError) };
      },
      notReadyReason: () => this.notReadyDetail(),
      mattermostUrl: config.mattermostUrl,
      pollIntervalMs: () => this.config.pollIntervalMs,
      leader,
      clientAddress,
      providers: () => (worker ? worker.instanceProviders() : this.providers()),
      sessionKey: worker?.sessionKey,
      providerCount: providers,
    });
    this.metrics.observe({
      countsByStatus: () => this.snapshot.countsByStatus(),
      directoryUsers: () => this.snapshot.size,
      sockets: () => this.hub.size,
      v2Sockets: () => this.v2.stream.size,
      unsentBytes: () => this.sockets.unsent.unsent(),
      health: () => this.sync.health,
      ready: () => this.notReadyReason() === undefined,
      lastSeq: () => this.snapshot.lastSeq,
      leader: () => this.broker.isLeader,
    });
    if (worker) this.metrics.renderWith(() => worker.renderMetrics());
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
          hintUser: (id) => this.hint(id),
          hintsPerAddress: config.hintsPerAddress,
          replayWindowMs: config.replayWindowMs,
          clientAddress,
          telemetry,
        }),
        healthApi({
          notReady: () => this.notReady(),
          details: () => ({ users: this.snapshot.visible().length, sockets: sockets() }),
        }),
        metricsApi({ metrics: this.metrics, log, token: () => this.config.metricsToken }),
        this.admin,
        this.v2,
      ],
      { clientAddress, authFailures },
    );
    this.snapshot.onChanges((changes) => {
      telemetry.statusChanges(changes.length);
      if (worker) return; // the primary logs each change once for the instance
      for (const c of changes) {
        log.debug(
          { event: "status_change", userId: c.userId, status: c.status, seq: c.seq },
          "status changed",
        );
      }
    });
    this.components = new Components(this.componentList());
  }

  /**
   * Everything that runs, in start order; a failed start, stop and teardown walk it backwards.
   * The primary of worker processes keeps only the Mattermost side; a worker never reads
   * Mattermost itself (its broker never leads, so polling and events never start).
   */
  private componentList(): Component[] {
    const secrets: Component = {
      name: "secrets",
      // A worker adopts the settings the primary read.
      start: () => (this.worker ? undefined : this.secretSource.seed()),
      stop: () => undefined,
    };
    // The protocols subscribe before any change can be emitted, so the v2 change log has no gap.
    // The shared socket pool (ping rounds, unsent-bytes sweeps; every socket's final terminate)
    // comes first so that it stops last, after both protocols have closed their sockets.
    const pools: Component[] = [
      {
        name: "socket-pool",
        start: () => this.sockets.start(),
        stop: () => this.sockets.stop(),
        terminate: () => this.sockets.terminateAll(),
      },
      { name: "compat-protocol", start: () => this.hub.start(), stop: () => this.hub.close() },
      { name: "v2-protocol", start: () => this.v2.stream.start(), stop: () => this.v2.stream.close() },
      { name: "admin", start: () => undefined, stop: () => this.admin.close() },
    ];
    // Before listening: an unreachable Redis is a startup error, with no port left bound.
    const leadership: Component = {
      name: "broker",
      start: async () => {
        this.broker.onHint((id) => this.sync.hintUser(id));
        this.broker.onPluginSettings((shared) => this.secretSource.adopt(shared));
        await this.broker.start(this.snapshot, (leader) => this.onLeadership(leader));
      },
      stop: async () => {
        this.events.stop();
        this.secretSource.unfollow();
        // Mattermost's answers are not needed any more: a hanging request must not hold the exit.
        this.client.close();
        await this.sync.stop();
        await this.broker.stop();
      },
    };
    const server: Component = {
      name: "server",
      start: () => this.listen(),
      stop: () => {
        const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
        this.server.closeIdleConnections();
        return closed;
      },
      terminate: () => this.server.closeAllConnections(),
    };
    const readyWatch: Component = {
      name: "ready-watch",
      start: () => this.readiness.watchReady(() => this.logReady()),
      stop: () => this.readiness.stopWatching(),
    };
    if (this.role.kind === "primary") return [secrets, leadership];
    return [secrets, ...pools, leadership, server, readyWatch];
  }

  /** Accepted secrets, current first. */
  secrets(): readonly string[] {
    return this.secretSource.secrets();
  }

  /** PRESENCE_PAGE_SIZE when set, else the plugin's PerPageStatuses when read from Mattermost. */
  pageSize(): number {
    return this.secretSource.pageSize();
  }

  /** Why the gateway is not ready (undefined when it is), with Mattermost's error text if any. */
  notReady(): NotReady | undefined {
    return this.readiness.notReady();
  }

  /** What any client may be told: one fixed sentence per reason, never Mattermost's text. */
  notReadyReason(): string | undefined {
    return this.readiness.reason();
  }

  /** For the admin page: the reason and Mattermost's last error, secrets and tokens redacted. */
  notReadyDetail(): string | undefined {
    return this.readiness.detail();
  }

  /** `text` without the token or any secret the gateway holds (see redactSecrets). */
  redact(text: string): string {
    const c = this.config;
    return redactSecrets(text, [c.mattermostToken, c.metricsToken, c.adminToken, ...this.secrets()]);
  }

  /** This process's provider sockets of both pools (copies), for the admin page's list. */
  providers(): ProviderSocket[] {
    return [...this.sockets.list()];
  }

  /** A /status/publish hint: re-read that user now (on the leader), or pass it to the leader. */
  hint(userId: string): boolean {
    return this.broker.isLeader ? this.sync.hintUser(userId) : this.broker.forwardHint(userId);
  }

  /**
   * The leader polls Mattermost, listens to its events and follows the old plugin's settings; a
   * follower only serves, with the settings the leader shares through the broker.
   */
  private onLeadership(leader: boolean): void {
    if (leader) {
      this.sync.start();
      this.events.start();
      this.secretSource.follow();
    } else {
      this.events.stop();
      this.secretSource.unfollow();
      void this.sync.stop();
    }
  }

  /**
   * Starts every component in order: reads the secret when it comes from Mattermost, subscribes
   * the socket pools, starts the broker (which starts polling once this instance leads), then
   * listens; resolves with the base URL once the port is bound ("" for a primary, which does not
   * listen). A setting only an admin can fix rejects with PluginSettingsError before listening;
   * an unreachable Mattermost does not: the gateway starts, not ready, and keeps trying.
   */
  async start(): Promise<string> {
    await this.components.start();
    return this.url;
  }

  private async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    this.url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${addr.port}`;
    // With worker processes, the primary says `listening` once for the whole instance.
    const event = this.worker ? "worker_listening" : "listening";
    this.log.info({ event, host: addr.address, port: addr.port }, `gateway listening on ${this.url}`);
  }

  /** The one `ready` log line (a worker's is `worker_ready`: the primary speaks for the instance). */
  private logReady(): void {
    const users = this.snapshot.visible().length;
    const pageSize = this.pageSize();
    this.log.info(
      {
        event: this.worker ? "worker_ready" : "ready",
        users,
        pages: Math.ceil(users / pageSize),
        leader: this.broker.isLeader,
        startupMs: Date.now() - this.startedAt,
      },
      `gateway ready: serving ${users} users`,
    );
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
    this.secretSource.reloaded();
    this.log.info({ event: "reloaded" }, "secret and token reloaded");
  }

  /**
   * Stops accepting, closes every socket with 1001 (providers reconnect elsewhere), lets
   * in-flight responses finish, and resolves within graceMs.
   */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    await this.components.stop(graceMs);
  }
}
