import type { Host } from "../lib/procs.js";
import { cpuMsOf, machineBusyMs, sleep, within } from "../lib/procs.js";
import {
  MAX_SOCKETS_PER_PROCESS,
  SECRET,
  WS_PATH,
  cpuOfAll,
  gatewayEnv,
  startClients,
  startGatewayHost,
  startSim,
  type Clients,
} from "../lib/servers.js";
import { fmtBytes, fmtInt, fmtMs, fmtRatio, ratio, summarize } from "../lib/stats.js";
import type { Context } from "./context.js";
import { tooMany } from "./fanout.js";

/** What the runner passes to this scenario besides the common context. */
export interface ResyncOptions {
  /** Sockets reconnecting at once in the storm (--resync-sockets, default 2,000). */
  resyncSockets: number;
}

const SIM_USERS = 2000;
/** The quiet window the storm's event-loop delay is compared with. */
const IDLE_MS = 5000;
/** How often the bench asks the gateway whether the resync is done (the end time is the gateway's own). */
const POLL_MS = 200;
/** The pacer's tick (src/http/ws-resync.ts) and its per-socket chunk. */
const TICK_MS = 100;
const CHUNK_BYTES = 64 * 1024;

interface ResyncState {
  t: number;
  resyncing: number;
  sockets: number;
  users: number;
  budget: number;
  connects: number;
  messages: number;
  bytes: number;
  firstConnectAt: number;
  firstAt: number;
  lastAt: number;
  ticks: [number, number][];
}

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  count: number;
  resolutionMs: number;
  gcMaxMs: number;
  gcTotalMs: number;
  gcCount: number;
}

interface Count {
  sockets: number;
  closed: number;
  min: number;
  max: number;
  total: number;
  firstOpenAt: number;
  lastTextAt: number;
}

const state = (gw: Host, opts: { reset?: boolean; ticks?: boolean } = {}): Promise<ResyncState> =>
  gw.ask<ResyncState>({ cmd: "resync", ...opts }, "resync", 10_000);
/** The gateway's event-loop delay since the previous call with this name (each name its own monitor). */
const loopDelay = (gw: Host, name: "whole" | "phase"): Promise<LoopDelay> =>
  gw.ask<LoopDelay>({ cmd: "loopDelay", name }, "loopDelay", 10_000);

/** Text frames per socket over every client process: min/max over sockets, totals, first open, last frame. */
async function counts(clients: Clients): Promise<Count> {
  const per = await Promise.all(clients.hosts.map((h) => h.ask<Count>({ cmd: "count" }, "count", 10_000)));
  const open = per.map((c) => c.firstOpenAt).filter((t) => t > 0);
  return {
    sockets: per.reduce((a, c) => a + c.sockets, 0),
    closed: per.reduce((a, c) => a + c.closed, 0),
    min: Math.min(...per.map((c) => c.min)),
    max: Math.max(...per.map((c) => c.max)),
    total: per.reduce((a, c) => a + c.total, 0),
    firstOpenAt: open.length > 0 ? Math.min(...open) : 0,
    lastTextAt: Math.max(...per.map((c) => c.lastTextAt)),
  };
}

/** Polls the clients (bounded by `timeoutMs`) until they hold `frames` text frames in all. */
async function received(clients: Clients, frames: number, timeoutMs: number): Promise<Count> {
  const deadline = performance.now() + timeoutMs;
  let c = await counts(clients);
  for (let i = 0; i < Math.ceil(timeoutMs / 50) && c.total < frames && performance.now() < deadline; i++) {
    await sleep(50);
    c = await counts(clients);
  }
  return c;
}

/**
 * The highest rate over any `n` consecutive tick intervals (~1 s for n = 10): the bytes of ticks
 * i−n+1..i over the time from tick i−n to tick i. (Counting the ticks inside a fixed 1 s window
 * instead would see 11 whenever timers fire a little early, a window artifact of +10 %.)
 */
function peakRate(ticks: readonly [number, number][], n: number): number {
  let peak = 0;
  let sum = 0;
  for (let i = 1; i < ticks.length; i++) {
    sum += ticks[i]![1];
    if (i > n) sum -= ticks[i - n]![1];
    if (i >= n) peak = Math.max(peak, (sum * 1000) / (ticks[i]![0] - ticks[i - n]![0]));
  }
  return peak;
}

/** One scrape of a counter from the gateway's /metrics (Prometheus text). */
async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

