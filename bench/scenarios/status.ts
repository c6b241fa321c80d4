import { load, type LoadResult } from "../lib/http-load.js";
import { boundBy, fmtInt, fmtMs, fmtRatio, ratio } from "../lib/stats.js";
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

function fmt(r: LoadResult): string {
  return `${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, ${Math.round(r.serverUsPerRequest)} µs CPU/req`;
}

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
 * Runs each server in turn, ROUNDS times interleaved (the machine is shared: interleaving spreads
 * other load over all of them), and keeps each server's best round.
 */
async function interleaved(
  ctx: Context,
  servers: { name: string; url: string; pid: number }[],
  paths: string[],
  headers?: Record<string, string>,
): Promise<Record<string, LoadResult>> {
  const best: Record<string, LoadResult> = {};
  for (const s of servers) {
    await load({ url: s.url, serverPid: s.pid, connections: ctx.connections, duration: 2, paths, headers });
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of servers) {
      const r = await load({
        url: s.url,
        serverPid: s.pid,
        connections: ctx.connections,
        duration: ctx.durationS,
        paths,
        headers,
      });
      ctx.log(`${s.name} round ${round}: ${fmt(r)}; others used ${pct(r.othersCpu)} of a core`);
      if (!best[s.name] || r.rps > best[s.name]!.rps) best[s.name] = r;
    }
  }
  return best;
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
  const r = await interleaved(
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
    `${ctx.connections} connections, best of ${ROUNDS}×${ctx.durationS} s interleaved; bound by ${boundBy(g.serverCpu, g.generatorCpu)} ` +
    `(gateway ${pct(g.serverCpu)} of a core, autocannon ${pct(g.generatorCpu)}, other processes ${pct(g.othersCpu)})`
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
  const f = full.full!;
  const m = nm["304"]!;
  ctx.detail("304", { full: f, notModified: m, etag });
  if (m.codes["304"] === undefined) throw new Error(`expected 304 answers, got ${JSON.stringify(m.codes)}`);
  return (
    `304: ${fmtInt(m.rps)} req/s, p99 ${fmtMs(m.p99)}, ${Math.round(m.serverUsPerRequest)} µs gateway CPU/req = ` +
    `${fmtRatio(ratio(m.serverUsPerRequest, f.serverUsPerRequest))} the CPU of a full 200 page ` +
    `(${fmt(f)}); throughput ${fmtRatio(ratio(m.rps, f.rps))} | gateway = real process, page 0, ` +
    `${ctx.connections} connections; bound by ${boundBy(m.serverCpu, m.generatorCpu)} ` +
    `(gateway ${pct(m.serverCpu)}, autocannon ${pct(m.generatorCpu)}, other processes ${pct(m.othersCpu)})`
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
