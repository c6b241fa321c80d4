import { NOT_READY_MESSAGES, type NotReady } from "../http/health.js";

/** What readiness is made of; each source is read when asked, none announces itself. */
export interface ReadinessSources {
  /** Mattermost answered 401 to the token. */
  tokenRejected(): boolean;
  /** Set when the secret comes from Mattermost and has not been read yet (with the last error). */
  settingsPending(): { lastError: string | undefined } | undefined;
  /** The broker's reason this replica may be stale (see Broker.problem). */
  brokerProblem(): string | undefined;
  snapshotReady(): boolean;
  isLeader(): boolean;
  /** Mattermost's last error, for the detail of `snapshot_pending`. */
  lastError(): string | undefined;
  /**
   * Set in a worker process: the instance's own readiness as the primary last reported it (the
   * primary is the one talking to Mattermost and Redis). Undefined answer: the primary is ready.
   */
  instance?(): NotReady | undefined;
}

/** Why the gateway is not ready, in the order an operator must fix things. */
export class Readiness {
  private watch: NodeJS.Timeout | undefined;

  constructor(
    private readonly sources: ReadinessSources,
    /** Removes the token and secrets from Mattermost's error text (for the admin page). */
    private readonly redact: (text: string) => string,
  ) {}

  /** Why the gateway is not ready (undefined when it is), with Mattermost's error text if any. */
  notReady(): NotReady | undefined {
    const s = this.sources;
    if (s.instance) {
      const primary = s.instance();
      if (primary) return primary;
      const pending = s.settingsPending();
      if (pending) return { reason: "settings_pending" };
      return s.snapshotReady() ? undefined : { reason: "snapshot_pending" };
    }
    if (s.tokenRejected()) return { reason: "token_rejected" };
    const pending = s.settingsPending();
    if (pending) return { reason: "settings_pending", detail: pending.lastError };
    const cutOff = s.brokerProblem();
    if (cutOff) return { reason: "redis_unreachable", detail: cutOff };
    if (!s.snapshotReady()) {
      if (!s.isLeader()) return { reason: "waiting_for_leader" };
      return { reason: "snapshot_pending", detail: s.lastError() };
    }
    return undefined;
  }

  /** What any client may be told: one fixed sentence per reason, never Mattermost's text. */
  reason(): string | undefined {
    const notReady = this.notReady();
    return notReady && NOT_READY_MESSAGES[notReady.reason];
  }

  /** For the admin page: the reason and Mattermost's last error, secrets and tokens redacted. */
  detail(): string | undefined {
    const notReady = this.notReady();
    if (!notReady) return undefined;
    const message = NOT_READY_MESSAGES[notReady.reason];
    return notReady.detail ? `${message}: ${this.redact(notReady.detail)}` : message;
  }

  /**
   * Calls `onReady` once, the first time the gateway is ready. Readiness has several sources
   * (the first snapshot, a follower's copy from Redis, the secret read from Mattermost), none of
   * which announces itself, so it is checked on a short timer until then.
   */
  watchReady(onReady: () => void): void {
    const check = () => {
      if (this.notReady() !== undefined) return;
      this.stopWatching();
      onReady();
    };
    this.watch = setInterval(check, 100).unref();
    check();
  }

  stopWatching(): void {
    clearInterval(this.watch);
    this.watch = undefined;
  }
}
