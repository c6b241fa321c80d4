import autocannon from "autocannon";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { sleep } from "../lib/procs.js";
import { TOKEN, gatewayEnv, startGatewayProcess } from "../lib/servers.js";
import { fmtInt, fmtRatio, ratio } from "../lib/stats.js";
import type { Context } from "./context.js";

const USERS = 5000;
const POLL_MS = 3000;
const HINTS_PER_SECOND = 5; // the default PRESENCE_HINTS_PER_SECOND
const WINDOW_S = 12;
const FLOOD_RATE = 10_000;

/** Sums a counter family's samples from Prometheus text, optionally those whose labels match. */
function metric(text: string, name: string, labels = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || line.startsWith("#")) continue;
    const m = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? "").includes(labels)) sum += Number(m[3]);
  }
  return sum;
}

/**
 * Hint flooding: 10,000 POST /status/publish a second from one address for WINDOW_S seconds
 * against a gateway polling every 3 s, vs the same window without the flood. Reports upstream
 * status requests a second (the hint budget is PRESENCE_HINTS_PER_SECOND) and poll cycles done
 * (the flood must not delay normal polling), from the gateway's own /metrics.
 */
export async function hintsScenario(ctx: Context): Promise<string> {
  const sim = new MattermostSimulator({ token: TOKEN, users: USERS, seed: 9 });
  await sim.start(0, "127.0.0.1");
  await ctx.use(Promise.resolve({ stop: () => sim.stop() }));
  const gw = await ctx.use(
    startGatewayProcess(gatewayEnv(sim.url, { PRESENCE_POLL_INTERVAL_MS: String(POLL_MS) })),
  );
  const scrape = async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    return {
      status: metric(text, "outlook_presence_upstream_requests_total", 'endpoint="status/ids"'),
      cycles: metric(text, "outlook_presence_poll_cycle_duration_seconds_count"),
    };
  };
  const window = async (flood: boolean) => {
    const a = await scrape();
    let codes: Record<string, number> = {};
    if (flood) {
      const ids = sim
        .listUsers()
        .filter((u) => u.delete_at === 0)
        .map((u) => u.id);
      let i = 0;
      const result = await autocannon({
        url: `${gw.url}/plugins/com.mattermost.outlook-presence/api/v1/status/publish`,
        method: "POST",
        headers: { "content-type": "application/json" },
        connections: 20,
        overallRate: FLOOD_RATE,
        duration: WINDOW_S,
        requests: [
          {
            setupRequest: (req) => ({
              ...req,
              body: JSON.stringify({ user_id: ids[i++ % ids.length], status: "online" }),
            }),
          },
        ],
      });
      codes = { "2xx": result["2xx"], "4xx": result["4xx"], sent: result.requests.total };
    } else {
      await sleep(WINDOW_S * 1000);
    }
    const b = await scrape();
    return { perSecond: (b.status - a.status) / WINDOW_S, cycles: b.cycles - a.cycles, codes };
  };
  await sleep(POLL_MS); // first cycles done
  const quiet = await window(false);
  const flood = await window(true);
  const pollPerSecond = Math.ceil(USERS / 200) / (POLL_MS / 1000);
  ctx.detail("hints", { quiet, flood, pollPerSecond, budget: HINTS_PER_SECOND });
  return (
    `hints: ${fmtInt(FLOOD_RATE)}/s from one address for ${WINDOW_S} s (${fmtInt(flood.codes.sent ?? 0)} sent, ${fmtInt(flood.codes["4xx"] ?? 0)} got 429): ` +
    `upstream status requests ${flood.perSecond.toFixed(1)}/s vs ${quiet.perSecond.toFixed(1)}/s without (polling alone ${pollPerSecond.toFixed(1)}/s, hint budget ${HINTS_PER_SECOND}/s); ` +
    `poll cycles ${flood.cycles} vs ${quiet.cycles} (${fmtRatio(ratio(flood.cycles, quiet.cycles))})`
  );
}
