import cluster from "node:cluster";
import { PrimaryFollowerBroker } from "../broker/primary-follower.js";
import type { Config } from "../config/load.js";
import { Gateway, type WorkerLink } from "../gateway.js";
import { AuthFailureLimiter } from "../http/auth-limit.js";
import type { NotReady } from "../http/health.js";
import type { ProviderSocket } from "../http/provider-sockets.js";
import type { Logger } from "../log.js";
import type { UpstreamHealth } from "../mattermost/sync.js";
import { NO_TELEMETRY, type Telemetry } from "../telemetry.js";
import type {
  Gather,
  InstanceReport,
  PrimaryChannel,
  ToPrimary,
  ToWorker,
  WorkerCounts,
} from "./messages.js";

/**
 * How often a worker looks at its socket counts and reports them when they changed (a cheap
 * comparison). Opens and closes of compat sockets also report at once (see soon()); a v2 stream
 * passing authentication has no event of its own, so this bounds its lag.
 */
const REPORT_MS = 10;
/** A request for the whole instance (/metrics, the admin's providers) waits at most this long. */
const GATHER_TIMEOUT_MS = 5000;

/** Where a worker finds the key the primary made for signing admin sessions. */
export const SESSION_KEY_ENV = "OUTLOOK_PRESENCE_SESSION_KEY";

/** This worker's end of the IPC channel to the primary (process.send / process.on("message")). */
export function processChannel(): PrimaryChannel {
  return {
    send(msg: ToPrimary) {
      if (process.connected) process.send?.(msg);
    },
    onMessage(fn: (msg: ToWorker) => void) {
      const listener = (msg: unknown) => fn(msg as ToWorker);
      process.on("message", listener);
      return () => process.off("message", listener);
    },
  };
}

/**
 * What a worker knows of its instance: the primary's reports (readiness, upstream health, every
 * worker's connections) and its answers to /metrics. Also reports this worker's own counts.
 */
export class InstanceView implements WorkerLink {
  readonly broker: PrimaryFollowerBroker;
  private report: InstanceReport | undefined;
  private nextGather = 1;
  private readonly waiters = new Map<number, (msg: { data?: unknown; error?: string }) => void>();
  private gateway: Gateway | undefined;
  private limiter: SharedAuthFailureLimiter | undefined;
  private counts = "";
  private queued = false;
  private report_: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  /** From the primary (its environment at fork), so that an admin session is valid on every worker. */
  readonly sessionKey = Buffer.from(process.env[SESSION_KEY_ENV] ?? "", "hex");

  constructor(
    readonly id: string,
    private readonly channel: PrimaryChannel,
    log: Logger,
  ) {
    this.broker = new PrimaryFollowerBroker(channel, log);
    this.unsubscribe = channel.onMessage((msg) => this.receive(msg));
  }

  /** Starts reporting `gateway`'s counts and answering for its metrics. */
  attach(gateway: Gateway): void {
    this.gateway = gateway;
    const report = () => {
      this.queued = false;
      const counts: WorkerCounts = {
        compat: gateway.hub.size,
        v2: gateway.v2.stream.size,
        connections: gateway.sockets.connections,
        ready: gateway.notReady() === undefined,
      };
      const key = JSON.stringify(counts);
      if (key === this.counts) return;
      this.counts = key;
      this.channel.send({ t: "counts", counts });
    };
    this.report_ = report;
    this.timer = setInterval(report, REPORT_MS).unref();
    report();
  }

  /**
   * A socket opened or closed (or a request was answered): report the counts at the end of this
   * turn of the event loop, not at the next tick, so that the other workers' view of the
   * connection limit lags by one IPC hop only.
   */
  soon(): void {
    if (this.queued || !this.report_) return;
    this.queued = true;
    setImmediate(this.report_);
  }

  /** What a worker's core tells its InstanceView (see soon()). */
  telemetry(): Telemetry {
    const soon = () => this.soon();
    return { ...NO_TELEMETRY, wsConnected: soon, wsClosed: soon, httpRequest: soon };
  }

