import { readdirSync, readFileSync } from "node:fs";
import { cpuMsOf, rssOf, sleep, within, type Host } from "../lib/procs.js";
import {
  SECRET,
  WS_PATH,
  startClients,
  startClusterHost,
  startGatewayHost,
  startSim,
  type Clients,
} from "../lib/servers.js";
import { fmtBytes, fmtInt, fmtMs, fmtRatio, ratio, summarize } from "../lib/stats.js";
import type { Context } from "./context.js";
import { deliver, seen, socketGatewayEnv } from "./fanout.js";

const SIM_USERS = 2000;
/** Single changes sent to the 30,000 sockets (each must reach every socket). */
const INSTANCE_CHANGES = 5;
/** Sockets per client process in the 30,000-socket scenario (each process: its own source address). */
const SOCKETS_PER_CLIENT = 10_000;
/**
 * Polling interval in the cores scenario: slower than the other socket scenarios' 250 ms, so that
 * the polling's own CPU (the background subtracted from each round) is small next to a change's.
 */
const CORES_POLL_MS = "1000";
/** Interleaved rounds in the cores scenario: each round sends one change to each instance. */
const ROUNDS = 16;

const loadavg = (): string => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

/** Open file descriptors of a process (sockets included), from /proc (Linux). */
const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

async function clusterPids(host: Host): Promise<{ primary: number; workers: number[] }> {
  return host.ask<{ primary: number; workers: number[] }>({ cmd: "pids" }, "pids", 10_000);
}

/** One change made in `sim`, resolved with the time `gw` saw it (its `seen` message). */
function changeVia(sim: Host, gw: Host) {
  return async (): Promise<number> => {
    const t = seen(gw, 1, 15_000);
    await sim.ask({ cmd: "change", count: 1 }, "changed", 10_000);
    return t;
  };
}

/**
 * 30,000 sockets held by ONE instance with 2 workers (no single process may hold more than
 * 20,000 open files here), spread over client processes with their own source addresses; a few
 * changes made in the simulator, each counted at every socket. Reports the time from the primary
 * seeing a change to each socket receiving it, and RSS per process.
 */
export async function instanceScenario(ctx: Context & { instanceSockets: number }): Promise<string> {
  const sockets = ctx.instanceSockets;
  const run = async (): Promise<string> => {
    const started = loadavg();
    const sim = await ctx.use(startSim(SIM_USERS));
    const gw = await ctx.use(
      startClusterHost({ ...socketGatewayEnv(sim.url, sockets), PRESENCE_WORKERS: "2" }),
    );
    const pids = await clusterPids(gw);
    const fdsBefore = pids.workers.map(fdsOf);
    const processes = Math.ceil(sockets / SOCKETS_PER_CLIENT);
    const wsUrl = `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`;
    const clients = await ctx.use(startClients(wsUrl, sockets, processes));
    ctx.log(`${clients.connected} connected, ${clients.failed} failed, over ${processes} client processes`);
    await sleep(2000);
    const perWorker = pids.workers.map((pid, i) => fdsOf(pid) - fdsBefore[i]!);
    const all: number[] = [];
    const lastPerChange: number[] = [];
    let complete = 0;
    for (let i = 0; i < INSTANCE_CHANGES; i++) {
      const d = await deliver(clients, 1, changeVia(sim, gw), 60_000);
      all.push(...d.latencies);
      const last = summarize(d.latencies).max;
      lastPerChange.push(last);
      if (d.incomplete === 0 && d.latencies.length === sockets) complete++;
      ctx.log(
        `change ${i + 1}: ${fmtInt(d.latencies.length)} sockets received it, last after ${fmtMs(last)}`,
      );
      await sleep(500);
    }
    const rss = {
      primary: rssOf(pids.primary),
      workers: pids.workers.map(rssOf),
      clients: clients.pids.map(rssOf),
    };
    const serverRss = rss.primary + rss.workers.reduce((a, b) => a + b, 0);
    const s = summarize(all);
    const l = summarize(lastPerChange);
    ctx.detail(`instance-${sockets}`, {
      connected: clients.connected,
      failed: clients.failed,
      perWorkerFds: perWorker,
      complete,
      perSocket: s,
      lastPerChange,
      rss,
      loadavg: { started, ended: loadavg() },
    });
    await clients.stop();
    return (
      `instance: ${fmtInt(clients.connected)} of ${fmtInt(sockets)} sockets connected to one instance ` +
      `(primary + 2 workers holding ~${perWorker.map(fmtInt).join(" / ")}); ` +
      `${complete}/${INSTANCE_CHANGES} changes reached every socket; primary seeing a change → socket ` +
      `receiving it p50/p99/max ${fmtMs(s.p50)}/${fmtMs(s.p99)}/${fmtMs(s.max)} over ${fmtInt(s.n)} deliveries ` +
      `(last socket per change: median ${fmtMs(l.p50)}, max ${fmtMs(l.max)}); RSS primary ` +
      `${fmtBytes(rss.primary)}, workers ${rss.workers.map(fmtBytes).join(" / ")}, instance total ` +
      `${fmtBytes(serverRss)} (${fmtBytes(serverRss / Math.max(1, clients.connected))}/socket incl. ` +
      `the 2,000-user snapshot in 3 processes) | clients: ${processes} processes, one source address each; ` +
      `load average ${started} at start; all on the same 2 cores`
    );
  };
  return within(run(), 840_000, "instance scenario");
}

