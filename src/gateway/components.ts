/**
 * One start/stop shape for every part of the gateway that runs (socket pools, the broker and
 * the leadership it brings, the listening server, the readiness watch), kept in one ordered list
 * so that a failed start, a stop and a forced teardown all walk the same list backwards.
 */
export interface Component {
  readonly name: string;
  start(): void | Promise<void>;
  /** Begins stopping; the promise settles once it has (the gateway bounds the wait by its grace). */
  stop(): void | Promise<void>;
  /** What is still open once the grace is over (sockets that did not close in time). */
  terminate?(): void;
}

export class Components {
  private readonly list: Component[] = [];
  private started = 0;

  constructor(list: readonly Component[]) {
    this.list = [...list];
  }

  /** Starts each in order; when one throws, stops those already started (newest first) and rethrows. */
  async start(): Promise<void> {
    for (const c of this.list) {
      try {
        await c.start();
      } catch (err) {
        await Promise.all(this.stopStarted());
        this.terminate();
        throw err;
      }
      this.started++;
    }
  }

  /**
   * Stops every started component, newest first, and waits at most `graceMs` for all of them;
   * then terminates whatever is left.
   */
  async stop(graceMs: number): Promise<void> {
    const stopped = Promise.all(this.stopStarted());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs).unref()));
    await Promise.race([stopped, timeout]);
    clearTimeout(timer);
    this.terminate();
  }

  private stopStarted(): Promise<void>[] {
    const out: Promise<void>[] = [];
    for (let i = this.started - 1; i >= 0; i--) out.push(Promise.resolve(this.list[i]!.stop()));
    return out;
  }

  private terminate(): void {
    for (let i = this.started - 1; i >= 0; i--) this.list[i]!.terminate?.();
    this.started = 0;
  }
}
