import type { PresenceSnapshot } from "../presence/snapshot.js";

/**
 * The compat API's settings as the leader read them from the old plugin's config in Mattermost
 * (src/mattermost/plugin-settings.ts fills it). The broker owns the shape because it carries it
 * between replicas: a follower reads it from here, never from Mattermost.
 */
export interface SharedPluginSettings {
  current: { secret: string; pageSize: number | undefined };
  /** The secret before a regeneration, still accepted until `until` (ms since epoch). */
  previous?: { secret: string; until: number };
}

/**
 * Shares one presence snapshot between the replicas of a deployment.
 *
 * Guarantees every implementation gives:
 * - Leadership: at most one replica is the leader at a time, and only the leader calls
 *   Mattermost (polls, directory, hints). A deposed leader's writes are refused (fenced), so it
 *   cannot publish after another replica has taken over.
 * - Ordering: a follower applies the leader's change batches whole, in sequence-number order,
 *   with the leader's sequence numbers.
 * - Delivery: a follower that misses batches (a gap in sequence numbers, a lost or restarted
 *   backend) reloads the leader's full snapshot and emits the difference to its own clients
 *   (`resync`), so every replica converges on the leader's state and no client keeps a stale
 *   status. Batches are not stored for replicas that are down; they resync when they return.
 * - Takeover: a new leader first catches up with everything the old one published, then polls
 *   from that state, so providers see only real changes, not a burst of the whole company.
 * - Positions: an API v2 position (epoch, seq) names one change on every replica. A new leader
 *   keeps the epoch only after a clean handover (the old one stopped with every change it
 *   numbered published); a replica's resync difference is sent in a fork epoch of its own.
 */
export interface Broker {
  readonly kind: "memory" | "redis" | "primary";
  /** True while this replica is the one that talks to Mattermost. */
  readonly isLeader: boolean;
  /**
   * Connects and starts following or leading `snapshot`; `onLeadership` is told each change of
   * role (the memory broker leads at once). Rejects with BrokerError when the backend cannot be
   * reached, which is a startup error.
   */
  start(snapshot: PresenceSnapshot, onLeadership: (leader: boolean) => void): Promise<void>;
  /**
   * Why this replica may be serving stale statuses (its backend has not answered within the
   * lease TTL), or undefined. Readiness reports it so a load balancer moves new connections.
   */
  problem(): string | undefined;
  /** Gives up leadership (so another replica takes over at once) and disconnects. */
  stop(): Promise<void>;
  /** A follower passes a /status/publish hint to the leader; false when it could not. */
  forwardHint(userId: string): boolean;
  /** Hints forwarded by followers arrive here, on the leader. */
  onHint(fn: (userId: string) => void): void;
  /**
   * The leader shares the old plugin's settings it read from Mattermost (the secret, so the
   * backend must be as private as Mattermost's own database); followers receive them through
   * `onPluginSettings` soon after, and at start.
   */
  sharePluginSettings(settings: SharedPluginSettings): void;
  onPluginSettings(fn: (settings: SharedPluginSettings) => void): void;
}

export class BrokerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BrokerError";
  }
}