interface Side {
  name: string;
  sim: Host;
  gw: Host;
  clients: Clients;
  /** Server processes: the one process, or the primary then each worker. */
  pids: number[];
  p99: number[];
  last: number[];
  /** CPU ms per change per server process, summed over the rounds. */
  cpu: number[];
  /** CPU ms per server process over an idle window as long as each round, summed (background). */
  idleCpu: number[];
  incomplete: number;
}

async function round(side: Side): Promise<void> {
  const before = side.pids.map(cpuMsOf);
  const t0 = performance.now();
  const d = await deliver(side.clients, 1, changeVia(side.sim, side.gw), 30_000);
  const wall = performance.now() - t0;
  side.pids.forEach((pid, i) => (side.cpu[i]! += cpuMsOf(pid) - before[i]!));
  // The same length of time with no change: what polling and timers cost meanwhile.
  const idleBefore = side.pids.map(cpuMsOf);
  await sleep(wall);
  side.pids.forEach((pid, i) => (side.idleCpu[i]! += cpuMsOf(pid) - idleBefore[i]!));
  const s = summarize(d.latencies);
  side.p99.push(s.p99);
  side.last.push(s.max);
  side.incomplete += d.incomplete;
}

const median = (xs: number[]): number => summarize(xs).p50;
const spread = (xs: number[]): string => {
  const s = summarize(xs);
  return `${fmtMs(s.p50)} (${fmtMs(s.min)}–${fmtMs(s.max)})`;
};

/**
 * One change to N sockets: one process vs a primary and 2 workers, both instances up at once with
 * their own simulator and clients, in interleaved rounds (ABBA order) so that background load on
 * this shared machine falls on both alike. Reports the median and range of the per-round p99, the
 * per-round ratio, and the CPU time the server processes spent per change (from /proc/<pid>/stat,
 * background subtracted): the cluster's added cost per change, and from the busiest worker's share
 * the wall-clock ratio a host with a free core per process would show.
 */
