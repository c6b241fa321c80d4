import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, runCli, type LogLine } from "../helpers/gateway-process.js";
import { expectedStatuses, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import {
  PrivateRedis,
  REDIS_URL,
  dropPrefix,
  skipWithoutRedis,
  skipWithoutRedisServer,
  uniquePrefix,
} from "../helpers/redis.js";

const TOKEN = `tok-${process.pid}-replicas`;
const SECRET = `secret-${process.pid}-replicas`;
const POLL_MS = 500;
const TTL_MS = 2000;

const ready = async (gw: GatewayProcess) =>
  (await fetch(`${gw.url}/readyz`).catch(() => undefined))?.status === 200;
const isLeader = (gw: GatewayProcess): boolean => {
  const roles = gw.logs.filter((l) => l.event === "leader_acquired" || l.event === "leader_lost");
  return roles.at(-1)?.event === "leader_acquired";
};

/** Three replicas on one Redis and one simulated Mattermost. */
async function cluster(
  redisUrl: string,
  prefix: string,
  sim: MattermostSimulator,
  n = 3,
): Promise<GatewayProcess[]> {
  const env = {
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
    PRESENCE_DIRECTORY_REFRESH_MS: "3000",
    PRESENCE_BACKOFF_MAX_MS: "1000",
    PRESENCE_KEEPALIVE_MS: "60000",
    REDIS_URL: redisUrl,
    PRESENCE_REDIS_PREFIX: prefix,
    PRESENCE_LEADER_TTL_MS: String(TTL_MS),
  };
  const gws: GatewayProcess[] = [];
  for (let i = 0; i < n; i++) gws.push(await GatewayProcess.start(env));
  for (const gw of gws) await waitUntil(() => ready(gw), 15_000, "replica ready");
  return gws;
}

/** Providers holding every replica's /ws, each having paged /status first. */
async function providersOn(gws: GatewayProcess[]): Promise<FakeProvider[]> {
  const ps: FakeProvider[] = [];
  for (const gw of gws) {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus();
    await p.connect();
    ps.push(p);
  }
  return ps;
}

const converged = (p: FakeProvider, sim: MattermostSimulator) =>
  [...expectedStatuses(sim)].every(([email, status]) => p.store.get(email) === status);

function flip(
  sim: MattermostSimulator,
  count: number,
  offset: number,
): { email: string; status: SimStatus }[] {
  const users = sim
    .listUsers()
    .filter((u) => u.delete_at === 0 && u.email && !u.is_bot)
    .slice(offset, offset + count);
  return users.map((u) => {
    const status: SimStatus = sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
    sim.setStatus(u.id, status);
    return { email: u.email, status };
  });
}

const time = (l: LogLine) => Date.parse(String(l.time));

// Outside CI, a machine without Redis skips these suites with the reason; CI starts Redis and fails.
const noSharedRedis = await skipWithoutRedis();
const noRedisServer = skipWithoutRedisServer();

describe("several replicas on one Redis", { skip: noSharedRedis }, () => {
  let sim: MattermostSimulator;
  let gws: GatewayProcess[] = [];
  let providers: FakeProvider[] = [];
  const prefix = uniquePrefix("replicas");

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 390, seed: 21 });
    await sim.start(0, "127.0.0.1");
    gws = await cluster(REDIS_URL, prefix, sim);
    providers = await providersOn(gws);
  });

  after(async () => {
    for (const p of providers) p.close();
    for (const gw of gws) await gw.stop();
    await sim.stop();
    await dropPrefix(REDIS_URL, prefix);
  });

  test("exactly one replica leads", async () => {
    await waitUntil(() => gws.filter(isLeader).length === 1, 5000, "one leader");
  });

  test("clients on every replica receive every change", async () => {
    const changed = flip(sim, 15, 0);
    for (const p of providers) {
      await p.until(
        (pp) => changed.every((c) => pp.store.get(c.email) === c.status),
        10_000,
        "changes on a replica",
      );
      assert.deepEqual(p.violations, []);
    }
    for (const p of providers) assert.ok(converged(p, sim));
  });

  test("upstream status requests per poll cycle equal one instance's", async (t) => {
    const perCycle = Math.ceil(sim.listUsers().filter((u) => u.delete_at === 0).length / 200);
    sim.resetStats();
    const started = Date.now();
    // Eight cycles' worth of requests, however long the machine takes: three pollers get there in
    // a third of the time, which the bound below then refuses.
    await waitUntil(() => sim.stats.statusIdsRequests >= perCycle * 8, 20_000, "eight cycles of requests");
    const cycles = (Date.now() - started) / POLL_MS;
    const requests = sim.stats.statusIdsRequests;
    t.diagnostic(
      `3 replicas: ${requests} status requests in ${cycles.toFixed(1)} poll intervals (one instance: ${perCycle} per cycle)`,
    );
    // One poller: about perCycle × cycles. Three pollers would be three times that.
    assert.ok(requests <= perCycle * (cycles + 1), `${requests} requests`);
  });

  test("SIGKILL the leader: another leads within TTL + one poll interval, and changes made meanwhile reach the survivors' clients", async (t) => {
    const leaderIdx = gws.findIndex(isLeader);
    const leader = gws[leaderIdx]!;
    const survivors = gws.filter((_, i) => i !== leaderIdx);
    const survivorClients = providers.filter((_, i) => i !== leaderIdx);
    const killedAt = Date.now();
    leader.child.kill("SIGKILL");
    const changed = flip(sim, 10, 30);
    await waitUntil(() => survivors.some(isLeader), TTL_MS * 3, "a new leader");
    const newLeader = survivors.find(isLeader)!;
    const acquired = newLeader.logs.filter((l) => l.event === "leader_acquired").at(-1)!;
    for (const p of survivorClients) {
      await p.until(
        (pp) => changed.every((c) => pp.store.get(c.email) === c.status),
        15_000,
        "changes after failover",
      );
    }
    const receivedAt = Date.now();
    t.diagnostic(
      `failover: new leader ${time(acquired) - killedAt} ms after the kill (TTL ${TTL_MS}); changes made at the kill seen on survivors after ${receivedAt - killedAt} ms`,
    );
    assert.ok(
      time(acquired) - killedAt <= TTL_MS + POLL_MS + 1000,
      "took over within TTL + poll interval (+1 s scheduling slack)",
    );
    for (const p of survivorClients) assert.ok(converged(p, sim));
    gws = survivors;
    providers[leaderIdx]!.close();
    providers = survivorClients;
  });

  test("a paused leader does not keep polling once another has taken over", async () => {
    const leader = gws.find(isLeader)!;
    const other = gws.find((g) => g !== leader)!;
    leader.child.kill("SIGSTOP");
    await waitUntil(() => isLeader(other), TTL_MS * 4, "the other replica takes over");
    const takeover = time(other.logs.filter((l) => l.event === "leader_acquired").at(-1)!);
    leader.child.kill("SIGCONT");
    await leader.waitFor((l) => l.event === "leader_lost" && time(l) > takeover, 10_000);
    // After it resumed, the old leader may finish at most the cycle it was in; it starts none.
    const resumedCycles = leader.logs.filter((l) => l.event === "poll_cycle" && time(l) > takeover + POLL_MS);
    assert.deepEqual(resumedCycles, []);
    const changed = flip(sim, 5, 60);
    for (const p of providers) {
      await p.until(
        (pp) => changed.every((c) => pp.store.get(c.email) === c.status),
        10_000,
        "changes after the pause",
      );
    }
  });
});

