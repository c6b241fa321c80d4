import type { Host } from "../lib/procs.js";
import { cpuMsOf, machineBusyMs, sleep, within } from "../lib/procs.js";
import {
  MAX_SOCKETS_PER_PROCESS,
  SECRET,
  WS_PATH,
  cpuOfAll,
  gatewayEnv,
  startBareWs,
  startClients,
  startGatewayHost,
  startSim,
  type Clients,
} from "../lib/servers.js";
import { fmtInt, fmtMs, fmtRatio, ratio, summarize } from "../lib/stats.js";
import type { PingWindow } from "../lib/ping-window.js";
import type { Context } from "./context.js";
import { tooMany } from "./fanout.js";

/** Ping rounds measured per server (the first also sets every socket's `alive` for the second's check). */
const ROUNDS = 5;
/** Between rounds: the previous round's pongs and GC settle. */
const GAP_MS = 1000;
/** The idle reference window, and how long one round may take to be answered by every socket. */
const IDLE_MS = 500;
const ROUND_TIMEOUT_MS = 10_000;
/** Few users: nothing here depends on the directory. */
const SIM_USERS = 200;

interface Count {
  sockets: number;
  closed: number;
}

interface Run {
  connected: number;
  failed: number;
  idle: PingWindow;
  rounds: PingWindow[];
  /** Every round: every open socket answered within ROUND_TIMEOUT_MS. */
  allAnswered: boolean;
  /** After the last round: the server's sockets, its dead-peer closes, and the clients' view. */
  socketsAfter: number;
  deadPeers: number;
  serverClosed: number;
  clientsOpen: number;
  clientsClosed: number;
  /** Over the rounds (gaps included): shares of one core used by the server, the clients, everything else. */
  cpu: { server: number; clients: number; others: number };
}

const ping = (host: Host, round: boolean): Promise<PingWindow> =>
  host.ask<PingWindow>(
    { cmd: "ping", round, windowMs: IDLE_MS, timeoutMs: ROUND_TIMEOUT_MS },
    "ping",
    ROUND_TIMEOUT_MS + 20_000,
  );

async function rounds(ctx: Context, label: string, host: Host, clients: Clients): Promise<Run> {
  ctx.log(`${label}: ${clients.connected} connected, ${clients.failed} failed`);
  await sleep(2000);
  const idle = await ping(host, false);
  const cpu0 = { server: cpuMsOf(host.pid), clients: cpuOfAll(clients.pids), machine: machineBusyMs() };
  const t0 = performance.now();
  const out: PingWindow[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    await sleep(GAP_MS);
    const w = await ping(host, true);
    ctx.log(
      `${label} round ${i}: loop delay max ${fmtMs(w.loop.max)} p99 ${fmtMs(w.loop.p99)}, first slice ` +
        `${fmtMs(w.firstSliceMs)}, ${w.slices} slice(s) done in ${fmtMs(w.roundMs)}, ` +
        `${fmtInt(w.pongs)}/${fmtInt(w.sockets)} pongs in ${fmtMs(w.pongsMs)}`,
    );
    out.push(w);
  }
  // A socket that missed a pong would be dropped by the round after: look once more after a gap.
  await sleep(GAP_MS);
  const end = await ping(host, false);
  const wallMs = performance.now() - t0;
  const serverMs = cpuMsOf(host.pid) - cpu0.server;
  const clientsMs = cpuOfAll(clients.pids) - cpu0.clients;
  const othersMs = Math.max(0, machineBusyMs() - cpu0.machine - serverMs - clientsMs);
  const per = await Promise.all(clients.hosts.map((h) => h.ask<Count>({ cmd: "count" }, "count", 10_000)));
  return {
    connected: clients.connected,
    failed: clients.failed,
    idle,
    rounds: out,
    allAnswered: out.every((w) => w.pongs >= w.sockets && w.sockets === clients.connected),
    socketsAfter: end.socketsAfter,
    deadPeers: end.deadPeers,
    serverClosed: end.closed,
    clientsOpen: per.reduce((a, c) => a + c.sockets - c.closed, 0),
    clientsClosed: per.reduce((a, c) => a + c.closed, 0),
    cpu: { server: serverMs / wallMs, clients: clientsMs / wallMs, others: othersMs / wallMs },
  };
}

const clientProcesses = (sockets: number): number =>
  Math.max(2, Math.ceil(sockets / MAX_SOCKETS_PER_PROCESS));

async function gatewayRun(ctx: Context, sockets: number): Promise<Run> {
  const sim = await ctx.use(startSim(SIM_USERS));
  // Nothing but the measured round runs: the ping timer, keepalive, resync, polling and directory
  // refresh are all pushed out beyond the scenario.
  const gw = await ctx.use(
    startGatewayHost(
      gatewayEnv(sim.url, {
        PRESENCE_WS_PING_INTERVAL_MS: "600000",
        PRESENCE_KEEPALIVE_MS: "600000",
        PRESENCE_RESYNC_BYTES_PER_SECOND: "0",
        PRESENCE_POLL_INTERVAL_MS: "600000",
        PRESENCE_DIRECTORY_REFRESH_MS: "600000",
        PRESENCE_MAX_CONNECTIONS: String(sockets + 1000),
      }),
    ),
  );
  const wsUrl = `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`;
  const clients = await ctx.use(startClients(wsUrl, sockets, clientProcesses(sockets)));
  const run = await rounds(ctx, "gateway", gw, clients);
  await clients.stop();
  await gw.stop();
  await sim.stop();
  return run;
}

