import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { UpstreamHealth } from "../mattermost/sync.js";
import { PROVIDER_STATUSES, type ProviderStatus } from "../presence/status.js";
import type { Telemetry } from "../telemetry.js";
import { VERSION } from "../version.js";

export const METRICS_PREFIX = "outlook_presence_";

/** State read at scrape time (never pushed): the gateway binds it once its parts exist. */
export interface MetricsSource {
  /** Users a provider sees (active, with an email and a status), by status. */
  countsByStatus(): Record<ProviderStatus, number>;
  /** Active users in the directory, with or without an email. */
  directoryUsers(): number;
  /** Open compat WebSockets. */
  sockets(): number;
  /** Open /api/v2/stream WebSockets (they share PRESENCE_MAX_CONNECTIONS with the compat ones). */
  v2Sockets?(): number;
  /** Bytes written to sockets and not yet sent, by protocol (compat, v2). */
  unsentBytes?(): Record<string, number>;
  health(): Readonly<UpstreamHealth>;
  ready(): boolean;
  /** Sequence number of the last status change (with Redis, the leader's numbering). */
  lastSeq(): number;
  /** Whether this instance polls Mattermost: always without Redis; with Redis, the lease holder. */
  leader(): boolean;
  now?: () => number;
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const DIRECTORY_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * The Telemetry the core calls, as Prometheus metrics in a registry of their own (so several
 * gateways in one process, as in tests, do not collide). Counters and histograms are fed by the
 * Telemetry calls; everything that is state (users by status, sockets, poll age, readiness) is a
 * gauge read from MetricsSource when scraped, so it is never stale and costs nothing between
 * scrapes.
 */
export class GatewayMetrics implements Telemetry {
  readonly registry = new Registry();
  private source: MetricsSource | undefined;
  /** Set in a worker process: /metrics answers for the whole instance (see src/cluster). */
  private renderer: (() => Promise<string>) | undefined;

  private readonly wsOpened: Counter<"protocol">;
  private readonly wsMessages: Counter;
  private readonly wsBytes: Counter;
  private readonly wsBroadcasts: Counter;
  private readonly wsResyncMessages: Counter;
  private readonly wsClosedBy: Counter<"protocol" | "reason">;
  private readonly wsRefusedBy: Counter<"code">;
  private readonly unsentClosedBy: Counter<"protocol" | "reason">;
  private readonly http: Counter<"route" | "code">;
  /**
   * Requests answered since the last scrape, by route and status, added to `http` when it is
   * collected: prom-client's `inc({route, code})` hashes its labels on every call (~1 µs of every
   * `/status` request, a child from `labels()` too). Bounded: routes are the fixed route table
   * (and "other"), statuses a handful.
   */
  private readonly httpPending = new Map<string, Map<number, { n: number }>>();
  private readonly upstream: Counter<"endpoint" | "code">;
  private readonly upstreamSeconds: Histogram<"endpoint">;
  private readonly pollSeconds: Histogram<"result">;
  private readonly pollRequests: Gauge;
  private readonly directorySeconds: Histogram;
  private readonly changes: Counter;
  private readonly workerReplacements: Counter<"reason">;

  constructor(
    opts: {
      defaultMetrics?: boolean;
      /**
       * With worker processes: this process's name ("primary" or the worker's number). The
       * process metrics (CPU, memory, event loop) and `worker_connections` carry it as a `worker`
       * label, since they are per process; every other metric is summed (or maxed) over the
       * instance by the primary, as each metric's `aggregator` says.
       */
      worker?: string;
    } = {},
  ) {
    const registers = [this.registry];
    const p = METRICS_PREFIX;
    const labels = opts.worker === undefined ? undefined : { worker: opts.worker };
    // Node's default metrics keep their conventional names (process_*, nodejs_*), which the
    // standard Node.js dashboards and alerts query; only this service's own metrics are prefixed.
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, labels });
    const src = (): MetricsSource | undefined => this.source;

    new Gauge({
      name: `${p}build_info`,
      aggregator: "first",
      help: "Always 1; the version label says which gateway runs",
      labelNames: ["version"],
      registers,
    }).set({ version: VERSION }, 1);
    new Gauge({
      name: `${p}leader`,
      aggregator: "max",
      help: "1 when this instance polls Mattermost (always 1 without REDIS_URL; with Redis, the lease holder)",
      registers,
      collect() {
        this.set(src()?.leader() === false ? 0 : 1);
      },
    });
    new Gauge({
      name: `${p}ready`,
      aggregator: "min",
      help: "1 once the first snapshot is loaded and the token accepted (what /readyz says)",
      registers,
      collect() {
        this.set(src()?.ready() ? 1 : 0);
      },
    });

