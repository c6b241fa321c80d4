import type { NotReady } from "../http/health.js";
import type { SharedPluginSettings } from "../broker/types.js";
import type { UpstreamHealth } from "../mattermost/sync.js";
import type { Change, SnapshotState } from "../presence/snapshot.js";

/**
 * What the primary and its workers say to each other over node:cluster's IPC channel (with
 * `serialization: "advanced"`, so values are structured clones: Infinity and undefined survive).
 * The channel is ordered and lossless while both ends live, which is what the follower broker's
 * "batches in sequence order" rests on; a worker that dies loses nothing the next one needs
 * (it starts from the full snapshot).
 */

/** The instance as the primary sees it, sent to every worker whenever it changes. */
export interface InstanceReport {
  /** Why the instance is not ready (the primary's view: token, settings, Redis, snapshot). */
  notReady: NotReady | undefined;
  health: UpstreamHealth;
  /** The primary polls Mattermost (always without Redis; with Redis, while it holds the lease). */
  leader: boolean;
  /** Provider connections (compat + authenticated v2) per worker, as each last reported. */
  connections: Record<string, number>;
  /** Compat sockets over every worker. */
  compat: number;
}

/** Sent by the primary to a worker. */
export type ToWorker =
  /** The whole snapshot: at start, after a directory change or a resync, and when asked. */
  | { t: "state"; state: SnapshotState }
  /** One batch of status changes, numbered by the primary, in order. */
  | { t: "batch"; epoch: string; changes: readonly Change[] }
  | { t: "settings"; shared: SharedPluginSettings }
  | { t: "instance"; report: InstanceReport }
  /** The primary gathers something from every worker (see Gather). */
  | { t: "gather_request"; id: number; kind: Gather }
  /** The answer to a worker's `gather`: the whole instance's, or why not. */
  | { t: "gathered"; id: number; data?: unknown; error?: string }
  /** Another worker refused a credential from this address: count it here too. */
  | { t: "auth_failure"; remote: string | undefined }
  | { t: "reload"; reason: "SIGHUP" | "file_changed" }
  | { t: "stop" };

/** What a worker holds right now, reported when it changes. */
export interface WorkerCounts {
  compat: number;
  v2: number;
  /**
   * Sockets counted against PRESENCE_MAX_CONNECTIONS (compat, and v2 streams past
   * authentication), exactly as the worker's socket pool admits with.
   */
  connections: number;
  ready: boolean;
}

/** Sent by a worker to the primary. */
export type ToPrimary =
  /** The follower broker started: send the state, the settings and the instance report. */
  | { t: "hello" }
  /** A gap or an epoch change: send the full state again. */
  | { t: "need_state" }
  | { t: "hint"; userId: string }
  | { t: "counts"; counts: WorkerCounts }
  | { t: "listening"; port: number }
  | { t: "gather_reply"; id: number; data: unknown }
  /** A request for the whole instance arrived at this worker (GET /metrics, the admin's providers). */
  | { t: "gather"; id: number; kind: Gather }
  /** This worker refused a credential: the others count it against the same address. */
  | { t: "auth_failure"; remote: string | undefined };

/**
 * What the primary gathers from every worker for one request: `metrics` (each process's
 * `getMetricsAsJSON()`, summed into one exposition with the primary's own), `providers` (each
 * worker's open provider sockets, listed together).
 */
export type Gather = "metrics" | "providers";

/** Both ends of the channel, as the follower broker and the worker see it (a fake in tests). */
export interface PrimaryChannel {
  send(msg: ToPrimary): void;
  /** Subscribes to the primary's messages; returns the unsubscribe. */
  onMessage(fn: (msg: ToWorker) => void): () => void;
}
