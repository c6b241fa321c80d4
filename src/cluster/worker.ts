import cluster from "node:cluster";
import type { Registry } from "prom-client";
import { PrimaryFollowerBroker } from "../broker/primary-follower.js";
import type { Config } from "../config/load.js";
import { Gateway, type WorkerLink } from "../gateway.js";
import type { NotReady } from "../http/health.js";
import type { Logger } from "../log.js";
import type { UpstreamHealth } from "../mattermost/sync.js";
import type { InstanceReport, PrimaryChannel, ToPrimary, ToWorker, WorkerCounts } from "./messages.js";

/** How often a worker looks at its socket counts and reports them when they changed. */
const REPORT_MS = 50;
/** A /metrics request waits at most this long for the primary's sum. */
const METRICS_TIMEOUT_MS = 5000;

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
  private nextMetricsId = 1;
  private readonly metricsWaiters = new Map<number, (msg: { text?: string; error?: string }) => void>();
  private registry: Registry | undefined;
  private counts = "";
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;

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
    this.registry = gateway.metrics.registry;
    const report = () => {
      const counts: WorkerCounts = {
        compat: gateway.hub.size,
        v2: gateway.v2.stream.size,
        v2Authenticated: gateway.v2.stream.authenticated,
        ready: gateway.notReady() === undefined,
      };
      const key = JSON.stringify(counts);
      if (key === this.counts) return;
      this.counts = key;
      this.channel.send({ t: "counts", counts });
    };
    this.timer = setInterval(report, REPORT_MS).unref();
    report();
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
      case "metrics_request":
        void this.registry
          ?.getMetricsAsJSON()
          .then((json) => this.channel.send({ t: "metrics_json", id: msg.id, json: json as unknown[] }));
        return;
      case "metrics":
        this.metricsWaiters.get(msg.id)?.(msg);
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

  renderMetrics(): Promise<string> {
    const id = this.nextMetricsId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.metricsWaiters.delete(id);
        reject(new Error(`the primary did not answer within ${METRICS_TIMEOUT_MS} ms`));
      }, METRICS_TIMEOUT_MS);
      this.metricsWaiters.set(id, (msg) => {
        clearTimeout(timer);
        this.metricsWaiters.delete(id);
        if (msg.text !== undefined) resolve(msg.text);
        else reject(new Error(msg.error ?? "no metrics"));
      });
      this.channel.send({ t: "render_metrics", id });
    });
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
  const gateway = new Gateway(config, log, undefined, onSecrets, { kind: "worker", link: view });
  try {
    await gateway.start();
  } catch (err) {
    log.fatal(
      { event: "listen_failed", err: (err as Error).message },
      `cannot listen on ${config.host}:${config.port}`,
    );
    log.flush();
    return 1;
  }
  view.attach(gateway);
  channel.send({ t: "listening", port: (gateway.server.address() as { port: number }).port });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string, graceMs = config.shutdownGraceMs) => {
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
    channel.onMessage((msg) => {
      if (msg.t === "stop") stop("primary");
      else if (msg.t === "reload") reload(gateway, msg.reason);
    });
    // The primary is gone (killed, crashed): nothing feeds this worker any more.
    process.once("disconnect", () => stop("primary_gone"));
    // A terminal's ^C reaches every process of the group; the primary stops the workers itself.
    process.on("SIGINT", () => undefined);
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGHUP", () => undefined); // the primary forwards a reload
  });
}