export async function coresScenario(ctx: Context): Promise<string> {
  const sockets = ctx.sockets[0] ?? 10_000;
  const run = async (): Promise<string> => {
    const started = loadavg();
    const simOne = await ctx.use(startSim(SIM_USERS));
    const simTwo = await ctx.use(startSim(SIM_USERS));
    const env = (url: string) => ({
      ...socketGatewayEnv(url, sockets),
      PRESENCE_POLL_INTERVAL_MS: CORES_POLL_MS,
    });
    const gwOne = await ctx.use(startGatewayHost(env(simOne.url)));
    const gwTwo = await ctx.use(startClusterHost({ ...env(simTwo.url), PRESENCE_WORKERS: "2" }));
    const two = await clusterPids(gwTwo);
    const wsUrl = (gw: Host & { url: string }) =>
      `${gw.url.replace("http", "ws")}${WS_PATH}?secret=${SECRET}`;
    const clientsOne = await ctx.use(startClients(wsUrl(gwOne), sockets, 2));
    const clientsTwo = await ctx.use(startClients(wsUrl(gwTwo), sockets, 2));
    ctx.log(`one process: ${clientsOne.connected} connected; 2 workers: ${clientsTwo.connected} connected`);
    await sleep(2000);
    const side = (name: string, sim: Host, gw: Host, clients: Clients, pids: number[]): Side => ({
      name,
      sim,
      gw,
      clients,
      pids,
      p99: [],
      last: [],
      cpu: pids.map(() => 0),
      idleCpu: pids.map(() => 0),
      incomplete: 0,
    });
    const one = side("one process", simOne, gwOne, clientsOne, [gwOne.pid]);
    const cl = side("2 workers", simTwo, gwTwo, clientsTwo, [two.primary, ...two.workers]);
    // Warm-up: one change each, not counted (first frames build caches, JIT).
    await deliver(clientsOne, 1, changeVia(simOne, gwOne), 30_000);
    await deliver(clientsTwo, 1, changeVia(simTwo, gwTwo), 30_000);
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? [one, cl] : [cl, one];
      for (const s of order) {
        await round(s);
        await sleep(300);
      }
    }
    const perRound = one.p99.map((p, i) => ratio(cl.p99[i]!, p));
    const cpuOne = (one.cpu[0]! - one.idleCpu[0]!) / ROUNDS;
    const cpuCl = cl.cpu.map((c, i) => (c - cl.idleCpu[i]!) / ROUNDS);
    const cpuClTotal = cpuCl.reduce((a, b) => a + b, 0);
    const busiestWorker = Math.max(...cpuCl.slice(1));
    const projected = ratio(cpuCl[0]! + busiestWorker, cpuOne);
    const ended = loadavg();
    ctx.detail(`cores-${sockets}`, {
      rounds: ROUNDS,
      oneProcess: {
        p99: one.p99,
        last: one.last,
        cpuMsPerChange: cpuOne,
        cpuMs: one.cpu,
        idleCpuMs: one.idleCpu,
      },
      twoWorkers: { p99: cl.p99, last: cl.last, cpuMsPerChange: cpuCl, cpuMs: cl.cpu, idleCpuMs: cl.idleCpu },
      perRoundRatio: perRound,
      incomplete: one.incomplete + cl.incomplete,
      loadavg: { started, ended },
    });
    const pr = summarize(perRound);
    return (
      `cores: one change to ${fmtInt(sockets)} sockets, ${ROUNDS} interleaved rounds: p99 per round, ` +
      `median (range), 2 workers ${spread(cl.p99)} vs one process ${spread(one.p99)} = ` +
      `${fmtRatio(ratio(median(cl.p99), median(one.p99)))} (per-round ratio median ${fmtRatio(pr.p50)}, ` +
      `range ${fmtRatio(pr.min)}–${fmtRatio(pr.max)}); server CPU per change: one process ` +
      `${cpuOne.toFixed(1)} ms, 2 workers ${cpuClTotal.toFixed(1)} ms = ${fmtRatio(ratio(cpuClTotal, cpuOne))} ` +
      `(primary ${cpuCl[0]!.toFixed(1)}, workers ${cpuCl
        .slice(1)
        .map((c) => c.toFixed(1))
        .join(" / ")}); with a free core per process, p99 ≈ (primary + busiest worker) / one process ` +
      `= ${fmtRatio(projected)}` +
      (one.incomplete + cl.incomplete > 0
        ? `; ${one.incomplete + cl.incomplete} deliveries incomplete`
        : "") +
      ` | both instances up at once, each with its own simulator and 2 client processes; load average ` +
      `${started} at start, ${ended} at end; 2 cores shared by servers, clients and other work`
    );
  };
  return within(run(), 840_000, "cores scenario");
}
