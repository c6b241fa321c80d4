import { randomUUID } from "node:crypto";
import { WebSocket } from "ws";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { sleep } from "../lib/procs.js";
import { SECRET, TOKEN, WS_PATH, gatewayEnv, startGatewayProcess, type Server } from "../lib/servers.js";
import { fmtMs, fmtRatio, ratio, summarize } from "../lib/stats.js";
import type { Context } from "./context.js";

const USERS = 2000;
const POLL_MS = 1000;
const TTL_MS = 10_000; // the default PRESENCE_LEADER_TTL_MS
const WINDOW_MS = 10_000;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A provider-like socket that records when each email's message arrived. */
class Watcher {
  readonly arrivals = new Map<string, number[]>();
  all: number[] = [];
  private constructor(readonly ws: WebSocket) {}
  static async open(url: string): Promise<Watcher> {
    const ws = new WebSocket(`${url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`);
    const w = new Watcher(ws);
    ws.on("message", (data) => {
      const now = performance.now();
      const { email } = JSON.parse(data.toString()) as { email: string };
      const list = w.arrivals.get(email) ?? [];
      list.push(now);
      w.arrivals.set(email, list);
      w.all.push(now);
    });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    return w;
  }
}

/**
 * Several replicas on the machine's Redis, one simulated Mattermost in this process, gateways as
 * real processes: status requests per poll cycle with 1 and with 3 replicas; the extra latency a
 * follower adds over the leader (same change, receipt on the leader's client vs a follower's);
 * and the failover gap (SIGKILL the leader while changes keep coming: the longest silence a client
 * on a survivor sees).
 */
export async function replicasScenario(ctx: Context): Promise<string> {
  const sim = new MattermostSimulator({ token: TOKEN, users: USERS, seed: 5 });
  await sim.start(0, "127.0.0.1");
  await ctx.use(Promise.resolve({ stop: () => sim.stop() }));
  const prefix = `op-bench:${randomUUID()}`;
  const env = gatewayEnv(sim.url, {
    REDIS_URL,
    PRESENCE_REDIS_PREFIX: prefix,
    PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
    PRESENCE_LEADER_TTL_MS: String(TTL_MS),
    PRESENCE_KEEPALIVE_MS: "600000",
    PRESENCE_RESYNC_BYTES_PER_SECOND: "0", // watchers count live changes only
  });
  const active = sim.listUsers().filter((u) => u.delete_at === 0 && u.email && !u.is_bot);
  let flips = 0;
  const flip = (): { email: string; at: number } => {
    const u = active[flips++ % active.length]!;
    const next: SimStatus = sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
    sim.setStatus(u.id, next);
    return { email: u.email, at: performance.now() };
  };
  const requestsPerCycle = async (): Promise<number> => {
    sim.resetStats();
    await sleep(WINDOW_MS);
    return sim.stats.statusIdsRequests / (WINDOW_MS / POLL_MS);
  };

  const first = await ctx.use(startGatewayProcess(env));
  const one = await requestsPerCycle();
  const others: Server[] = [];
  for (let i = 0; i < 2; i++) others.push(await ctx.use(startGatewayProcess(env)));
  const three = await requestsPerCycle();
  ctx.detail("replicas.upstream", { perCycleOneReplica: one, perCycleThreeReplicas: three, users: USERS });

  // The first replica started leads (it found the lease free).
  const watchers = await Promise.all([first, ...others].map((g) => Watcher.open(g.url)));
  await sleep(500); // replays on connect
  for (const w of watchers) w.arrivals.clear();
  const deltas: number[] = [];
  const changed: string[] = [];
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 5; i++) changed.push(flip().email);
    await sleep(POLL_MS);
  }
  await sleep(POLL_MS * 2);
  for (const email of changed) {
    const atLeader = watchers[0]!.arrivals.get(email)?.[0];
    for (const w of watchers.slice(1)) {
      const atFollower = w.arrivals.get(email)?.[0];
      if (atLeader !== undefined && atFollower !== undefined) deltas.push(atFollower - atLeader);
    }
  }
  const extra = summarize(deltas);
  ctx.detail("replicas.followerExtraMs", extra);

  // Failover: a change every 100 ms; kill the leader; the longest gap between messages on a survivor.
  const survivor = watchers[1]!;
  survivor.all = [];
  let running = true;
  const stream = (async () => {
    while (running) {
      flip();
      await sleep(100);
    }
  })();
  await sleep(2000);
  const killedAt = performance.now();
  // A crash, not SIGTERM (which hands the lease over at once): the survivors wait out the TTL.
  process.kill(first.pid, "SIGKILL");
  const deadline = performance.now() + TTL_MS * 3;
  while (performance.now() < deadline && !survivor.all.some((t) => t > killedAt + 200)) await sleep(100);
  await sleep(2000);
  running = false;
  await stream;
  const after = survivor.all.filter((t) => t > killedAt - 3000);
  let gap = 0;
  for (let i = 1; i < after.length; i++) gap = Math.max(gap, after[i]! - after[i - 1]!);
  for (const w of watchers) w.ws.terminate();
  ctx.detail("replicas.failover", { gapMs: gap, ttlMs: TTL_MS, pollMs: POLL_MS });
  return (
    `replicas (${USERS} users, poll ${POLL_MS} ms, Redis): status requests/cycle 3 replicas ${three.toFixed(1)} vs 1 replica ${one.toFixed(1)} (${fmtRatio(ratio(three, one))}); ` +
    `follower extra latency p50 ${fmtMs(extra.p50)} p99 ${fmtMs(extra.p99)} (${extra.n} receipts); ` +
    `leader SIGKILL → longest silence on a survivor ${fmtMs(gap)} (TTL ${TTL_MS} ms)`
  );
}
