import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { fmtInt, fmtMs, fmtRatio, ratio } from "../lib/stats.js";
import {
  SECRET,
  STATUS_PATH,
  gatewayEnv,
  startGatewayProcess,
  startHttpBaseline,
  startSim,
  type Server,
} from "../lib/servers.js";
import { WRK, pinTo, wrk, type WrkResult } from "../lib/wrk.js";
import type { Context } from "./context.js";
import { pagePaths } from "./status.js";

const USERS = 10_000;
const PAGE_SIZE = 100;
const ROUNDS = 8;
/** The servers run on this core, wrk on the other (when the machine has two and taskset is there). */
const SERVER_CORE = 0;
const WRK_CORE = 1;

function fmt(r: WrkResult): string {
  return (
    `${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, CPU/req user ${r.userUsPerRequest.toFixed(1)} µs + ` +
    `system ${r.systemUsPerRequest.toFixed(1)} µs = ${r.usPerRequest.toFixed(1)} µs, ` +
    `${fmtInt(r.requestsPerCpuS)} req per CPU-s`
  );
}

/** `name=path,name=path` → [name, path] pairs. */
function compareBuilds(raw: string | undefined): [string, string][] {
  if (!raw) return [];
  return raw.split(",").map((entry) => {
    const eq = entry.indexOf("=");
    if (eq <= 0 || !existsSync(entry.slice(eq + 1)))
      throw new Error(`BENCH_COMPARE: expected name=<cli path>, got ${entry}`);
    return [entry.slice(0, eq), entry.slice(eq + 1)];
  });
}

/**
 * The round with the most requests per CPU-second. Other processes on the shared cores only ever
 * add to a server's CPU per request (preemption, cold caches), never take from it, so the best
 * round is the closest to the server's own cost (the median moved by 30 % between runs here).
 */
function best(rounds: WrkResult[]): WrkResult {
  return rounds.reduce((a, b) => (b.requestsPerCpuS > a.requestsPerCpuS ? b : a));
}

/**
 * The per-request CPU cost of compat `/status` (issue 17, item 3): the gateway process against the
 * constant-buffer node:http ceiling (page 0's bytes and headers), both loaded by wrk, in the same
 * run, ROUNDS rounds interleaved, the best round of each kept. The figure is requests per
 * CPU-second of the server process (user + system from /proc/<pid>/stat), which does not depend
 * on how much of the shared machine the server got. The gateway polls only every 10 minutes here,
 * so the window holds the request path alone. "2 workers" is the same gateway with
 * PRESENCE_WORKERS=2, its CPU summed over the primary and the workers. With BENCH_COMPARE=name=<another build's
 * dist/src/cli/main.js>,... more gateways run in the same rounds (before/after a change).
 */
export async function statusCpuScenario(ctx: Context): Promise<string> {
  if (!existsSync(WRK)) throw new Error(`${WRK} is missing: apt-get install wrk`);
  const sim = await ctx.use(startSim(USERS));
  const quiet = { PRESENCE_POLL_INTERVAL_MS: "600000", PRESENCE_DIRECTORY_REFRESH_MS: "600000" };
  const servers: { name: string; server: Server }[] = [
    { name: "gateway", server: await ctx.use(startGatewayProcess(gatewayEnv(sim.url, quiet))) },
    // The same instance with 2 worker processes: its CPU is summed over the primary and both
    // workers (pinned to the same core), so the ratio shows what the cluster adds per request.
    {
      name: "2 workers",
      server: await ctx.use(startGatewayProcess(gatewayEnv(sim.url, { ...quiet, PRESENCE_WORKERS: "2" }))),
    },
  ];
  for (const [name, cli] of compareBuilds(process.env.BENCH_COMPARE)) {
    servers.push({
      name,
      server: await ctx.use(startGatewayProcess(gatewayEnv(sim.url, quiet), 120_000, cli)),
    });
  }
  const gw = servers[0]!.server;
  const first = await fetch(`${gw.url}${STATUS_PATH}?secret=${SECRET}&page=0`);
  const body = Buffer.from(await first.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const k of ["content-type", "etag", "cache-control", "vary"]) headers[k] = first.headers.get(k) ?? "";
  const ceiling = await ctx.use(startHttpBaseline("ceiling", { body, headers }));
  servers.push({ name: "ceiling", server: ceiling });
  // Every page that has users (the simulator leaves some without an email: they are not listed).
  const visible = ((await (await fetch(`${gw.url}/readyz`)).json()) as { users: number }).users;
  const paths = pagePaths(Math.ceil(visible / PAGE_SIZE));

  const pinned =
    availableParallelism() >= 2 && servers.every((s) => pinTo(s.server.pid, SERVER_CORE))
      ? WRK_CORE
      : undefined;
  ctx.log(
    pinned === undefined
      ? "not pinned (taskset missing or one core)"
      : `servers on core ${SERVER_CORE}, wrk on core ${WRK_CORE}`,
  );
  const run = (s: Server, durationS: number) =>
    wrk({ url: s.url, serverPid: s.pid, connections: ctx.connections, durationS, paths, core: pinned });

  for (const s of servers) await run(s.server, 2); // warm-up: JIT, pages built
  const rounds: Record<string, WrkResult[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of servers) {
      const r = await run(s.server, ctx.durationS);
      if (r.non2xx > 0 || r.errors > 0)
        throw new Error(`${s.name}: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
      ctx.log(`${s.name} round ${round}: ${fmt(r)}`);
      (rounds[s.name] ??= []).push(r);
    }
  }
  const med = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, best(v)]));
  const g = med.gateway!;
  const c = med.ceiling!;
  ctx.detail("status-cpu", { rounds, pinned: pinned !== undefined, pageBytes: body.length, users: visible });
  const base = servers
    .filter((s) => s.name !== "gateway" && s.name !== "ceiling")
    .map((s) => {
      const b = med[s.name]!;
      return `; "${s.name}" ${fmt(b)} = ${fmtRatio(ratio(b.requestsPerCpuS, c.requestsPerCpuS))} ceiling`;
    })
    .join("");
  return (
    `status-cpu: gateway ${fmt(g)} = ${fmtRatio(ratio(g.requestsPerCpuS, c.requestsPerCpuS))} the ceiling's ` +
    `requests per CPU-second (ceiling ${fmt(c)})${base} | wrk -t1 -c${ctx.connections}, ${paths.length} pages ` +
    `of ~${body.length} B cycled, best of ${ROUNDS}×${ctx.durationS} s interleaved, ` +
    (pinned === undefined ? "not pinned" : `servers pinned to core ${SERVER_CORE}, wrk to core ${WRK_CORE}`)
  );
}
