/**
 * Upstream cost on a real Mattermost: `node dist/bench/upstream-real.js [--sizes 1000,10000]
 * [--window-s 60] [--json file]` (under test/helpers/real-mattermost-cli.js, or it starts its own
 * server with the same harness). Per directory size, three windows of the same length:
 *
 * - idle:    the server alone (nothing polls it; the bench only reads /proc and pg_stat_*);
 * - gateway: the real gateway CLI with its defaults (status poll every 3 s in requests of 200 ids,
 *            directory refresh every 60 s), measured from its first ready snapshot on;
 * - web app: the same users' statuses polled the way Mattermost's web app polls them: one session
 *            per WEBAPP_IDS_PER_TAB users, each POSTing /users/status/ids for its own users every
 *            3 s (each user's status asked once per 3 s, as the gateway does, in the web app's
 *            batch size instead of 200).
 *
 * Each window: Mattermost's CPU (/proc/<pid>/stat utime+stime), the CPU of the PostgreSQL backends
 * serving its database, and pg_stat_database's xact_commit, tup_returned and tup_fetched deltas
 * (pg_stat_statements needs a restart of PostgreSQL with shared_preload_libraries, so it is not
 * used). The figure line gives each scenario's cost above idle and the gateway/web-app ratios.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  realMattermostFromEnv,
  startRealMattermost,
  type RealMattermost,
} from "../test/helpers/real-mattermost.js";
import {
  benchUserIds,
  databaseOf,
  insertUsers,
  pidListeningOn,
  readCounters,
  windowBetween,
  type Window,
} from "./lib/real-server.js";
import { sleep, stopAll } from "./lib/procs.js";
import { startGatewayProcess } from "./lib/servers.js";

/** Users whose statuses one web-app tab keeps fresh (its sidebar and the channel on screen). */
const WEBAPP_IDS_PER_TAB = 50;
const WEBAPP_POLL_MS = 3000;

interface Row {
  users: number;
  scenario: "idle" | "gateway" | "webapp";
  requestsPerMin?: number;
  window: Window;
}

async function measure(mmPid: number, db: string, seconds: number): Promise<Window> {
  const a = readCounters(mmPid, db);
  await sleep(seconds * 1000);
  return windowBetween(a, readCounters(mmPid, db));
}

/** Web-app tabs polling their users' statuses every 3 s, phases spread over the interval. */
function startWebappPollers(
  s: RealMattermost,
  ids: string[],
): { stop: () => Promise<void>; requests: () => number } {
  let requests = 0;
  let failures = 0;
  let stopped = false;
  const loops: Promise<void>[] = [];
  const tabs = Math.ceil(ids.length / WEBAPP_IDS_PER_TAB);
  for (let t = 0; t < tabs; t++) {
    const mine = ids.slice(t * WEBAPP_IDS_PER_TAB, (t + 1) * WEBAPP_IDS_PER_TAB);
    loops.push(
      (async () => {
        await sleep((WEBAPP_POLL_MS * t) / tabs);
        while (!stopped) {
          const started = performance.now();
          const res = await fetch(`${s.url}/api/v4/users/status/ids`, {
            method: "POST",
            headers: { Authorization: `Bearer ${s.adminToken}`, "Content-Type": "application/json" },
            body: JSON.stringify(mine),
          }).catch(() => undefined);
          if (res) await res.arrayBuffer();
          if (res?.ok) requests++;
          else failures++;
          await sleep(Math.max(0, WEBAPP_POLL_MS - (performance.now() - started)));
        }
      })(),
    );
  }
  return {
    requests: () => requests,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
      if (failures > 0) process.stderr.write(`web app: ${failures} status requests failed\n`);
    },
  };
}