const dist = (d: LoopDelay): string => `${fmtMs(d.p50)}/${fmtMs(d.p99)}/${fmtMs(d.max)}`;
const rate = (bytesPerSecond: number): string => `${(bytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s`;

/**
 * Resync after a gateway restart: S raw clients connect at once without having read `/status`
 * (every one is a reconnect), and the gateway sends each every user's status, paced over all
 * sockets by PRESENCE_RESYNC_BYTES_PER_SECOND (default). Measured: the time from the first connect
 * until `hub.resyncing` is 0 again (the gateway's last resync write), the achieved rate against
 * the configured budget (the same-run baseline), the frames each socket received, the gateway's
 * event-loop delay during the storm against an idle window just before, its CPU; and, on the same
 * gateway while idle, one socket alone (a laptop waking up).
 */
export async function resyncScenario(ctx: Context & ResyncOptions): Promise<string> {
  const sockets = ctx.resyncSockets;
  const skip = tooMany(sockets);
  if (skip) return `resync: ${skip}`;
  const sim = await ctx.use(startSim(SIM_USERS));
  const gw = await ctx.use(
    startGatewayHost(
      gatewayEnv(sim.url, { PRESENCE_KEEPALIVE_MS: "600000", PRESENCE_REPLAY_WINDOW_MS: "0" }),
    ),
  );
  const wsUrl = `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`;
  await loopDelay(gw, "whole"); // starts the monitors
  await loopDelay(gw, "phase");
  await sleep(2000);
  const users = (await state(gw, { reset: true })).users;

  // One socket alone on the idle gateway.
  const one = await ctx.use(startClients(wsUrl, 1, 1));
  const oneCount = await received(one, users, 30_000);
  const oneGw = await state(gw, { reset: true, ticks: true });
  await one.stop();
  if (oneCount.total !== users) throw new Error(`one socket: ${oneCount.total} of ${users} frames in 30 s`);
  const passBytes = oneGw.bytes;
  const budget = oneGw.budget;
  const single = {
    ms: oneCount.lastTextAt - oneCount.firstOpenAt,
    gatewayMs: oneGw.lastAt - oneGw.firstConnectAt,
    frames: oneCount.total,
    bytes: passBytes,
    ticks: oneGw.ticks.length,
    chunksNeeded: Math.ceil(passBytes / CHUNK_BYTES),
  };
  ctx.detail("resync.single", single);
  await sleep(1000);

  // Idle, just before the storm.
  await loopDelay(gw, "whole");
  await sleep(IDLE_MS);
  await state(gw, { reset: true });
  const idle = await loopDelay(gw, "whole");

  // The storm.
  const expectedMs = (sockets * passBytes * 1000) / budget;
  const timeoutMs = Math.round(2 * expectedMs + 60_000);
  ctx.log(
    `${fmtInt(sockets)} sockets × ${fmtBytes(passBytes)} at ${rate(budget)}: ~${(expectedMs / 1000).toFixed(0)} s expected, bound ${(timeoutMs / 1000).toFixed(0)} s`,
  );
  const gwCpu0 = cpuMsOf(gw.pid);
  const machine0 = machineBusyMs();
  await loopDelay(gw, "phase");
  const t0 = performance.now();
  const clients = await ctx.use(
    startClients(wsUrl, sockets, Math.max(2, Math.ceil(sockets / MAX_SOCKETS_PER_PROCESS))),
  );
  const connectMs = performance.now() - t0;
  const connecting = await loopDelay(gw, "phase");
  ctx.log(`${clients.connected} connected, ${clients.failed} failed in ${fmtMs(connectMs)}`);
  const done = await within(
    (async () => {
      let s = await state(gw);
      for (let i = 0; i < Math.ceil(timeoutMs / POLL_MS); i++) {
        if (s.resyncing === 0 && s.connects >= clients.connected) return s;
        await sleep(POLL_MS);
        s = await state(gw);
        if (i % Math.round(5000 / POLL_MS) === 0) {
          ctx.log(`${fmtInt(s.resyncing)} sockets resyncing, ${fmtBytes(s.bytes)} sent`);
        }
      }
      throw new Error(`${s.resyncing} sockets still resyncing`);
    })(),
    timeoutMs + 10_000,
    "resync storm",
  );
  const wallMs = performance.now() - t0;
  const gwCpuMs = cpuMsOf(gw.pid) - gwCpu0;
  const machineMs = machineBusyMs() - machine0;
  const storm = await loopDelay(gw, "whole");
  const paced = await loopDelay(gw, "phase");
  const end = await state(gw, { ticks: true });
  const count = await received(clients, clients.connected * users, 15_000);
  const clientsCpuMs = cpuOfAll(clients.pids); // since they started, just before t0
  const metricMessages = await counter(gw.url, "outlook_presence_ws_resync_messages_sent_total");
  await clients.stop();

  const durationMs = done.lastAt - done.firstConnectAt;
  const achieved = (end.bytes * 1000) / durationMs;
  const peak = peakRate(end.ticks, 10);
  const maxTick = Math.max(0, ...end.ticks.map(([, b]) => b));
  const intervals = end.ticks.slice(1).map(([t], i) => t - end.ticks[i]![0]);
  const result = {
    sockets: clients.connected,
    failed: clients.failed,
    users,
    passBytes,
    budget,
    durationMs,
    firstResyncWriteMs: done.firstAt - done.firstConnectAt,
    lastReceivedMs: count.lastTextAt - done.firstConnectAt,
    bytes: end.bytes,
    messages: end.messages,
    metricMessages,
    metricMessagesThisStorm: metricMessages - oneGw.messages,
    achievedBytesPerSecond: achieved,
    ratioToBudget: achieved / budget,
    peak10TicksBytesPerSecond: peak,
    peak10TicksRatio: peak / budget,
    tickIntervalMs: summarize(intervals),
    maxTickBytes: maxTick,
    maxTickRatio: maxTick / ((budget * TICK_MS) / 1000),
    ticks: end.ticks.length,
    framesPerSocket: { min: count.min, max: count.max, total: count.total, closed: count.closed },
    loopDelayIdle: idle,
    loopDelayStorm: storm,
    loopDelayConnecting: connecting,
    loopDelayPaced: paced,
    connectMs,
    gatewayCpuMs: gwCpuMs,
    gatewayCpuShare: gwCpuMs / wallMs,
    gatewayUsPerMessage: (gwCpuMs * 1000) / end.messages,
    clientsCpuMs,
    othersCpuShare: Math.max(0, machineMs - gwCpuMs - clientsCpuMs) / wallMs,
    benchWallMs: wallMs,
  };
  ctx.detail("resync.storm", result);
  const exact = count.min === users && count.max === users;
  return (
    `resync: ${fmtInt(clients.connected)} sockets reconnecting at once (${fmtInt(users)} users, ` +
    `${fmtBytes(passBytes)} per socket, ${fmtBytes(end.bytes)} in all): resyncing back to 0 ` +
    `${(durationMs / 1000).toFixed(1)} s after the first connect, ${rate(achieved)} = ` +
    `${fmtRatio(achieved / budget)} the ${rate(budget)} budget (busiest 10 ticks ${fmtRatio(peak / budget)}); ` +
    `frames per socket min/max ${fmtInt(count.min)}/${fmtInt(count.max)} ` +
    `(${exact ? "exactly" : "NOT"} ${fmtInt(users)} each${count.closed > 0 ? `, ${count.closed} closed` : ""}); ` +
    `gateway event-loop delay p50/p99/max ${dist(storm)} vs idle ${dist(idle)} ` +
    `(p99 ${fmtRatio(ratio(storm.p99, idle.p99))}, max ${fmtRatio(ratio(storm.max, idle.max))}; ` +
    `while connecting (${fmtMs(connectMs)}) ${dist(connecting)}, after ${dist(paced)}; ` +
    `sampled every ${idle.resolutionMs} ms); gateway CPU ${(gwCpuMs / 1000).toFixed(1)} s = ` +
    `${Math.round((gwCpuMs / wallMs) * 100)}% of a core (${((gwCpuMs * 1000) / end.messages).toFixed(1)} µs/message); ` +
    `one socket alone on the idle gateway: all ${fmtInt(users)} in ${fmtMs(single.ms)} ` +
    `(${fmtBytes(passBytes)} = ${single.chunksNeeded} chunks of 64 KiB, one per ${TICK_MS} ms tick) | ` +
    `gateway = in-process Gateway in a child (default budget, keepalive 600 s, replay window 0, no churn); ` +
    `clients = raw-TCP frame counters in ${clients.hosts.length} child processes that never read /status, ` +
    `on the same 2 cores (${Math.round((clientsCpuMs / wallMs) * 100)}% of a core)`
  );
}
