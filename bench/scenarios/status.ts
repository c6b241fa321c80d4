import { availableParallelism } from "node:os";
import { load, type LoadResult } from "../lib/http-load.js";
import { boundBy, fmtInt, fmtMs, fmtRatio, ratio } from "../lib/stats.js";
import { pinTo, wrk, type WrkResult } from "../lib/wrk.js";
import {
  SECRET,
  STATUS_PATH,
  gatewayEnv,
  startGatewayProcess,
  startHttpBaseline,
  startSim,
  type Server,
} from "../lib/servers.js";
import type { Context } from "./context.js";

const USERS = 10_000;
const PAGE_SIZE = 100;
const ROUNDS = 2;

export function pagePaths(pages: number): string[] {
  return Array.from({ length: pages }, (_, p) => `${STATUS_PATH}?secret=${SECRET}&page=${p}`);
}

export const pct = (share: number): string => `${Math.round(share * 100)}%`;

function fmt(r: LoadResult | WrkResult): string {
  const us = "usPerRequest" in r ? r.usPerRequest : r.serverUsPerRequest;
  return `${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${Math.round(us)} µs CPU/req`;
}

/**
 * Pins every server to core 0 so that wrk, on core 1, never takes turns with them; returns wrk's
 * core, or undefined where that is not possible (one core, no taskset).
 */
function pinServers(ctx: Context, pids: number[]): number | undefined {
  const pinned = availableParallelism() >= 2 && pids.every((pid) => pinTo(pid, 0));
  ctx.log(pinned ? "servers on core 0, wrk on core 1" : "not pinned (taskset missing or one core)");
  return pinned ? 1 : undefined;
}

const pinning = (core: number | undefined): string =>
  core === undefined ? "not pinned" : "servers pinned to core 0, wrk to core 1";

interface Wire {
  user_id: string;
  email: string;
  status: string;
}

async function startGatewayWithUsers(
  ctx: Context,
  users: number,
): Promise<{ gw: Server; all: { id: string; email: string; status: string }[] }> {
  const sim = await ctx.use(startSim(users));
  const gw = await ctx.use(startGatewayProcess(gatewayEnv(sim.url)));
  const all: { id: string; email: string; status: string }[] = [];
  for (let p = 0; p < 100_000; p++) {
    const res = await fetch(`${gw.url}${STATUS_PATH}?secret=${SECRET}&page=${p}`);
    const page = (await res.json()) as Wire[];
    if (page.length === 0) break;
    for (const u of page) all.push({ id: u.user_id, email: u.email, status: u.status });
  }
  return { gw, all };
}

/**
 * Runs each server in turn under wrk (C: its own cost stays off the server's core), ROUNDS times
 * interleaved (the machine is shared: interleaving spreads other load over all of them), and
 * keeps each server's best round.
 */
async function interleaved(
  ctx: Context,
  servers: { name: string; url: string; pid: number }[],
  paths: string[],
  headers?: Record<string, string>,
): Promise<{ best: Record<string, WrkResult>; core: number | undefined }> {
  const core = pinServers(
    ctx,
    servers.map((s) => s.pid),
  );
  const run = (s: { url: string; pid: number }, durationS: number) =>
    wrk({ url: s.url, serverPid: s.pid, connections: ctx.connections, durationS, paths, headers, core });
  const best: Record<string, WrkResult> = {};
  for (const s of servers) await run(s, 2);
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of servers) {
      const r = await run(s, ctx.durationS);
      ctx.log(`${s.name} round ${round}: ${fmt(r)}; server ${pct(r.serverCpu)} of a core`);
      if (!best[s.name] || r.rps > best[s.name]!.rps) best[s.name] = r;
    }
  }
  return { best, core };
}

/**
 * `/status` throughput and p99: the real gateway process vs a ceiling node:http server answering a
 * constant buffer (page 0's bytes and headers) and vs a naive server building each page per request.
 */
