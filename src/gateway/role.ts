import type { Broker } from "../broker/types.js";
import type { AuthFailureLimiter } from "../http/auth-limit.js";
import type { NotReady } from "../http/health.js";
import type { ProviderSocket } from "../http/provider-sockets.js";
import type { UpstreamHealth } from "../mattermost/sync.js";

/**
 * How this process takes part in the instance. "single": the whole gateway in one process (as
 * with PRESENCE_WORKERS=1). With worker processes (src/cluster), "primary": talks to Mattermost
 * (and Redis) and serves nothing; "worker": serves providers from the primary's replica and
 * never talks to Mattermost.
 */
export type GatewayRole = { kind: "single" } | { kind: "primary" } | { kind: "worker"; link: WorkerLink };

/** What a worker learns from the primary about the instance (see src/cluster). */
export interface WorkerLink {
  /** The follower broker the primary feeds (never leads). */
  readonly broker: Broker;
  /** This worker's name in per-process metrics. */
  readonly id: string;
  /** The instance's readiness as the primary last reported it (undefined: ready). */
  notReady(): NotReady | undefined;
  /** The primary's upstream health (undefined before its first report). */
  health(): Readonly<UpstreamHealth> | undefined;
  /** Whether the instance polls Mattermost (with Redis: holds the lease). */
  leader(): boolean;
  /** Provider connections held by the other workers, as last reported (for the shared limit). */
  otherConnections(): number;
  /** Compat sockets and providers (both protocols) over the whole instance. */
  instanceSockets(): { compat: number; providers: number } | undefined;
  /** /metrics for the whole instance (the primary sums every worker's). */
  renderMetrics(): Promise<string>;
  /** Every worker's provider sockets, for the admin page. */
  instanceProviders(): Promise<ProviderSocket[]>;
  /** The failed-credential limiter, shared with the other workers (one burst per instance). */
  authFailureLimiter(burst: number, windowMs: number): AuthFailureLimiter;
  /** Signs admin sessions, the same in every worker (a session opened on one is valid on all). */
  readonly sessionKey: Buffer;
}