function fmt(w: Window): string {
  return `Mattermost ${w.mmCpuPct}% CPU, PostgreSQL ${w.pgCpuPct}% CPU, ${w.xactPerMin} xact/min, ${w.tupReturnedPerMin} rows returned/min`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      sizes: { type: "string", default: "1000,10000" },
      "window-s": { type: "string", default: "60" },
      json: { type: "string" },
      "gateway-env": { type: "string", multiple: true, default: [] },
    },
  });
  const sizes = values.sizes.split(",").map(Number);
  const seconds = Number(values["window-s"]);
  if (
    sizes.some((n) => !Number.isSafeInteger(n) || n <= 0 || n > 50_000) ||
    !(seconds >= 5 && seconds <= 300)
  ) {
    process.stderr.write("--sizes: 1..50000 each; --window-s: 5..300\n");
    return 2;
  }
  const extraEnv = Object.fromEntries(
    values["gateway-env"].map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  let server = realMattermostFromEnv();
  if (!server) {
    const started = await startRealMattermost({ users: 1, log: (l) => process.stderr.write(`${l}\n`) });
    if (!started.ok) {
      process.stderr.write(`SKIP: no real Mattermost: ${started.skip}\n`);
      return 3;
    }
    server = started.server;
  }
  const s = server;
  const rows: Row[] = [];
  try {
    const mmPid = pidListeningOn(Number(new URL(s.url).port));
    const db = databaseOf(mmPid);
    const template = s.users[0];
    if (!template) throw new Error("the harness bootstrapped no user to copy");
    // The template needs a status record for insertUsers to copy.
    await fetch(`${s.url}/api/v4/users/${template.id}/status`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${s.adminToken}` },
      body: JSON.stringify({ user_id: template.id, status: "online" }),
    });
    process.stderr.write(`Mattermost ${s.version} pid ${mmPid}, database ${db}, windows of ${seconds} s\n`);
    for (const users of sizes) {
      const t0 = performance.now();
      const have = insertUsers(db, template.id, users);
      process.stderr.write(
        `${users} users: ${have} bench users in the database (${Math.round(performance.now() - t0)} ms)\n`,
      );
      await sleep(3000);

      const idle = await measure(mmPid, db, seconds);
      rows.push({ users, scenario: "idle", window: idle });
      process.stderr.write(`  idle:    ${fmt(idle)}\n`);

      const gw = await startGatewayProcess({
        MATTERMOST_URL: s.url,
        MATTERMOST_TOKEN: s.botToken,
        PRESENCE_SECRET: "upstream-real-bench-secret",
        HOST: "127.0.0.1",
        PORT: "0",
        LOG_LEVEL: "info",
        ...extraEnv,
      });
      const before = await gatewayRequests(gw.url);
      const gwWindow = await measure(mmPid, db, seconds);
      const gwRequests = (await gatewayRequests(gw.url)) - before;
      await gw.stop();
      rows.push({
        users,
        scenario: "gateway",
        requestsPerMin: Math.round((gwRequests * 60) / seconds),
        window: gwWindow,
      });
      process.stderr.write(
        `  gateway: ${fmt(gwWindow)}, ${Math.round((gwRequests * 60) / seconds)} requests/min\n`,
      );

      const ids = benchUserIds(db, users);
      const web = startWebappPollers(s, ids);
      await sleep(WEBAPP_POLL_MS);
      const r0 = web.requests();
      const webWindow = await measure(mmPid, db, seconds);
      const webRequests = web.requests() - r0;
      await web.stop();
      rows.push({
        users,
        scenario: "webapp",
        requestsPerMin: Math.round((webRequests * 60) / seconds),
        window: webWindow,
      });
      process.stderr.write(
        `  web app: ${fmt(webWindow)}, ${Math.round((webRequests * 60) / seconds)} requests/min (${Math.ceil(ids.length / WEBAPP_IDS_PER_TAB)} tabs of ${WEBAPP_IDS_PER_TAB})\n`,
      );
    }
  } finally {
    await stopAll();
    await s.stop();
  }
  if (values.json) writeFileSync(values.json, JSON.stringify(rows, null, 2));
  const parts = sizes.map((users) => {
    const get = (sc: Row["scenario"]) => rows.find((r) => r.users === users && r.scenario === sc)!.window;
    const idle = get("idle");
    const above = (w: Window) => Math.max(0, Math.round((w.mmCpuPct - idle.mmCpuPct) * 10) / 10);
    const gw = get("gateway");
    const web = get("webapp");
    const cpuRatio = above(web) > 0 ? (above(gw) / above(web)).toFixed(2) : "n/a";
    const xRatio =
      web.xactPerMin - idle.xactPerMin > 0
        ? ((gw.xactPerMin - idle.xactPerMin) / (web.xactPerMin - idle.xactPerMin)).toFixed(2)
        : "n/a";
    return `${users} users: gateway +${above(gw)}% CPU, +${gw.xactPerMin - idle.xactPerMin} xact/min; web app +${above(web)}% CPU, +${web.xactPerMin - idle.xactPerMin} xact/min; gateway/web app CPU ${cpuRatio}, xact ${xRatio}`;
  });
  process.stdout.write(`upstream-real: Mattermost ${s.version}, above idle: ${parts.join(" | ")}\n`);
  return 0;
}

/** Mattermost requests the gateway made so far, from its own /metrics. */
async function gatewayRequests(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^outlook_presence_upstream_requests_total\{[^}]*\} (\d+(?:\.\d+)?)/gm))
    n += Number(m[1]);
  return n;
}

process.exitCode = await main().catch(async (err: unknown) => {
  process.stderr.write(`upstream-real: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await stopAll();
  return 1;
});
