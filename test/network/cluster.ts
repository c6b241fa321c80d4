import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import type { TestContext } from "node:test";
import { Redis } from "ioredis";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, type LogLine } from "../helpers/gateway-process.js";
import { expectedStatuses, storeDiff, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import {
  GATEWAYS,
  GATEWAY_PORT,
  REDIS_PORT,
  SIM_PORT,
  hostAddress,
  ns,
  setLink,
  type GatewayHost,
  type Net,
} from "./topology.js";
import { viewDiff } from "../helpers/v2-positions.js";
import { V2Watcher, tally, type V2Tally } from "./v2-watch.js";

/** Why a network test cannot run in this process, or undefined inside `npm run test:network`. */
export const notInside = process.env.OPNF_INSIDE
  ? undefined
  : "runs inside the namespaces `npm run test:network` makes";

export const TOKEN = "tok-network-faults";
export const SECRET = "sec-network-faults";

export interface Replica {
  host: GatewayHost;
  gw: GatewayProcess;
  provider: FakeProvider;
  /** An API v2 client of this replica (it resumes with since after any disconnect). */
  v2: V2Watcher;
}

/**
 * The simulator (in this process, on net m), Redis in its namespace and one gateway per
 * gateway namespace, each with a provider connected from this process over net c.
 */
export class NetCluster {
  readonly replicas: Replica[] = [];
  /** An API v2 client that scenarios move between replicas across a fault (resuming with since). */
  roamer: V2Watcher | undefined;
  private redisChild: ChildProcess | undefined;
  private cut: [string, Net][] = [];

  private constructor(
    readonly sim: MattermostSimulator,
    readonly ttlMs: number,
  ) {}

  /**
   * `mattermostPort`: where the gateways reach Mattermost on ctl (a proxy in front of the simulator).
   * `hostEnv`: settings of one replica only, over `env`.
   */
  static async start(opts: {
    ttlMs: number;
    pollMs: number;
    users: number;
    env?: Record<string, string>;
    hostEnv?: Partial<Record<GatewayHost, Record<string, string>>>;
    mattermostPort?: number;
  }) {
    const sim = new MattermostSimulator({ token: TOKEN, users: opts.users, seed: 41 });
    const c = new NetCluster(sim, opts.ttlMs);
    try {
      await sim.start(SIM_PORT, hostAddress("ctl", "m"));
      await c.startRedis();
      for (const host of GATEWAYS) {
        const gw = await GatewayProcess.start(
          {
            MATTERMOST_URL: `http://${hostAddress("ctl", "m")}:${opts.mattermostPort ?? SIM_PORT}`,
            MATTERMOST_TOKEN: TOKEN,
            PRESENCE_SECRET: SECRET,
            HOST: "0.0.0.0",
            PORT: String(GATEWAY_PORT),
            PRESENCE_POLL_INTERVAL_MS: String(opts.pollMs),
            PRESENCE_DIRECTORY_REFRESH_MS: "10000",
            PRESENCE_BACKOFF_MAX_MS: "1000",
            REDIS_URL: `redis://${hostAddress("redis", "r")}:${REDIS_PORT}`,
            PRESENCE_LEADER_TTL_MS: String(opts.ttlMs),
            ...opts.env,
            ...opts.hostEnv?.[host],
          },
          [],
          { netns: ns(host), urlHost: hostAddress(host, "c") },
        );
        c.replicas.push({
          host,
          gw,
          provider: new FakeProvider(gw.url, SECRET),
          v2: new V2Watcher(gw.url, SECRET, `v2@${host}`),
        });
      }
      for (const r of c.replicas) {
        await waitUntil(() => c.ready(r), 20_000, `${r.host} ready`);
        await r.provider.loadStatus();
        await r.provider.connect();
        await r.v2.start();
      }
      c.roamer = new V2Watcher(c.replicas[0]!.gw.url, SECRET, "v2 roamer");
      await c.roamer.start();
      return c;
    } catch (err) {
      await c.stop();
      throw err;
    }
  }

  /** One sample of a metric from a replica's /metrics (summed over its label sets). */
  async metric(r: Replica, name: string, labels = ""): Promise<number> {
    const text = await (await fetch(`${r.gw.url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
      if (m?.[1] === name && (m[2] ?? "").includes(labels)) sum += Number(m[3]);
    }
    return sum;
  }

  async ready(r: Replica): Promise<boolean> {
    const res = await fetch(`${r.gw.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(
      () => undefined,
    );
    return res?.status === 200;
  }

  /** The replica whose last role change made it the leader (undefined: none, or several). */
  leaders(): Replica[] {
    return this.replicas.filter((r) => lastRole(r.gw) === "leader_acquired");
  }

  async oneLeader(timeoutMs = 15_000): Promise<Replica> {
    await waitUntil(() => this.leaders().length === 1, timeoutMs, "exactly one leader");
    return this.leaders()[0]!;
  }

  cutLink(host: string, net: Net): void {
    setLink(host, net, false);
    this.cut.push([host, net]);
  }

  healAll(): void {
    for (const [host, net] of this.cut.splice(0)) setLink(host, net, true);
  }

  /** Gives `count` users from `offset` a new status in Mattermost. */
  flip(count: number, offset: number): void {
    const users = this.sim
      .listUsers()
      .filter((u) => u.delete_at === 0 && u.email && !u.is_bot)
      .slice(offset, offset + count);
    for (const u of users) {
      const status: SimStatus = this.sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
      this.sim.setStatus(u.id, status);
    }
  }

  /** Resolves once these replicas' providers hold every user's current status. */
  async converged(replicas: Replica[], timeoutMs: number, what: string): Promise<void> {
    for (const r of replicas) {
      await waitUntil(
        () => storeDiff(r.provider, expectedStatuses(this.sim)).length === 0,
        timeoutMs,
        `${what}: ${r.host}'s provider converged`,
      );
    }
  }

  get watchers(): V2Watcher[] {
    return [...this.replicas.map((r) => r.v2), ...(this.roamer ? [this.roamer] : [])];
  }

  /** Moves the roaming API v2 client to `r`: it reconnects there with since=<its position>. */
  async roam(r: Replica): Promise<void> {
    await this.roamer!.moveTo(r.gw.url);
  }

  /**
   * Waits until every API v2 client holds every user's current status, then asserts per change:
   * no (epoch, seq) names two different changes across replicas, and each client's seqs within
   * an epoch strictly increase with no gap unless a snapshot or another epoch (a resync) came
   * between. Reports the tally as a diagnostic and returns it.
   */
  async assertV2(t: TestContext, what: string, timeoutMs = 30_000): Promise<V2Tally> {
    const diff = () => {
      const want = expectedStatuses(this.sim);
      return this.watchers.flatMap((w) => viewDiff(w.view(), want).map((d) => `${w.name}: ${d}`));
    };
    await waitUntil(
      () => this.watchers.every((w) => w.live) && diff().length === 0,
      timeoutMs,
      `${what}: every API v2 client converged`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; still different: ${JSON.stringify(diff().slice(0, 5))}`);
    });
    const result = tally(this.watchers, expectedStatuses(this.sim));
    t.diagnostic(
      `API v2 (${what}): ${this.watchers.length} clients, ${result.messages} changes messages, ` +
        `${result.changes} changes delivered, ${result.lost} lost, ${result.duplicated} duplicated, ` +
        `${result.resumes} resumes (${result.exact} exact, the rest a snapshot), ` +
        `${result.conflicts.length} positions naming two changes, ` +
        `${result.violations.length} order violations`,
    );
    assert.deepEqual(result.conflicts, [], "no (epoch, seq) names two different changes");
    assert.deepEqual(result.violations, [], "seqs in order, no gap without a resync");
    assert.equal(result.lost, 0);
    return result;
  }

  /** Every change batch in the stream, flattened to its changes' sequence numbers. */
  async streamSeqs(prefix = "outlook-presence"): Promise<number[]> {
    const redis = new Redis(REDIS_PORT, hostAddress("redis", "r"), { maxRetriesPerRequest: 1 });
    try {
      const entries = await redis.xrange(`${prefix}:changes`, "-", "+");
      return entries.flatMap(([, fields]) =>
        (JSON.parse(fields[1]!) as { changes: [number][] }).changes.map((ch) => ch[0]),
      );
    } finally {
      redis.disconnect();
    }
  }

  async stop(): Promise<void> {
    try {
      this.healAll();
    } catch {
      // the runner removes the namespaces anyway
    }
    for (const r of this.replicas) r.provider.ws?.terminate();
    for (const w of this.watchers) await w.stop().catch(() => undefined);
    for (const r of this.replicas) await r.gw.stop(3000);
    const child = this.redisChild;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
    await this.sim.stop();
  }

  private async startRedis(): Promise<void> {
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        ns("redis"),
        "redis-server",
        "--bind",
        hostAddress("redis", "r"),
        "--port",
        String(REDIS_PORT),
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    this.redisChild = child;
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await waitUntil(() => out.includes("Ready to accept connections"), 5000, `redis-server: ${out}`);
  }
}

export function lastRole(gw: GatewayProcess): string | undefined {
  return gw.logs.filter((l: LogLine) => l.event === "leader_acquired" || l.event === "leader_lost").at(-1)
    ?.event;
}

/** [start, end) of each leadership of one replica, from its own log lines. */
export function leaderships(gw: GatewayProcess, until: number): [number, number][] {
  const out: [number, number][] = [];
  let since: number | undefined;
  for (const l of gw.logs) {
    const t = Date.parse(String(l.time));
    if (l.event === "leader_acquired") since = t;
    if (l.event === "leader_lost" && since !== undefined) {
      // Polling stops when the lease ends (validUntil), which may be before the line is written.
      out.push([since, Math.min(t, typeof l.validUntil === "number" ? l.validUntil : t)]);
      since = undefined;
    }
  }
  if (since !== undefined) out.push([since, until]);
  return out;
}

/** No two replicas' leaderships overlap. */
export function overlappingLeaders(replicas: Replica[]): string[] {
  const end = Date.now();
  const spans = replicas.map((r) => ({ host: r.host, spans: leaderships(r.gw, end) }));
  const found: string[] = [];
  for (let i = 0; i < spans.length; i++) {
    for (let j = i + 1; j < spans.length; j++) {
      for (const [s1, e1] of spans[i]!.spans) {
        for (const [s2, e2] of spans[j]!.spans) {
          if (!(e1 <= s2 || e2 <= s1))
            found.push(`${spans[i]!.host} ${s1}-${e1} and ${spans[j]!.host} ${s2}-${e2}`);
        }
      }
    }
  }
  return found;
}
