import type { Host } from "../lib/procs.js";
import { sleep, within } from "../lib/procs.js";
import {
  MAX_SOCKETS_PER_PROCESS,
  SECRET,
  WS_PATH,
  gatewayEnv,
  startBareWs,
  startClients,
  startGatewayHost,
  startSim,
  type Clients,
} from "../lib/servers.js";
import { fmtBytes, fmtInt, fmtMs, fmtRatio, ratio, summarize, type Summary } from "../lib/stats.js";
import type { MemSample } from "../lib/mem-sample.js";
import type { Context } from "./context.js";

const SINGLE_REPS = 20;
const BURST_REPS = 3;
const SIM_USERS = 2000;

/**
 * Gateway settings for socket scenarios: fast polling so changes arrive soon; no keepalive frames
 * and no resync meanwhile (the clients never read /status, so each would otherwise be sent the
 * whole directory in the background while the live path is measured).
 */
export function socketGatewayEnv(simUrl: string, sockets: number): Record<string, string> {
  return gatewayEnv(simUrl, {
    PRESENCE_POLL_INTERVAL_MS: "250",
    PRESENCE_KEEPALIVE_MS: "600000",
    PRESENCE_RESYNC_BYTES_PER_SECOND: "0",
    PRESENCE_MAX_CONNECTIONS: String(sockets + 1000),
  });
}

export function clientProcesses(sockets: number): number {
  return Math.max(2, Math.ceil(sockets / MAX_SOCKETS_PER_PROCESS));
}

export function tooMany(sockets: number): string | undefined {
  return sockets > MAX_SOCKETS_PER_PROCESS
    ? `${fmtInt(sockets)} sockets: not measured (one process may hold at most 20,000 open files here, ` +
        "a hard limit this container cannot raise, so no single server process can hold them)"
    : undefined;
}

export interface Delivery {
  /** Per socket, ms from the server having the change to the socket having all `expect` frames. */
  latencies: number[];
  /** expect × sockets / (last receipt − t0), messages per second. */
  throughput: number;
  incomplete: number;
}

/** Arms every client for `expect` frames, triggers, and gathers per-socket receipt times against t0. */
export async function deliver(
  clients: Clients,
  expect: number,
  trigger: () => Promise<number>,
  timeoutMs: number,
): Promise<Delivery> {
  await Promise.all(clients.hosts.map((h) => h.ask({ cmd: "arm", expect }, "armed", 10_000)));
  const done = clients.hosts.map((h) => h.next<{ last: Float64Array }>("done", timeoutMs));
  for (const d of done) d.catch(() => undefined); // handled below, one by one
  const t0 = await trigger();
  const latencies: number[] = [];
  let incomplete = 0;
  let lastAt = t0;
  for (let i = 0; i < clients.hosts.length; i++) {
    let last: Float64Array;
    try {
      last = (await done[i]!).last;
    } catch {
      const partial = await clients.hosts[i]!.ask<{ last: Float64Array }>(
        { cmd: "collect" },
        "partial",
        10_000,
      );
      last = partial.last;
    }
    for (const t of last) {
      if (t === 0) incomplete++;
      else {
        latencies.push(t - t0);
        if (t > lastAt) lastAt = t;
      }
    }
  }
  return { latencies, throughput: (latencies.length * expect * 1000) / (lastAt - t0), incomplete };
}

/** Waits for change batches from the gateway host until `n` changes were seen; returns the first's time. */
export async function seen(gateway: Host, n: number, timeoutMs: number): Promise<number> {
  let total = 0;
  let first = NaN;
  while (total < n) {
    const m = await gateway.next<{ t: number; n: number }>("seen", timeoutMs);
    if (Number.isNaN(first)) first = m.t;
    total += m.n;
  }
  return first;
}

interface Run {
  single: Summary;
  burst: Summary;
  burstThroughput: number;
  incomplete: number;
  connected: number;
}

