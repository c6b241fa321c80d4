import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import type { Gateway } from "../gateway.js";
import { AuthFailureLimiter, AuthFailures } from "../http/auth-limit.js";
import { clientAddressFrom } from "../http/client-address.js";
import type { Logger } from "../log.js";
import { aggregateMetrics } from "../metrics/cluster.js";
import type { Gather, InstanceReport, ToPrimary, ToWorker, WorkerCounts } from "./messages.js";
import { SESSION_KEY_ENV } from "./worker.js";

/** How often the primary looks at what its workers must hear (readiness, settings, a late state). */
const TICK_MS = 100;
/** A worker that does not answer a gather within this is left out of that answer. */
const GATHER_WAIT_MS = 2000;
/** A worker dying again soon after its start is replaced with a growing delay, up to this. */
const MAX_RESPAWN_DELAY_MS = 5000;
/**
 * Changes (batch entries, snapshot users; roughly 100 bytes each once serialized) the primary may
 * hold for one worker that does not read them: past this, the worker is killed and replaced
 * whatever PRESENCE_WORKER_STALL_MS says, so a burst cannot grow the primary's memory without
 * bound (~100 MB per stuck worker at most).
 */
export const MAX_UNREAD_CHANGES = 1_000_000;

interface Slot {
  /** "1".."N": the worker's label in per-process metrics; a replacement takes the same slot. */
  readonly id: string;
  worker: Worker;
  forkedAt: number;
  counts: WorkerCounts | undefined;
  /** The worker holds a full snapshot, so batches may follow. */
  hasState: boolean;
  /** Its follower broker said hello: it takes states and batches from here on. */
  greeted: boolean;
  listening: boolean;
  respawnDelayMs: number;
  /**
   * Messages node:cluster has not yet handed to the kernel for this worker, oldest first: when
   * each was sent, and its weight (changes it carries). The socket buffer between the processes
   * holds a few hundred KB; past that, a worker that stops reading (stuck, stopped, its event
   * loop blocked) leaves every further message queued in the primary's memory.
   */
  unread: { at: number; weight: number }[];
  unreadWeight: number;
  /** Killed for not reading: its exit is counted as "stalled", not "exited". */
  stalled: boolean;
}

interface Gathering {
  results: unknown[];
  waiting: Set<string>;
  finish: () => void;
}

/**
 * The primary of an instance with worker processes (PRESENCE_WORKERS > 1). It alone talks to
 * Mattermost and Redis (its gateway has the "primary" role: poller, directory, events, plugin
 * settings, the lease) and ships the snapshot to N workers that share the port (node:cluster):
 * the full state to a new worker (and after a directory change, a resync or a gap), then each
 * change batch once to every worker, in order. It replaces a worker that dies, sums /metrics over
 * every process, passes hints on to its gateway, and carries SIGHUP and SIGTERM to the workers.
 */
export class ClusterPrimary {
  private readonly slots = new Map<string, Slot>();
  private tick: NodeJS.Timeout | undefined;
  private stopping = false;
  private lastReport = "";
  private lastSettings = "";
  private reportQueued = false;
  private readyLogged = false;
  private nextGather = 1;
  private readonly gatherings = new Map<number, Gathering>();
  private readonly startedAt = Date.now();
  /** One key signs admin sessions in every worker (and its replacements). */
  private readonly sessionKey = randomBytes(32).toString("hex");
  private readonly unsubscribe: () => void;
  private readonly authFailures: AuthFailures;

  constructor(
    private readonly opts: {
      gateway: Gateway;
      log: Logger;
      workers: number;
      /** PRESENCE_AUTH_FAILURE_BURST and _WINDOW_MS: the primary logs `auth_rate_limited`. */
      authFailureBurst: number;
      authFailureWindowMs: number;
      /** PRESENCE_WORKER_STALL_MS: a worker leaving a message unread this long is replaced. */
      workerStallMs: number;
    },
  ) {
    // Every worker's failed credentials, in one order: the `auth_rate_limited` line, once.
    this.authFailures = new AuthFailures(
      new AuthFailureLimiter(opts.authFailureBurst, opts.authFailureWindowMs),
      opts.log,
      clientAddressFrom([]),
    );
    // Workers run this same command (process.argv), as `outlook-presence start` in a worker.
    cluster.setupPrimary({ serialization: "advanced" });
    const snapshot = opts.gateway.snapshot;
    this.unsubscribe = snapshot.onChanges((changes, meta) => {
      if (meta.directoryChanged || meta.resync) return this.sendStateToAll();
      const msg: ToWorker = { t: "batch", epoch: snapshot.epoch, changes };
      for (const slot of this.slots.values()) {
        if (slot.hasState) this.send(slot, msg);
      }
    });
  }

