import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "./config/load.js";
import type { Logger } from "./log.js";
import { MattermostClient } from "./mattermost/client.js";
import { MattermostEvents } from "./mattermost/events.js";
import { PresenceSync } from "./mattermost/sync.js";
import { PresenceSnapshot } from "./presence/snapshot.js";
import { compatApi } from "./http/compat.js";
import { healthApi } from "./http/health.js";
import { createHttpServer } from "./http/router.js";
import { WsHub } from "./http/ws-hub.js";
import { NO_TELEMETRY, type Telemetry } from "./telemetry.js";

/**
 * The whole service, wired in the one direction data flows:
 * Mattermost → sync → snapshot → (pages, hub) → providers.
 */
export class Gateway {
  readonly snapshot = new PresenceSnapshot();
  readonly client: MattermostClient;
  readonly sync: PresenceSync;
  readonly hub: WsHub;
  readonly server: Server;
  private readonly events: MattermostEvents;
  private secrets: string[];

  constructor(
    private config: Config,
    private readonly log: Logger,
    readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.secrets = acceptedSecrets(config);
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
      telemetry,
    });
    this.events = new MattermostEvents({
      url: config.mattermostUrl,
      token: () => this.config.mattermostToken,
      log,
      onHint: (reason) => this.sync.hintDirectory(reason),
      maxBackoffMs: config.backoffMaxMs,
    });
    this.hub = new WsHub({
      snapshot: this.snapshot,
      log,
      keepaliveMs: config.keepaliveMs,
      replayWindowMs: config.replayWindowMs,
      maxBufferBytes: config.wsMaxBufferBytes,
      pingIntervalMs: config.wsPingIntervalMs,
      telemetry,
    });
    this.server = createHttpServer(log, telemetry, [
      compatApi({
        snapshot: this.snapshot,
        hub: this.hub,
        log,
        secrets: () => this.secrets,
        pageSize: () => this.config.pageSize,
        notReadyReason: () => this.notReadyReason(),
        hintUser: (id) => this.sync.hintUser(id),
        maxConnections: config.maxConnections,
        telemetry,
      }),
      healthApi({
        notReadyReason: () => this.notReadyReason(),
        details: () => ({ users: this.snapshot.visible().length, sockets: this.hub.size }),
      }),
    ]);
    this.snapshot.onChanges((changes) => {
      for (const c of changes) {
        log.debug(
          { event: "status_change", userId: c.userId, status: c.status, seq: c.seq },
          "status changed",
        );
      }
    });
  }

  notReadyReason(): string | undefined {
    if (this.sync.health.tokenRejected) return "Mattermost rejected the token (401)";
    if (!this.snapshot.ready) {
      const err = this.sync.health.lastError;
      return `first snapshot not loaded yet${err ? `: ${err}` : ""}`;
    }
    return undefined;
  }

  /** Listens, then starts polling; resolves with the base URL once the port is bound. */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.hub.start();
    this.sync.start();
    this.events.start();
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${addr.port}`;
    this.log.info({ event: "listening", host: addr.address, port: addr.port }, `gateway listening on ${url}`);
    return url;
  }

  /** Replaces the secret(s) and token without dropping sockets (SIGHUP). */
  reload(next: Config): void {
    this.config = {
      ...this.config,
      mattermostToken: next.mattermostToken,
      secret: next.secret,
      secretPrevious: next.secretPrevious,
    };
    this.secrets = acceptedSecrets(this.config);
    this.client.setToken(next.mattermostToken);
    this.log.info({ event: "reloaded" }, "secret and token reloaded");
  }

  /**
   * Stops accepting, closes every socket with 1001 (providers reconnect elsewhere), lets
   * in-flight responses finish, and resolves within graceMs.
   */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.events.stop();
    const syncStopped = this.sync.stop();
    this.hub.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.all([closed, syncStopped]), timeout]);
    this.hub.terminateAll();
    this.server.closeAllConnections();
  }
}

function acceptedSecrets(config: Config): string[] {
  return config.secretPrevious ? [config.secret, config.secretPrevious] : [config.secret];
}