async function measure(
  ctx: Context,
  clients: Clients,
  triggerSingle: () => Promise<number>,
  triggerBurst: (() => Promise<number>) | undefined,
): Promise<Run> {
  const single: number[] = [];
  let incomplete = 0;
  for (let i = 0; i < SINGLE_REPS; i++) {
    const d = await deliver(clients, 1, triggerSingle, 15_000);
    single.push(...d.latencies);
    incomplete += d.incomplete;
    await sleep(300);
  }
  const burst: number[] = [];
  let best = 0;
  for (let i = 0; triggerBurst && i < BURST_REPS; i++) {
    const d = await deliver(clients, ctx.burst, triggerBurst, 60_000);
    burst.push(...d.latencies);
    incomplete += d.incomplete;
    best = Math.max(best, d.throughput);
    ctx.log(`burst ${i}: ${fmtInt(d.throughput)} msg/s, p99 ${fmtMs(summarize(d.latencies).p99)}`);
    await sleep(1000);
  }
  return {
    single: summarize(single),
    burst: summarize(burst),
    burstThroughput: best,
    incomplete,
    connected: clients.connected,
  };
}

const dist = (s: Summary): string => `${fmtMs(s.p50)}/${fmtMs(s.p99)}/${fmtMs(s.max)}`;

async function gatewayRun(ctx: Context, sockets: number): Promise<Run> {
  const sim = await ctx.use(startSim(SIM_USERS));
  const gw = await ctx.use(startGatewayHost(socketGatewayEnv(sim.url, sockets)));
  const wsUrl = `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`;
  const clients = await ctx.use(startClients(wsUrl, sockets, clientProcesses(sockets)));
  ctx.log(`gateway: ${clients.connected} connected, ${clients.failed} failed`);
  await sleep(2000);
  const change = (count: number) => async (): Promise<number> => {
    const t = seen(gw, count, 15_000);
    await sim.ask({ cmd: "change", count }, "changed", 10_000);
    return t;
  };
  const run = await measure(ctx, clients, change(1), change(ctx.burst));
  await clients.stop();
  await gw.stop();
  await sim.stop();
  return run;
}

async function bareRun(ctx: Context, sockets: number, mode: "send" | "raw"): Promise<Run> {
  const bare = await ctx.use(startBareWs());
  const clients = await ctx.use(
    startClients(`${bare.url.replace("http", "ws")}/`, sockets, clientProcesses(sockets)),
  );
  ctx.log(`bare ws (${mode}): ${clients.connected} connected, ${clients.failed} failed`);
  await sleep(2000);
  const broadcast = (count: number) => async (): Promise<number> =>
    (await bare.ask<{ t: number }>({ cmd: "broadcast", count, mode }, "sent", 60_000)).t;
  // ws.send per message per socket is ~20× slower than one write per socket: a 1,000-message burst
  // to 10,000 sockets would take minutes, so that mode is measured for single changes only.
  const run = await measure(ctx, clients, broadcast(1), mode === "raw" ? broadcast(ctx.burst) : undefined);
  await clients.stop();
  await bare.stop();
  return run;
}

/**
 * WebSocket fan-out: the gateway (in-process `Gateway` in a child, changes made in the simulator
 * and timed from the moment the snapshot emits them) vs a bare `ws` server broadcasting pre-built
 * data, to the same number of sockets held by separate load-generator processes.
 */
export async function fanoutScenario(ctx: Context): Promise<string> {
  const parts: string[] = [];
  for (const sockets of ctx.sockets) {
    const skip = tooMany(sockets);
    if (skip) {
      parts.push(skip);
      continue;
    }
    const g = await within(gatewayRun(ctx, sockets), 600_000, "gateway fan-out");
    const send = await within(bareRun(ctx, sockets, "send"), 600_000, "bare ws.send fan-out");
    const raw = await within(bareRun(ctx, sockets, "raw"), 600_000, "bare raw fan-out");
    ctx.detail(`fanout-${sockets}`, { gateway: g, bareSend: send, bareRaw: raw });
    parts.push(
      `${fmtInt(g.connected)} sockets: one change p50/p99/max ${dist(g.single)} ` +
        `(bare ws.send ${dist(send.single)}, raw ${dist(raw.single)}; p99 ${fmtRatio(ratio(g.single.p99, send.single.p99))} ws.send's); ` +
        `burst of ${fmtInt(ctx.burst)}: all received p50/p99/max ${dist(g.burst)}, ` +
        `${fmtInt(g.burstThroughput)} msg/s = ${fmtRatio(ratio(g.burstThroughput, raw.burstThroughput))} ` +
        `bare ws ceiling (one pre-built buffer per socket: ${fmtInt(raw.burstThroughput)} msg/s, ${dist(raw.burst)})` +
        (g.incomplete > 0 ? `; ${g.incomplete} socket deliveries incomplete` : ""),
    );
  }
  return (
    `fanout: ${parts.join(" · ")} | gateway = in-process Gateway in a child (hook on the snapshot's ` +
    `change event); clients = raw-TCP frame counters in ${clientProcesses(ctx.sockets[0] ?? 1)}+ child processes ` +
    `from 127.0.0.x source addresses; all on the same 2 cores, so receipt times include the load generator's CPU`
  );
}