describe("Redis restarting under the replicas", { skip: noRedisServer }, () => {
  let sim: MattermostSimulator;
  let redis: PrivateRedis;
  let gws: GatewayProcess[] = [];
  let providers: FakeProvider[] = [];

  before(async () => {
    redis = await PrivateRedis.start();
    sim = new MattermostSimulator({ token: TOKEN, users: 150, seed: 22 });
    await sim.start(0, "127.0.0.1");
    gws = await cluster(redis.url, "restart", sim, 2);
    providers = await providersOn(gws);
  });

  after(async () => {
    for (const p of providers) p.close();
    for (const gw of gws) await gw.stop();
    await sim.stop();
    await redis.kill();
  });

  test("no replica crashes; they reconnect, resync, and clients converge", async () => {
    const marks = gws.map((g) => g.logs.length);
    await redis.kill();
    const changedDuring = flip(sim, 8, 0);
    // Every replica has noticed the outage before Redis comes back.
    await Promise.all(
      gws.map((g, i) =>
        g.waitFor((l) => l.event === "redis_error" && g.logs.indexOf(l) >= marks[i]!, 15_000),
      ),
    );
    await redis.restart();
    const changedAfter = flip(sim, 8, 20);
    for (const [i, p] of providers.entries()) {
      try {
        await p.until(
          (pp) => [...changedDuring, ...changedAfter].every((c) => pp.store.get(c.email) === c.status),
          20_000,
          "convergence after the Redis restart",
        );
      } catch (err) {
        const events = gws.map((g) =>
          g.logs
            .filter(
              (l) =>
                !["ws_connect", "ws_disconnect", "poll_cycle", "upstream_request", "status_change"].includes(
                  String(l.event),
                ),
            )
            .slice(-25)
            .map((l) => `${String(l.time)} ${String(l.event)} ${String(l.msg)}`)
            .join("\n"),
        );
        throw new Error(`replica ${i}: ${(err as Error).message}\n${events.join("\n----\n")}`);
      }
      assert.ok(converged(p, sim));
    }
    for (const gw of gws) assert.equal(gw.child.exitCode, null, "still running");
    await waitUntil(() => gws.filter(isLeader).length === 1, 10_000, "one leader again");
  });
});

