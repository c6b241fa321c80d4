import { monitorEventLoopDelay } from "node:perf_hooks";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { MattermostClient } from "../../src/mattermost/client.js";
import { PresenceSync } from "../../src/mattermost/sync.js";
import { chunk, mapLimit } from "../../src/util/batches.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { TOKEN, startSim } from "../lib/servers.js";
import { fmtInt, fmtMs, fmtRatio, ratio, summarize } from "../lib/stats.js";
import type { Context } from "./context.js";

const POLL_INTERVAL_MS = 3000;
const CONCURRENCY = 4;
const STEADY_CYCLES = 5;

interface Cycle {
  ms: number;
  cpuMs: number;
  requests: number;
}

/**
 * Upstream cost: the gateway's own PresenceSync, PresenceSnapshot and MattermostClient, in this
 * process, against the simulator in a child process. Per directory size: requests and wall/CPU
 * time per steady poll cycle (median of STEADY_CYCLES), vs the same status requests made with bare
 * fetch + JSON.parse (transport only). At the largest size, event-loop delay while a full directory
 * refresh runs, vs during a steady cycle.
 */
export async function upstreamScenario(ctx: Context): Promise<string> {
  const parts: string[] = [];
  let refresh = "";
  for (const users of ctx.upstreamUsers) {
    const sim = await ctx.use(startSim(users));
    let requests = 0;
    const client = new MattermostClient({
      url: sim.url,
      token: TOKEN,
      timeoutMs: 30_000,
      onRequest: () => requests++,
    });
    const snapshot = new PresenceSnapshot();
    const sync = new PresenceSync({
      client,
      snapshot,
      log: createLogger("silent", new SecretScrubber()),
      pollIntervalMs: POLL_INTERVAL_MS,
      directoryRefreshMs: 3_600_000,
      concurrency: CONCURRENCY,
      backoffMaxMs: 1000,
    });
    const measure = async (fn: () => Promise<unknown>): Promise<Cycle> => {
      requests = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      const cpu = process.cpuUsage(cpu0);
      return { ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, requests };
    };
    const ok = async (): Promise<void> => {
      if (!(await sync.runOnce())) throw new Error(`poll cycle failed: ${sync.health.lastError}`);
    };
    const startup = await measure(ok);
    const steady: Cycle[] = [];
    for (let i = 0; i < STEADY_CYCLES; i++) steady.push(await measure(ok));
    // Transport only: the same status requests, fetch + JSON.parse, same concurrency.
    const ids = snapshot.userIds();
    const bare: Cycle[] = [];
    for (let i = 0; i < STEADY_CYCLES; i++) {
      bare.push(
        await measure(() =>
          mapLimit(chunk(ids, 200), CONCURRENCY, async (part) => {
            const res = await fetch(`${sim.url}/api/v4/users/status/ids`, {
              method: "POST",
              headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
              body: JSON.stringify(part),
            });
            return JSON.parse(await res.text()) as unknown;
          }),
        ),
      );
    }
    const s = summarize(steady.map((c) => c.ms));
    const b = summarize(bare.map((c) => c.ms));
    const cpu = summarize(steady.map((c) => c.cpuMs));
    ctx.detail(`upstream-${users}`, { users: snapshot.size, startup, steady, bare });
    parts.push(
      `${fmtInt(users)} users: ${steady[0]!.requests} req, ${fmtMs(s.p50)} (${fmtMs(cpu.p50)} CPU) per cycle = ` +
        `${fmtRatio(ratio(s.p50, POLL_INTERVAL_MS))} the 3 s interval, ${fmtRatio(ratio(s.p50, b.p50))} bare fetch+parse ` +
        `(${fmtMs(b.p50)}); startup ${startup.requests} req ${fmtMs(startup.ms)}`,
    );
    if (users === Math.max(...ctx.upstreamUsers)) {
      const h = monitorEventLoopDelay({ resolution: 5 });
      h.enable();
      await ok();
      h.disable();
      const steadyMax = h.max / 1e6;
      const steadyP99 = h.percentile(99) / 1e6;
      h.reset();
      sync.hintDirectory("bench");
      h.enable();
      const dir = await measure(ok);
      h.disable();
      const dirMax = h.max / 1e6;
      const dirP99 = h.percentile(99) / 1e6;
      ctx.detail("directory-refresh", { users, dir, dirMax, dirP99, steadyMax, steadyP99 });
      refresh =
        `; directory refresh + poll at ${fmtInt(users)} users: ${dir.requests} req, ${fmtMs(dir.ms)}, ` +
        `event-loop delay max ${fmtMs(dirMax)} p99 ${fmtMs(dirP99)} = ${fmtRatio(ratio(dirMax, steadyMax))} ` +
        `a steady cycle's max (${fmtMs(steadyMax)})`;
    }
    await sync.stop();
    await sim.stop();
  }
  return (
    `upstream: ${parts.join(" · ")}${refresh} | sync/snapshot/client in-process, simulator in a child ` +
    `process on the same 2 cores (its answer time is inside every figure), concurrency ${CONCURRENCY}`
  );
}