    // ---- providers (compat WebSocket and /status) ----
    // Only workers hold sockets; the primary of worker processes holds none.
    if (opts.worker !== undefined && opts.worker !== "primary") {
      const worker = opts.worker;
      new Gauge({
        name: `${p}worker_connections`,
        help: "Open provider WebSockets (both protocols) held by each process of the instance, by worker",
        labelNames: ["worker"],
        registers,
        collect() {
          const s = src();
          this.set({ worker }, (s?.sockets() ?? 0) + (s?.v2Sockets?.() ?? 0));
        },
      });
    }
    new Gauge({
      name: `${p}ws_connections`,
      help: "Open provider WebSockets",
      registers,
      collect() {
        this.set(src()?.sockets() ?? 0);
      },
    });
    new Gauge({
      name: `${p}v2_stream_connections`,
      help: "Open /api/v2/stream WebSockets (PRESENCE_MAX_CONNECTIONS counts these and ws_connections)",
      registers,
      collect() {
        this.set(src()?.v2Sockets?.() ?? 0);
      },
    });
    new Gauge({
      name: `${p}unsent_bytes`,
      help: "Bytes written to WebSockets and not yet sent, by protocol (compat, v2); all together are capped by PRESENCE_MAX_BUFFERED_TOTAL_BYTES",
      labelNames: ["protocol"],
      registers,
      collect() {
        const by = src()?.unsentBytes?.() ?? {};
        for (const protocol of ["compat", "v2"]) this.set({ protocol }, by[protocol] ?? 0);
      },
    });
    this.unsentClosedBy = new Counter({
      name: `${p}unsent_closes_total`,
      help: "WebSockets closed for unsent bytes, by protocol (compat, v2) and reason (slow_consumer, slow_catch_up, unsent_total)",
      labelNames: ["protocol", "reason"],
      registers,
    });
    // Counted by the primary only (the workers never restart each other): summed, it is its value.
    this.workerReplacements = new Counter({
      name: `${p}worker_replacements_total`,
      help: "Worker processes replaced by the primary, by reason (exited: it died; stalled: it left the primary's messages unread past PRESENCE_WORKER_STALL_MS or its backlog bound, and was killed)",
      labelNames: ["reason"],
      registers,
    });
    this.wsOpened = new Counter({
      name: `${p}ws_connections_opened_total`,
      help: "Provider WebSockets accepted, by protocol (compat: /ws; v2: /api/v2/stream)",
      labelNames: ["protocol"],
      registers,
    });
    this.wsClosedBy = new Counter({
      name: `${p}ws_connections_closed_total`,
      help: "Provider WebSockets closed, by protocol (compat, v2) and reason (client, slow_consumer, slow_catch_up, unsent_total, dead_peer, abuse, shutdown; v2 also bad_message, unauthorized, auth_timeout, too_many_connections)",
      labelNames: ["protocol", "reason"],
      registers,
    });
    this.wsRefusedBy = new Counter({
      name: `${p}ws_upgrades_refused_total`,
      help: "WebSocket upgrades refused before the handshake, by error code",
      labelNames: ["code"],
      registers,
    });
    this.wsMessages = new Counter({
      name: `${p}ws_messages_sent_total`,
      help: "Status messages written to provider sockets (one per message per socket)",
      registers,
    });
    this.wsBytes = new Counter({
      name: `${p}ws_bytes_sent_total`,
      help: "Bytes written to provider sockets (frames included)",
      registers,
    });
    this.wsBroadcasts = new Counter({
      name: `${p}ws_broadcasts_total`,
      help: "Batches fanned out to every socket (changes, keepalives)",
      registers,
    });
    this.wsResyncMessages = new Counter({
      name: `${p}ws_resync_messages_sent_total`,
      help: "Status messages sent to reconnected sockets to repair what they missed (also in ws_messages_sent_total)",
      registers,
    });
    this.http = new Counter({
      name: `${p}http_requests_total`,
      help: "HTTP requests answered, by route and status code (route 'other' for unknown paths)",
      labelNames: ["route", "code"],
      registers,
      collect: () => this.flushHttp(),
    });

    // ---- Mattermost ----
    this.upstream = new Counter({
      name: `${p}upstream_requests_total`,
      help: "Requests to Mattermost, by endpoint and HTTP status ('error': no answer)",
      labelNames: ["endpoint", "code"],
      registers,
    });
    this.upstreamSeconds = new Histogram({
      name: `${p}upstream_request_duration_seconds`,
      help: "Time to Mattermost's full answer, by endpoint",
      labelNames: ["endpoint"],
      buckets: SECONDS,
      registers,
    });
    this.pollSeconds = new Histogram({
      name: `${p}poll_cycle_duration_seconds`,
      help: "One poll cycle (directory read when due, then every status), by result (ok, error)",
      labelNames: ["result"],
      buckets: SECONDS,
      registers,
    });
    this.pollRequests = new Gauge({
      name: `${p}poll_status_requests`,
      aggregator: "max",
      help: "Status requests the last poll cycle needed (users / 200, rounded up)",
      registers,
    });
    this.directorySeconds = new Histogram({
      name: `${p}directory_refresh_duration_seconds`,
      help: "One full read of the active user list",
      buckets: DIRECTORY_SECONDS,
      registers,
    });
    new Gauge({
      name: `${p}last_successful_poll_age_seconds`,
      aggregator: "min",
      help: "Seconds since the last poll cycle that succeeded (+Inf before the first)",
      registers,
      collect() {
        const s = src();
        const at = s?.health().lastPollAt;
        this.set(at === undefined ? Infinity : Math.max(0, ((s?.now ?? Date.now)() - at) / 1000));
      },
    });
    new Gauge({
      name: `${p}last_successful_poll_timestamp_seconds`,
      aggregator: "max",
      help: "Unix time of the last poll cycle that succeeded (0 before the first)",
      registers,
      collect() {
        this.set((src()?.health().lastPollAt ?? 0) / 1000);
      },
    });
    new Gauge({
      name: `${p}upstream_consecutive_failures`,
      aggregator: "max",
      help: "Poll cycles failed in a row (0 when Mattermost answers)",
      registers,
      collect() {
        this.set(src()?.health().consecutiveFailures ?? 0);
      },
    });
    new Gauge({
      name: `${p}upstream_token_rejected`,
      aggregator: "max",
      help: "1 while Mattermost answers 401 to the token",
      registers,
      collect() {
        this.set(src()?.health().tokenRejected ? 1 : 0);
      },
    });