describe("a Redis that cannot be reached at start", () => {
  test("is a startup error naming REDIS_URL: exit 1, no port left bound", async () => {
    const r = await runCli(["start"], {
      MATTERMOST_URL: "http://127.0.0.1:9",
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      REDIS_URL: "redis://127.0.0.1:1",
      HOST: "127.0.0.1",
      PORT: "0",
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach Redis at REDIS_URL \(connect ECONNREFUSED/);
  });
});

describe("replicas with the secret from the old plugin's settings", { skip: noSharedRedis }, () => {
  const prefix = uniquePrefix("settings");
  let sim: MattermostSimulator;
  const gws: GatewayProcess[] = [];

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 23 });
    sim.setPluginSettings("com.mattermost.outlook-presence", { secret: "first-Secret-1234" });
    await sim.start(0, "127.0.0.1");
    for (let i = 0; i < 2; i++) {
      gws.push(
        await GatewayProcess.start({
          MATTERMOST_URL: sim.url,
          MATTERMOST_TOKEN: TOKEN,
          PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
          PRESENCE_DIRECTORY_REFRESH_MS: "1000",
          REDIS_URL,
          PRESENCE_REDIS_PREFIX: prefix,
          PRESENCE_LEADER_TTL_MS: String(TTL_MS),
          // The test polls with the new secret until a replica takes it: not an attack.
          PRESENCE_AUTH_FAILURE_BURST: "0",
        }),
      );
    }
    for (const gw of gws) await waitUntil(() => ready(gw), 15_000, "replica ready");
  });

  after(async () => {
    for (const gw of gws) await gw.stop();
    await sim.stop();
    await dropPrefix(REDIS_URL, prefix);
  });

  test("a regenerated secret reaches every replica, and only the leader reads Mattermost's config", async () => {
    const status = (gw: GatewayProcess, secret: string) =>
      fetch(`${gw.url}/plugins/com.mattermost.outlook-presence/api/v1/status?secret=${secret}`).then(
        (r) => r.status,
      );
    for (const gw of gws) assert.equal(await status(gw, "first-Secret-1234"), 200);
    sim.resetStats();
    sim.setPluginSettings("com.mattermost.outlook-presence", { secret: "second-Secret-5678" });
    for (const gw of gws) {
      await waitUntil(async () => (await status(gw, "second-Secret-5678")) === 200, 10_000, "the new secret");
      assert.equal(await status(gw, "first-Secret-1234"), 403);
    }
    // Several refresh intervals (1 s) pass: reads come from one replica only, not two.
    await new Promise((r) => setTimeout(r, 3000));
    const reads = sim.stats.requests.config ?? 0;
    const follower = gws.find((g) => !isLeader(g))!;
    // The follower's log is in up to a request made now: a read of its own would be logged before.
    await (await fetch(`${follower.url}/healthz?marker=settings`)).arrayBuffer();
    await follower.waitFor((l) => l.event === "http_request" && String(l.url).endsWith("marker=settings"));
    assert.ok(reads >= 1 && reads <= 6, `${reads} config reads in ~4 s with a 1 s refresh`);
    assert.equal(
      follower.logs.some((l) => l.event === "plugin_settings_changed" && l.reason === "periodic"),
      false,
      "the follower never reads the settings itself",
    );
  });
});