/**
 * Both hosts start with V8's new space at its full 32 MiB (the size the gateway reaches while it
 * loads its directory anyway), so that its growth is not counted as per-socket memory of the bare
 * server alone; mem's `warm` then touches its pages.
 */
const FULL_NEW_SPACE = ["--min-semi-space-size=16"];

/** glibc malloc settings of the bench's own environment, passed to both hosts of `memory` alike. */
function mallocEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "BENCH_SMAPS_DIR"])
    if (process.env[k]) env[k] = process.env[k]!;
  return env;
}

/** Rounds per socket count (BENCH_MEMORY_ROUNDS): RSS growth moves by a third between single runs here. */
const MEMORY_ROUNDS = Number(process.env.BENCH_MEMORY_ROUNDS) || 3;

/**
 * The gateway set-ups measured against bare ws. The first is like for like: idle sockets that
 * are owed nothing (the provider read /status first; or resync off, as here), polling at the
 * default interval. The others show what the compat protocol's own work and the fan-out benches'
 * fast polling add while the sockets connect: both are transient work whose freed memory the
 * process keeps (V8 pages and malloc'd memory), not per-socket state.
 */
const MEMORY_GATEWAYS: { name: string; env: Record<string, string> }[] = [
  { name: "gateway (default 3 s poll)", env: { PRESENCE_POLL_INTERVAL_MS: "3000" } },
  { name: "gateway, 250 ms poll (as fanout)", env: { PRESENCE_POLL_INTERVAL_MS: "250" } },
  {
    name: "gateway, resync owed (default 8 MiB/s, 20 s keepalive; 3 s poll)",
    env: {
      PRESENCE_POLL_INTERVAL_MS: "3000",
      PRESENCE_RESYNC_BYTES_PER_SECOND: "8388608",
      PRESENCE_KEEPALIVE_MS: "20000",
    },
  },
];

/** Extra gateway settings for experiments, `K=V,K=V` (BENCH_MEMORY_GATEWAY_ENV); none by default. */
function experimentEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of (process.env.BENCH_MEMORY_GATEWAY_ENV ?? "").split(",")) {
    const at = kv.indexOf("=");
    if (at > 0) env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  return env;
}

interface MemGrowth {
  sockets: number;
  /** Per socket, bytes: growth from 0 sockets. */
  rss: number;
  heap: number;
  /** V8 heap pages committed (all spaces). */
  heapCommitted: number;
  newSpace: number;
  /** glibc's main malloc arena (`[heap]`): native allocations of the main thread. */
  mallocMain: number;
  /** Anonymous RSS outside the main arena and the V8 heap's committed size (can be < 0: committed, not resident). */
  other: number;
  external: number;
  arrayBuffers: number;
  before: MemSample;
  after: MemSample;
}

/**
 * Memory per idle socket: RSS and heap after full GCs, gateway vs bare ws, in MEMORY_ROUNDS
 * rounds of fresh processes (gateway first, then bare first, alternating), with the medians.
 */