export async function statusScenario(ctx: Context): Promise<string> {
  const { gw, all } = await startGatewayWithUsers(ctx, USERS);
  const first = await fetch(`${gw.url}${STATUS_PATH}?secret=${SECRET}&page=0`);
  const body = Buffer.from(await first.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const k of ["content-type", "etag", "cache-control", "vary"]) headers[k] = first.headers.get(k) ?? "";
  const paths = pagePaths(Math.ceil(all.length / PAGE_SIZE));
  const ceiling = await ctx.use(startHttpBaseline("ceiling", { body, headers }));
  const naive = await ctx.use(startHttpBaseline("naive", { users: all, pageSize: PAGE_SIZE }));
  const { best: r, core } = await interleaved(
    ctx,
    [
      { name: "gateway", url: gw.url, pid: gw.pid },
      { name: "ceiling", url: ceiling.url, pid: ceiling.pid },
      { name: "naive", url: naive.url, pid: naive.pid },
    ],
    paths,
  );
  const g = r.gateway!;
  const c = r.ceiling!;
  const n = r.naive!;
  ctx.detail("status", { gateway: g, ceiling: c, naive: n, users: all.length, pageBytes: body.length });
  return (
    `status: gateway ${fmt(g)} = ${fmtRatio(ratio(g.rps, c.rps))} ceiling (${fmt(c)}), ` +
    `${fmtRatio(ratio(g.rps, n.rps))} naive per-request builder (${fmt(n)}) | ` +
    `gateway = real process (cli start, polling ${fmtInt(all.length)} users every 3 s meanwhile), pages of ${body.length} B, ` +
    `wrk -t1 -c${ctx.connections}, best of ${ROUNDS}×${ctx.durationS} s interleaved, ${pinning(core)} ` +
    `(gateway ${pct(g.serverCpu)} of a core)`
  );
}

/** 304 (If-None-Match with the current ETag) vs the full page, same gateway, same page. */
export async function notModifiedScenario(ctx: Context): Promise<string> {
  const { gw } = await startGatewayWithUsers(ctx, USERS);
  const path = `${STATUS_PATH}?secret=${SECRET}&page=0`;
  const etag = (await fetch(`${gw.url}${path}`)).headers.get("etag") ?? "";
  const full = await interleaved(ctx, [{ name: "full", url: gw.url, pid: gw.pid }], [path]);
  const nm = await interleaved(ctx, [{ name: "304", url: gw.url, pid: gw.pid }], [path], {
    "if-none-match": etag,
  });
  const f = full.best.full!;
  const m = nm.best["304"]!;
  ctx.detail("304", { full: f, notModified: m, etag });
  // wrk counts neither 2xx nor 3xx as errors: check that the answers are 304s, not full pages.
  const probe = await fetch(`${gw.url}${path}`, { headers: { "if-none-match": etag } });
  if (probe.status !== 304) throw new Error(`expected 304 answers, got ${probe.status}`);
  return (
    `304: ${fmtInt(m.rps)} req/s, p99 ${fmtMs(m.p99)}, ${Math.round(m.usPerRequest)} µs gateway CPU/req = ` +
    `${fmtRatio(ratio(m.usPerRequest, f.usPerRequest))} the CPU of a full 200 page ` +
    `(${fmt(f)}); throughput ${fmtRatio(ratio(m.rps, f.rps))} | gateway = real process, page 0, ` +
    `wrk -t1 -c${ctx.connections}, ${pinning(nm.core)} (gateway ${pct(m.serverCpu)} of a core)`
  );
}

/**
 * "Monday morning": `providers` providers start at once and each pages the whole directory
 * (50,000 users: pages 0..500, the last one `[]`), vs the ceiling server answering the same requests.
 */
export async function burstScenario(ctx: Context): Promise<string> {
  const { gw, all } = await startGatewayWithUsers(ctx, ctx.burstUsers);
  const pages = Math.ceil(all.length / PAGE_SIZE) + 1; // the last answers []
  const paths = pagePaths(pages);
  const first = await fetch(`${gw.url}${paths[0]}`);
  const body = Buffer.from(await first.arrayBuffer());
  const ceiling = await ctx.use(
    startHttpBaseline("ceiling", { body, headers: { "content-type": "application/json" } }),
  );
  const amount = ctx.providers * pages;
  const run = (url: string, pid: number): Promise<LoadResult> =>
    load({ url, serverPid: pid, connections: ctx.providers, amount, paths, timeoutS: 120 });
  const g = await run(gw.url, gw.pid);
  ctx.log(`gateway: ${fmt(g)} in ${g.durationS} s`);
  const c = await run(ceiling.url, ceiling.pid);
  ctx.log(`ceiling: ${fmt(c)} in ${c.durationS} s`);
  ctx.detail("burst", { gateway: g, ceiling: c, users: all.length, pages, amount });
  return (
    `burst: ${fmtInt(ctx.providers)} providers × ${pages} pages (${fmtInt(all.length)} users) served in ` +
    `${g.durationS.toFixed(1)} s (${fmtInt(g.rps)} req/s, p99 ${fmtMs(g.p99)}, errors ${g.errors}) = ` +
    `${fmtRatio(ratio(c.durationS, g.durationS))} ceiling speed (${c.durationS.toFixed(1)} s, ${fmtInt(c.rps)} req/s, ` +
    `p99 ${fmtMs(c.p99)}) | gateway = real process, ${fmtInt(ctx.providers)} connections opened at once; bound by ` +
    `${boundBy(g.serverCpu, g.generatorCpu)} (gateway ${pct(g.serverCpu)}, autocannon ${pct(g.generatorCpu)}, ` +
    `other processes ${pct(g.othersCpu)})`
  );
}
