import type { PrimaryChannel, ToWorker } from "../cluster/messages.js";
import type { Logger } from "../log.js";
import type { SharedPluginSettings } from "./types.js";
import type { PresenceSnapshot } from "../presence/snapshot.js";
import type { Broker } from "./types.js";

/**
 * The broker of a worker process (src/cluster): it follows the primary of its own instance over
 * the cluster's IPC channel and never leads, so a worker never talks to Mattermost. The
 * guarantees of Broker hold as for a Redis follower: the full snapshot at start, each change
 * batch whole and in the primary's sequence order, and on a gap (or a new epoch) nothing applied
 * until the full snapshot is loaded again, its difference emitted as a resync. Hints go to the
 * primary; the plugin's settings come from it.
 */
export class PrimaryFollowerBroker implements Broker {
  readonly kind = "primary";
  readonly isLeader = false;
  private snapshot: PresenceSnapshot | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Batches are dropped while a full state is on its way (it includes them). */
  private awaitingState = true;
  private readonly settingsListeners: ((s: SharedPluginSettings) => void)[] = [];

  constructor(
    private readonly channel: PrimaryChannel,
    private readonly log: Logger,
  ) {}

  async start(snapshot: PresenceSnapshot): Promise<void> {
    this.snapshot = snapshot;
    this.unsubscribe = this.channel.onMessage((msg) => this.receive(msg));
    this.channel.send({ t: "hello" });
  }

  private receive(msg: ToWorker): void {
    const snapshot = this.snapshot;
    if (!snapshot) return;
    switch (msg.t) {
      case "state": {
        const changes = snapshot.replaceState(msg.state);
        this.awaitingState = false;
        this.log.debug(
          { event: "replica_reloaded", seq: msg.state.seq, differences: changes.length },
          "loaded the primary's snapshot",
        );
        return;
      }
      case "batch": {
        if (this.awaitingState) return;
        // Changes this snapshot already holds (from a state sent after them) are skipped.
        const fresh = msg.changes.filter((c) => c.seq > snapshot.lastSeq);
        if (msg.epoch === snapshot.epoch && snapshot.applyReplicated(fresh)) return;
        this.awaitingState = true;
        this.channel.send({ t: "need_state" });
        return;
      }
      case "settings":
        for (const fn of this.settingsListeners) fn(msg.shared);
        return;
      default:
        return;
    }
  }

  problem(): undefined {
    return undefined; // the primary reports the instance's problems (see WorkerLink.notReady)
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  forwardHint(userId: string): boolean {
    this.channel.send({ t: "hint", userId });
    return true;
  }

  onHint(): void {} // never the leader: hints are the primary's

  sharePluginSettings(): void {} // never reads them: the primary shares its own

  onPluginSettings(fn: (settings: SharedPluginSettings) => void): void {
    this.settingsListeners.push(fn);
  }
}