  /** True until every worker of the first start listens (see onExit). */
  private starting = true;

  /** Forks the workers; resolves with the port once every one listens, rejects if one cannot. */
  async start(): Promise<number> {
    this.tick = setInterval(() => this.onTick(), TICK_MS).unref();
    const listening: Promise<number>[] = [];
    for (let i = 1; i <= this.opts.workers; i++) listening.push(this.fork(String(i)));
    try {
      const ports = await Promise.all(listening);
      this.starting = false;
      return ports[0]!;
    } catch (err) {
      await this.stop(1000);
      throw err;
    }
  }

  /** Provider sockets over every worker (for the `stopping` log line). */
  get sockets(): number {
    let n = 0;
    for (const s of this.slots.values()) n += (s.counts?.compat ?? 0) + (s.counts?.v2 ?? 0);
    return n;
  }

  /** SIGHUP or a changed secret file: every worker re-reads its secrets and token too. */
  reload(reason: "SIGHUP" | "file_changed"): void {
    for (const slot of this.slots.values()) this.send(slot, { t: "reload", reason });
  }

  /**
   * Tells every worker to stop (each closes its sockets with 1001 within the grace) and waits for
   * them to exit; a worker still running a little after the grace is killed.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearInterval(this.tick);
    this.unsubscribe();
    const exits = [...this.slots.values()].map((slot) => this.exited(slot.worker));
    for (const slot of this.slots.values()) this.send(slot, { t: "stop" });
    const timer = setTimeout(() => {
      for (const slot of this.slots.values()) {
        if (!slot.worker.isDead()) slot.worker.process.kill("SIGKILL");
      }
    }, graceMs + 2000);
    await Promise.all(exits);
    clearTimeout(timer);
  }

  private exited(worker: Worker): Promise<void> {
    if (worker.isDead()) return Promise.resolve();
    return new Promise((resolve) => worker.once("exit", () => resolve()));
  }

  private fork(id: string): Promise<number> {
    const worker = cluster.fork({ PRESENCE_WORKER_ID: id, [SESSION_KEY_ENV]: this.sessionKey });
    const old = this.slots.get(id);
    const slot: Slot = {
      id,
      worker,
      forkedAt: Date.now(),
      counts: undefined,
      hasState: false,
      greeted: false,
      listening: false,
      respawnDelayMs: old?.respawnDelayMs ?? 100,
      unread: [],
      unreadWeight: 0,
      stalled: false,
    };
    this.slots.set(id, slot);
    // A worker whose channel is closing may still be sent to: nothing to do about it but log.
    worker.on("error", (err) =>
      this.opts.log.debug(
        { event: "worker_ipc_error", worker: id, err: err.message },
        "worker channel error",
      ),
    );
    return new Promise<number>((resolve, reject) => {
      worker.on("message", (msg: ToPrimary) => {
        if (msg.t === "listening" && !slot.listening) {
          slot.listening = true;
          resolve(msg.port);
        }
        this.receive(slot, msg);
      });
      worker.on("exit", (code, signal) => {
        if (!slot.listening) reject(new Error(`worker ${id} exited before listening (code ${code})`));
        this.onExit(slot, code, signal);
      });
    });
  }

  private onExit(slot: Slot, code: number | null, signal: string | null): void {
    for (const [n, gathering] of this.gatherings) {
      if (gathering.waiting.delete(slot.id) && gathering.waiting.size === 0) {
        this.gatherings.delete(n);
        gathering.finish();
      }
    }
    if (this.stopping || this.slots.get(slot.id) !== slot) return;
    slot.counts = undefined;
    this.queueReport();
    // A worker of the first start that cannot listen: start() rejects and the instance ends. A
    // replacement that dies before listening is replaced again, ever more slowly, like any other.
    if (!slot.listening && this.starting) return;
    // A worker that lived a while is replaced at once; one that keeps dying, ever more slowly.
    const lived = Date.now() - slot.forkedAt;
    const delay = lived > 10_000 ? 100 : Math.min(MAX_RESPAWN_DELAY_MS, slot.respawnDelayMs * 2);
    slot.respawnDelayMs = delay;
    this.opts.gateway.metrics.workerReplaced(slot.stalled ? "stalled" : "exited");
    this.opts.log.warn(
      { event: "worker_exited", worker: slot.id, code, signal, respawnMs: delay, stalled: slot.stalled },
      `worker ${slot.id} exited; its providers reconnect to the others; replacing it`,
    );
    setTimeout(() => {
      if (this.stopping) return;
      this.fork(slot.id).catch((err: Error) =>
        this.opts.log.error({ event: "worker_failed", worker: slot.id, err: err.message }, err.message),
      );
    }, delay).unref();
  }

  private receive(slot: Slot, msg: ToPrimary): void {
    const gateway = this.opts.gateway;
    switch (msg.t) {
      case "hello": {
        slot.greeted = true;
        const shared = gateway.secretSource.shared();
        if (shared) this.send(slot, { t: "settings", shared });
        this.send(slot, { t: "instance", report: this.report() });
        if (gateway.snapshot.ready) this.sendState(slot);
        return;
      }
      case "need_state":
        if (gateway.snapshot.ready) this.sendState(slot);
        else slot.hasState = false;
        return;
      case "hint":
        gateway.hint(msg.userId);
        return;
      case "counts":
        // Passed on at once: the other workers' admission reads it (each worker coalesces its own).
        slot.counts = msg.counts;
        this.broadcastReport();
        return;
      case "gather":
        void this.gather(msg.kind).then(
          (data) => this.send(slot, { t: "gathered", id: msg.id, data }),
          (err: Error) => this.send(slot, { t: "gathered", id: msg.id, error: err.message }),
        );
        return;
      case "gather_reply": {
        const gathering = this.gatherings.get(msg.id);
        if (!gathering || !gathering.waiting.delete(slot.id)) return;
        gathering.results.push(msg.data);
        if (gathering.waiting.size === 0) {
          this.gatherings.delete(msg.id);
          gathering.finish();
        }
        return;
      }
      case "auth_failure":
        this.authFailures.fail(msg.remote ?? "");
        for (const other of this.slots.values()) {
          if (other !== slot) this.send(other, { t: "auth_failure", remote: msg.remote });
        }
        return;
      default:
        return;
    }
  }

  /** What every live worker answers for `kind`, put together for the whole instance. */
  private async gather(kind: Gather): Promise<unknown> {
    const id = this.nextGather++;
    const live = [...this.slots.values()].filter((s) => s.greeted && !s.worker.isDead());
    const gathering: Gathering = { results: [], waiting: new Set(live.map((s) => s.id)), finish: () => {} };
    const done = new Promise<void>((resolve) => {
      gathering.finish = resolve;
      setTimeout(resolve, GATHER_WAIT_MS).unref();
    });
    this.gatherings.set(id, gathering);
    for (const slot of live) this.send(slot, { t: "gather_request", id, kind });
    if (live.length === 0) gathering.finish();
    await done;
    this.gatherings.delete(id);
    if (gathering.waiting.size > 0) {
      this.opts.log.warn(
        { event: "gather_partial", kind, missing: [...gathering.waiting] },
        "some workers did not answer in time; this answer leaves them out",
      );
    }
    if (kind === "providers") return gathering.results.flat();
    const own = await this.opts.gateway.metrics.registry.getMetricsAsJSON();
    return aggregateMetrics([own as unknown[], ...(gathering.results as unknown[][])]);
  }