export async function memoryScenario(ctx: Context): Promise<string> {
  const parts: string[] = [];
  const perSocket = async (host: Host, wsUrl: string, sockets: number): Promise<MemGrowth> => {
    const before = await host.ask<MemSample>({ cmd: "mem", warm: true }, "mem", 30_000);
    const clients = await ctx.use(startClients(wsUrl, sockets, clientProcesses(sockets)));
    await sleep(3000);
    const after = await host.ask<MemSample & { sockets: number }>({ cmd: "mem" }, "mem", 30_000);
    await clients.stop();
    const n = after.sockets;
    const grow = (k: (m: MemSample) => number): number => (k(after) - k(before)) / n;
    return {
      sockets: n,
      rss: grow((m) => m.rss),
      heap: grow((m) => m.heapUsed),
      heapCommitted: grow((m) => m.heapCommitted),
      newSpace: grow((m) => m.spaces.new_space ?? 0),
      mallocMain: grow((m) => m.mallocMain),
      other: grow((m) => m.rssAnon - m.mallocMain - m.heapCommitted),
      external: grow((m) => m.external),
      arrayBuffers: grow((m) => m.arrayBuffers),
      before,
      after,
    };
  };
  const gateway = async (sockets: number, variant: Record<string, string>): Promise<MemGrowth> => {
    const sim = await ctx.use(startSim(SIM_USERS));
    const gw = await ctx.use(
      startGatewayHost(
        { ...socketGatewayEnv(sim.url, sockets), ...variant, ...mallocEnv(), ...experimentEnv() },
        FULL_NEW_SPACE,
      ),
    );
    const g = await perSocket(gw, `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`, sockets);
    await gw.stop();
    await sim.stop();
    return g;
  };
  const bare = async (sockets: number): Promise<MemGrowth> => {
    const host = await ctx.use(startBareWs(mallocEnv(), FULL_NEW_SPACE));
    const b = await perSocket(host, `${host.url.replace("http", "ws")}/`, sockets);
    await host.stop();
    return b;
  };
  const med = (xs: number[]): number => summarize(xs).p50;
  const m = (xs: MemGrowth[], k: keyof MemGrowth): number => med(xs.map((x) => x[k] as number));
  for (const sockets of ctx.sockets) {
    const skip = tooMany(sockets);
    if (skip) {
      parts.push(skip);
      continue;
    }
    // Per round: bare ws and each gateway variant, in an order that rotates from round to round.
    const runs: MemGrowth[][] = [[], ...MEMORY_GATEWAYS.map(() => [])];
    for (let round = 0; round < MEMORY_ROUNDS; round++) {
      for (let j = 0; j < runs.length; j++) {
        const k = (j + round) % runs.length;
        runs[k]!.push(k === 0 ? await bare(sockets) : await gateway(sockets, MEMORY_GATEWAYS[k - 1]!.env));
      }
    }
    const bs = runs[0]!;
    ctx.detail(`memory-${sockets}`, {
      bare: bs,
      ...Object.fromEntries(MEMORY_GATEWAYS.map((v, i) => [v.name, runs[i + 1]])),
    });
    const pair = (gs: MemGrowth[], k: keyof MemGrowth): string =>
      `${fmtBytes(m(gs, k))} (bare ${fmtBytes(m(bs, k))})`;
    const lines = MEMORY_GATEWAYS.map((v, i) => {
      const gs = runs[i + 1]!;
      const rssRatios = gs.map((g, r) => fmtRatio(ratio(g.rss, bs[r]!.rss)));
      return (
        `${v.name}: RSS ${fmtBytes(m(gs, "rss"))}/socket = ${fmtRatio(ratio(m(gs, "rss"), m(bs, "rss")))} bare ws ` +
        `(per round ${rssRatios.join(", ")}), heap ${fmtBytes(m(gs, "heap"))}/socket = ` +
        `${fmtRatio(ratio(m(gs, "heap"), m(bs, "heap")))} bare ws; RSS split: V8 heap committed ` +
        `${pair(gs, "heapCommitted")}, main malloc arena ${pair(gs, "mallocMain")}, other anonymous ${pair(gs, "other")}`
      );
    });
    parts.push(
      `${fmtInt(bs[0]!.sockets)} idle sockets, medians of ${MEMORY_ROUNDS} rounds; bare ws RSS ` +
        `${fmtBytes(m(bs, "rss"))}/socket, heap ${fmtBytes(m(bs, "heap"))}/socket; ${lines.join("; ")}`,
    );
  }
  return (
    `memory: ${parts.join(" · ")} | growth from 0 sockets after full GCs; gateway = in-process Gateway ` +
    `in a child (2,000 users loaded), bare ws = node:http + WebSocketServer; both with a full new space`
  );
}