  detach(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private receive(msg: ToWorker): void {
    switch (msg.t) {
      case "instance":
        this.report = msg.report;
        return;
      case "gather_request":
        void this.answer(msg.kind).then((data) => this.channel.send({ t: "gather_reply", id: msg.id, data }));
        return;
      case "gathered":
        this.waiters.get(msg.id)?.(msg);
        return;
      case "auth_failure":
        this.limiter?.absorb(msg.remote);
        return;
      default:
        return;
    }
  }

  notReady(): NotReady | undefined {
    // Until the primary's first report, nothing is known: say what a fresh process says.
    return this.report ? this.report.notReady : { reason: "snapshot_pending" };
  }

  health(): Readonly<UpstreamHealth> | undefined {
    return this.report?.health;
  }

  leader(): boolean {
    return this.report?.leader ?? false;
  }

  otherConnections(): number {
    let n = 0;
    for (const [worker, count] of Object.entries(this.report?.connections ?? {})) {
      if (worker !== this.id) n += count;
    }
    return n;
  }

  instanceSockets(): { compat: number; providers: number } | undefined {
    const r = this.report;
    if (!r) return undefined;
    return { compat: r.compat, providers: Object.values(r.connections).reduce((a, b) => a + b, 0) };
  }

  /** This worker's part of a request for the whole instance. */
  private async answer(kind: Gather): Promise<unknown> {
    const gateway = this.gateway;
    if (!gateway) return [];
    if (kind === "metrics") return gateway.metrics.registry.getMetricsAsJSON();
    return gateway.providers();
  }

  /** Asks the primary for the whole instance's `kind`. */
  private gather(kind: Gather): Promise<unknown> {
    const id = this.nextGather++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`the primary did not answer within ${GATHER_TIMEOUT_MS} ms`));
      }, GATHER_TIMEOUT_MS);
      this.waiters.set(id, (msg) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        if (msg.error === undefined) resolve(msg.data);
        else reject(new Error(msg.error));
      });
      this.channel.send({ t: "gather", id, kind });
    });
  }

  async renderMetrics(): Promise<string> {
    return (await this.gather("metrics")) as string;
  }

  async instanceProviders(): Promise<ProviderSocket[]> {
    return (await this.gather("providers")) as ProviderSocket[];
  }

  authFailureLimiter(burst: number, windowMs: number): AuthFailureLimiter {
    this.limiter = new SharedAuthFailureLimiter(burst, windowMs, (remote) =>
      this.channel.send({ t: "auth_failure", remote }),
    );
    return this.limiter;
  }
}

/**
 * The failed-credential limiter of one worker, told the failures of the others: each failure is
 * passed on (through the primary) and counted by every worker against the same address, so the
 * burst holds for the instance. Approximation: a failure reaches the other workers one IPC hop
 * later, so guesses sent in parallel to several workers at once may each pass before the others
 * hear of them: at most one burst per worker in the worst case, about one burst in practice.
 */
export class SharedAuthFailureLimiter extends AuthFailureLimiter {
  constructor(
    burst: number,
    windowMs: number,
    private readonly share: (remote: string | undefined) => void,
  ) {
    super(burst, windowMs);
  }

  override fail(remote: string | undefined): number | undefined {
    this.share(remote);
    return super.fail(remote);
  }

  /**
   * Never logs `auth_rate_limited` itself: the primary counts every worker's failures in the one
   * order it receives them and logs it, once per address and window, for the instance.
   */
  override justLimited(): boolean {
    return false;
  }

  /** Another worker's failure: counted, not answered, not passed on. */
  absorb(remote: string | undefined): void {
    super.fail(remote);
  }
}

/**
 * A worker process: the gateway's serving half (sockets, /status, API v2, /admin) on the port the
 * primary shares, fed by the primary. It ends when told to stop, on SIGTERM/SIGINT, or when the
 * IPC channel closes (the primary is gone: the instance ends with it).
 */
export async function runWorker(
  config: Config,
  log: Logger,
  onSecrets: (secrets: readonly string[]) => void,
  reload: (gateway: Gateway, reason: "SIGHUP" | "file_changed") => void,
): Promise<number> {
  const id = process.env.PRESENCE_WORKER_ID ?? String(cluster.worker?.id ?? 0);
  const channel = processChannel();
  const view = new InstanceView(id, channel, log);
  const gateway = new Gateway(config, log, view.telemetry(), onSecrets, { kind: "worker", link: view });

  // Stop requests are heard from the first moment, also while the gateway starts: a replacement
  // told to stop mid-start stops as soon as it has started, rather than waiting for SIGKILL.
  let started = false;
  let stopRequested: string | undefined;
  let stopNow: ((why: string) => void) | undefined;
  const requestStop = (why: string): void => {
    if (stopNow) stopNow(why);
    else stopRequested ??= why;
  };
  channel.onMessage((msg) => {
    if (msg.t === "stop") requestStop("primary");
    else if (msg.t === "reload" && started) reload(gateway, msg.reason);
  });
  // The primary is gone (killed, crashed): nothing feeds this worker any more.
  process.once("disconnect", () => requestStop("primary_gone"));
  // A terminal's ^C reaches every process of the group; the primary stops the workers itself.
  process.on("SIGINT", () => undefined);
  process.once("SIGTERM", () => requestStop("SIGTERM"));
  process.on("SIGHUP", () => undefined); // the primary forwards a reload

  try {
    await gateway.start();
  } catch (err) {
    log.fatal(
      { event: "listen_failed", err: (err as Error).message },
      `cannot listen on ${config.host}:${config.port}`,
    );
    log.flush();
    // The IPC channel and its listeners would keep this process alive: let it exit, so that the
    // primary sees the exit (and ends the instance at start, or replaces the worker later).
    view.detach();
    if (process.connected) process.disconnect();
    return 1;
  }
  started = true;
  view.attach(gateway);
  channel.send({ t: "listening", port: (gateway.server.address() as { port: number }).port });

  return new Promise<number>((resolve) => {
    let stopping = false;
    stopNow = (why: string, graceMs = config.shutdownGraceMs) => {
      if (stopping) return;
      stopping = true;
      log.info({ event: "worker_stopping", why, sockets: gateway.hub.size }, "worker stopping");
      view.detach();
      void gateway.stop(graceMs).then(() => {
        log.flush();
        // The IPC channel would keep this process alive: closing it lets it exit.
        if (process.connected) process.disconnect();
        resolve(0);
      });
    };
    if (stopRequested !== undefined) stopNow(stopRequested);
  });
}