async function bareRun(ctx: Context, sockets: number): Promise<Run> {
  const bare = await ctx.use(startBareWs());
  const clients = await ctx.use(
    startClients(`${bare.url.replace("http", "ws")}/`, sockets, clientProcesses(sockets)),
  );
  const run = await rounds(ctx, "bare ws.ping", bare, clients);
  await clients.stop();
  await bare.stop();
  return run;
}

/** Worst and median over the rounds of one measure. */
function over(run: Run, f: (w: PingWindow) => number): { worst: number; median: number } {
  const s = summarize(run.rounds.map(f));
  return { worst: s.max, median: s.p50 };
}

const pct = (share: number): string => `${Math.round(share * 100)}%`;

const healthy = (r: Run): boolean =>
  r.allAnswered && r.deadPeers === 0 && r.socketsAfter === r.connected && r.clientsClosed === 0;

function answered(r: Run): string {
  const base = `${fmtInt(r.socketsAfter)} of ${fmtInt(r.connected)} still connected, ${r.deadPeers} dropped as dead`;
  if (healthy(r)) return `every ping answered, ${base}`;
  return (
    `NOT all answered: ${base}, ${r.clientsClosed} closed at the clients, pongs per round ` +
    r.rounds.map((w) => `${w.pongs}/${w.sockets}`).join(" ")
  );
}

/**
 * The hub's dead-peer ping round with N raw clients (which answer pings): the gateway's round (a
 * pre-built ping frame written raw, PING_SLICE sockets per turn of the event loop), triggered on
 * demand, against a bare `ws` server doing it the old way (`ws.ping()` to every socket in one
 * synchronous pass) to the same number of sockets. Measured per round: the server's event-loop
 * delay (monitorEventLoopDelay, 1 ms resolution) from the call until every socket has answered,
 * the first (synchronous) slice, the time until the last slice has written, the last pong; and
 * that every socket answered and none was dropped as dead by the rounds after.
 */
export async function pingScenario(ctx: Context): Promise<string> {
  const sockets = ctx.sockets[0]!;
  const skip = tooMany(sockets);
  if (skip) return `ping: ${skip}`;
  const g = await within(gatewayRun(ctx, sockets), 300_000, "gateway ping rounds");
  const b = await within(bareRun(ctx, sockets), 300_000, "bare ws.ping rounds");
  ctx.detail(`ping-${sockets}`, { gateway: g, bare: b });
  const gMax = over(g, (w) => w.loop.max);
  const bMax = over(b, (w) => w.loop.max);
  const gP99 = over(g, (w) => w.loop.p99);
  const bP99 = over(b, (w) => w.loop.p99);
  const gFirst = over(g, (w) => w.firstSliceMs);
  const gRound = over(g, (w) => w.roundMs);
  const gPongs = over(g, (w) => w.pongsMs);
  const bPass = over(b, (w) => w.roundMs);
  const bPongs = over(b, (w) => w.pongsMs);
  const all = [...g.rounds, ...b.rounds];
  const gcMax = Math.max(...all.map((w) => w.gcMaxMs));
  const gcs = all.reduce((a, w) => a + w.gcCount, 0);
  const slices = [...new Set(g.rounds.map((w) => w.slices))].join("/");
  const pair = (x: { worst: number; median: number }): string =>
    `${fmtMs(x.worst)} (median ${fmtMs(x.median)})`;
  return (
    `ping: ${fmtInt(g.connected)} sockets, one ping round, event-loop delay max ${pair(gMax)} = ` +
    `${fmtRatio(ratio(gMax.worst, bMax.worst))} the one-pass ws.ping() baseline's ${pair(bMax)} ` +
    `(medians ${fmtRatio(ratio(gMax.median, bMax.median))}); p99 ${fmtMs(gP99.worst)} vs ${fmtMs(bP99.worst)}; ` +
    `gateway: first slice ${pair(gFirst)}, all ${slices} slices written in ${pair(gRound)}, ` +
    `every pong in ${pair(gPongs)}; baseline: one pass ${pair(bPass)}, every pong in ${pair(bPongs)}; ` +
    `idle loop delay max ${fmtMs(g.idle.loop.max)} vs ${fmtMs(b.idle.loop.max)}; ` +
    `gateway: ${answered(g)}; baseline: ${answered(b)} (after ${ROUNDS} rounds) | worst of ${ROUNDS} ` +
    `rounds per server, each measured (1 ms resolution, after two full GCs; ` +
    `${gcs === 0 ? "no GC in any round" : `${gcs} GC pauses in the rounds, longest ${fmtMs(gcMax)}`}) from the call until every socket has answered; gateway = in-process Gateway in a ` +
    `child (ping timer, keepalive, resync, polling all off; the hub's private pingRound called on demand); ` +
    `clients = raw-TCP clients that answer pings, in ${clientProcesses(sockets)} ` +
    `child processes from 127.0.0.x source addresses, on the same 2 cores (over the rounds, of one core: ` +
    `gateway ${pct(g.cpu.server)}, its clients ${pct(g.cpu.clients)}, others ${pct(g.cpu.others)}; ` +
    `baseline ${pct(b.cpu.server)}, ${pct(b.cpu.clients)}, ${pct(b.cpu.others)})`
  );
}