  private onTick(): void {
    const gateway = this.opts.gateway;
    const now = Date.now();
    for (const slot of this.slots.values()) {
      const oldest = slot.unread[0];
      if (oldest && now - oldest.at > this.opts.workerStallMs) this.stalled(slot, now - oldest.at);
    }
    if (gateway.snapshot.ready) {
      for (const slot of this.slots.values()) {
        if (slot.greeted && !slot.hasState) this.sendState(slot);
      }
    }
    const shared = gateway.secretSource.shared();
    const settings = shared ? JSON.stringify(shared) : "";
    if (shared && settings !== this.lastSettings) {
      this.lastSettings = settings;
      for (const slot of this.slots.values()) this.send(slot, { t: "settings", shared });
    }
    this.broadcastReport();
    this.logReadyOnce();
  }

  /** The `ready` line, once: the primary is ready and so is every worker. */
  private logReadyOnce(): void {
    if (this.readyLogged) return;
    const gateway = this.opts.gateway;
    if (gateway.notReady() !== undefined) return;
    const slots = [...this.slots.values()];
    if (slots.length < this.opts.workers || !slots.every((s) => s.counts?.ready)) return;
    this.readyLogged = true;
    const users = gateway.snapshot.visible().length;
    this.opts.log.info(
      {
        event: "ready",
        users,
        pages: Math.ceil(users / gateway.pageSize()),
        leader: gateway.broker.isLeader,
        workers: slots.length,
        startupMs: Date.now() - this.startedAt,
      },
      `gateway ready: serving ${users} users from ${slots.length} workers`,
    );
  }