    // ---- the snapshot ----
    new Gauge({
      name: `${p}users`,
      aggregator: "max",
      help: "Users the providers see (active, with an email), by status",
      labelNames: ["status"],
      registers,
      collect() {
        const counts = src()?.countsByStatus();
        for (const s of PROVIDER_STATUSES) this.set({ status: s }, counts?.[s] ?? 0);
      },
    });
    new Gauge({
      name: `${p}directory_users`,
      aggregator: "max",
      help: "Active users in Mattermost's directory, bots and users without a visible email included",
      registers,
      collect() {
        this.set(src()?.directoryUsers() ?? 0);
      },
    });
    new Gauge({
      name: `${p}users_without_email`,
      aggregator: "max",
      help: "Active users the token sees without an email (left out of /status)",
      registers,
      collect() {
        this.set(src()?.health().usersWithoutEmail ?? 0);
      },
    });
    this.changes = new Counter({
      name: `${p}status_changes_total`,
      aggregator: "max",
      help: "Status changes published to this instance's clients since start (the first load is none)",
      registers,
    });
    new Gauge({
      name: `${p}change_seq`,
      aggregator: "max",
      help: "Sequence number of the last status change; replicas in step show the leader's",
      registers,
      collect() {
        this.set(src()?.lastSeq() ?? 0);
      },
    });
  }

  /** Binds the state read at scrape time. */
  observe(source: MetricsSource): void {
    this.source = source;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric (of the whole instance, in a worker). */
  render(): Promise<string> {
    return this.renderer ? this.renderer() : this.registry.metrics();
  }

  /** A worker's /metrics asks the primary, which sums every process's metrics. */
  renderWith(renderer: () => Promise<string>): void {
    this.renderer = renderer;
  }

  // ---- Telemetry ----

  /** The primary replaced a worker ("exited" or "stalled"). */
  workerReplaced(reason: "exited" | "stalled"): void {
    this.workerReplacements.inc({ reason });
  }

  statusChanges(count: number): void {
    this.changes.inc(count);
  }

  wsBroadcast(sockets: number, messages: number, bytes: number): void {
    if (sockets === 0) return;
    this.wsBroadcasts.inc();
    this.wsMessages.inc(sockets * messages);
    this.wsBytes.inc(sockets * bytes);
  }

  wsConnected(_sockets: number, protocol: string): void {
    this.wsOpened.inc({ protocol });
  }

  wsResync(messages: number, bytes: number): void {
    this.wsResyncMessages.inc(messages);
    this.wsMessages.inc(messages);
    this.wsBytes.inc(bytes);
  }

  wsClosed(reason: string, _sockets: number, protocol: string): void {
    this.wsClosedBy.inc({ protocol, reason });
  }

  unsentClosed(protocol: string, reason: string): void {
    this.unsentClosedBy.inc({ protocol, reason });
  }

  wsRefused(code: string): void {
    this.wsRefusedBy.inc({ code });
  }

  httpRequest(route: string, status: number): void {
    let byStatus = this.httpPending.get(route);
    if (!byStatus) this.httpPending.set(route, (byStatus = new Map()));
    const pending = byStatus.get(status);
    if (pending) pending.n++;
    else byStatus.set(status, { n: 1 });
  }

  private flushHttp(): void {
    for (const [route, byStatus] of this.httpPending) {
      for (const [status, pending] of byStatus) {
        if (pending.n === 0) continue;
        this.http.inc({ route, code: String(status) }, pending.n);
        pending.n = 0;
      }
    }
  }

  upstreamRequest(endpoint: string, status: number | "error", ms: number): void {
    this.upstream.inc({ endpoint, code: String(status) });
    this.upstreamSeconds.observe({ endpoint }, ms / 1000);
  }

  pollCycle(ok: boolean, ms: number, statusRequests: number): void {
    this.pollSeconds.observe({ result: ok ? "ok" : "error" }, ms / 1000);
    if (ok) this.pollRequests.set(statusRequests);
  }

  directoryRefresh(ms: number): void {
    this.directorySeconds.observe(ms / 1000);
  }
}
