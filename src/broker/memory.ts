import type { Broker } from "./types.js";

/** One instance, all state in memory: always the leader, nothing to share. */
export class MemoryBroker implements Broker {
  readonly kind = "memory";
  isLeader = false;

  async start(_snapshot: unknown, onLeadership: (leader: boolean) => void): Promise<void> {
    this.isLeader = true;
    onLeadership(true);
  }

  async stop(): Promise<void> {
    this.isLeader = false;
  }

  problem(): undefined {
    return undefined; // nothing to be cut off from
  }

  forwardHint(): boolean {
    return false; // the leader is this process: hints never need forwarding
  }

  onHint(): void {}

  sharePluginSettings(): void {} // nobody to share with

  onPluginSettings(): void {}
}