  private report(): InstanceReport {
    const gateway = this.opts.gateway;
    const connections: Record<string, number> = {};
    let compat = 0;
    for (const slot of this.slots.values()) {
      const c = slot.counts;
      if (!c) continue;
      connections[slot.id] = c.connections;
      compat += c.compat;
    }
    return {
      notReady: gateway.notReady(),
      health: { ...gateway.sync.health },
      leader: gateway.broker.isLeader,
      connections,
      compat,
    };
  }

  /** A worker's counts changed: tell the others soon (the shared connection limit reads them). */
  private queueReport(): void {
    if (this.reportQueued) return;
    this.reportQueued = true;
    setImmediate(() => {
      this.reportQueued = false;
      this.broadcastReport();
    });
  }

  private broadcastReport(): void {
    const report = this.report();
    const key = JSON.stringify(report);
    if (key === this.lastReport) return;
    this.lastReport = key;
    for (const slot of this.slots.values()) this.send(slot, { t: "instance", report });
  }

  private sendState(slot: Slot): void {
    this.send(slot, { t: "state", state: this.opts.gateway.snapshot.exportState() });
    slot.hasState = true;
  }

  private sendStateToAll(): void {
    const state = this.opts.gateway.snapshot.exportState();
    for (const slot of this.slots.values()) {
      if (!slot.greeted) continue; // it asks (hello) once its broker starts
      this.send(slot, { t: "state", state });
      slot.hasState = true;
    }
  }

  /**
   * Sends one message, keeping count of what the worker has not read: the channel completes
   * writes in order, so each callback retires the oldest entry. A worker over the bound is
   * replaced at once; one merely slow is replaced by the tick once a message waited too long.
   */
  private send(slot: Slot, msg: ToWorker): void {
    if (slot.stalled || !slot.worker.isConnected()) return;
    const weight = msg.t === "batch" ? msg.changes.length : msg.t === "state" ? msg.state.users.length : 1;
    slot.unread.push({ at: Date.now(), weight });
    slot.unreadWeight += weight;
    slot.worker.send(msg, () => {
      const done = slot.unread.shift();
      if (done) slot.unreadWeight -= done.weight;
    });
    if (slot.unreadWeight > MAX_UNREAD_CHANGES) this.stalled(slot, Date.now() - slot.unread[0]!.at);
  }

  /** A worker that does not read what it is sent: killed (SIGKILL works on a stopped process too). */
  private stalled(slot: Slot, unreadMs: number): void {
    if (slot.stalled) return;
    slot.stalled = true;
    this.opts.log.error(
      {
        event: "worker_stalled",
        worker: slot.id,
        pid: slot.worker.process.pid,
        unreadMessages: slot.unread.length,
        unreadChanges: slot.unreadWeight,
        unreadMs,
      },
      `worker ${slot.id} left the primary's messages unread for ${unreadMs} ms; killing and replacing it`,
    );
    // What it never read is dropped with it: its replacement starts from the full snapshot.
    slot.unread = [];
    slot.unreadWeight = 0;
    slot.worker.process.kill("SIGKILL");
  }
}
