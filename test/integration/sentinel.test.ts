import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, runCli, type LogLine } from "../helpers/gateway-process.js";
import { expectedStatuses, storeDiff, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import { REDIS_URL, dropPrefix, uniquePrefix } from "../helpers/redis.js";
import { Redis } from "ioredis";
import { SENTINEL_MASTER, SentinelCluster, sentinelMissing } from "../helpers/sentinel.js";

const TOKEN = `tok-${process.pid}-sentinel`;
const SECRET = `sec-${process.pid}-sentinel`;
const TTL_MS = 2000;
const PREFIX = "op-test-sentinel";

// CI installs redis-sentinel; elsewhere a machine without it skips, saying why.
const missing = process.env.CI ? undefined : sentinelMissing();

/** [start, end) of each leadership of one replica, from its leader_acquired/leader_lost lines. */
function leaderships(gw: GatewayProcess, until: number): [number, number][] {
  const out: [number, number][] = [];
  let since: number | undefined;
  for (const l of gw.logs) {
    const t = Date.parse(String(l.time));
    if (l.event === "leader_acquired") since = t;
    if (l.event === "leader_lost" && since !== undefined) {
      out.push([since, t]);
      since = undefined;
    }
  }
  if (since !== undefined) out.push([since, until]);
  return out;
}

const isLeader = (gw: GatewayProcess): boolean =>
  gw.logs.filter((l: LogLine) => l.event === "leader_acquired" || l.event === "leader_lost").at(-1)?.event ===
  "leader_acquired";

function flip(sim: MattermostSimulator, count: number, offset: number): void {
  const users = sim
    .listUsers()
    .filter((u) => u.delete_at === 0 && u.email && !u.is_bot)
    .slice(offset, offset + count);
  for (const u of users) {
    const status: SimStatus = sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
    sim.setStatus(u.id, status);
  }
}

describe("Redis Sentinel failover under two replicas", { skip: missing }, () => {
  let sim: MattermostSimulator;
  let cluster: SentinelCluster;
  const gws: GatewayProcess[] = [];
  const providers: FakeProvider[] = [];

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 120, seed: 31 });
    await sim.start(0, "127.0.0.1");
    cluster = await SentinelCluster.start();
    for (let i = 0; i < 2; i++) {
      const gw = await GatewayProcess.start({
        MATTERMOST_URL: sim.url,
        MATTERMOST_TOKEN: TOKEN,
        PRESENCE_SECRET: SECRET,
        PRESENCE_POLL_INTERVAL_MS: "300",
        PRESENCE_DIRECTORY_REFRESH_MS: "5000",
        PRESENCE_BACKOFF_MAX_MS: "1000",
        PRESENCE_KEEPALIVE_MS: "60000",
        // One form each, so both are exercised against real sentinels.
        ...(i === 0
          ? { REDIS_SENTINELS: cluster.sentinelList, REDIS_SENTINEL_NAME: SENTINEL_MASTER }
          : { REDIS_URL: `redis+sentinel://${cluster.sentinelList}/${SENTINEL_MASTER}` }),
        PRESENCE_REDIS_PREFIX: PREFIX,
        PRESENCE_LEADER_TTL_MS: String(TTL_MS),
      });
      gws.push(gw);
    }
    for (const gw of gws) {
      await waitUntil(
        async () => (await fetch(`${gw.url}/readyz`).catch(() => undefined))?.status === 200,
        20_000,
        "replica ready",
      );
      const p = new FakeProvider(gw.url, SECRET);
      await p.loadStatus();
      await p.connect();
      providers.push(p);
    }
  });

  after(async () => {
    for (const p of providers) p.ws?.terminate();
    for (const gw of gws) await gw.stop();
    await cluster?.stop();
    await sim?.stop();
  });

  test("the master is killed: Sentinel promotes the replica, the gateway follows with one leader, providers keep getting changes", async (t) => {
    flip(sim, 10, 0);
    const want = () => expectedStatuses(sim);
    for (const p of providers) {
      await waitUntil(() => storeDiff(p, want()).length === 0, 15_000, "providers before the failover");
    }
    await waitUntil(() => gws.filter(isLeader).length === 1, 10_000, "one leader");

    const killedAt = Date.now();
    const { old, now } = await cluster.killMaster();
    assert.notEqual(old, now);
    const promotedAt = Date.now();
    // Changes while the replicas move to the promoted Redis, and after.
    flip(sim, 15, 10);
    for (const p of providers) {
      await waitUntil(() => storeDiff(p, want()).length === 0, 45_000, "providers after the failover");
    }
    t.diagnostic(
      `measured: Sentinel named the replica ${promotedAt - killedAt} ms after the SIGKILL; providers had ` +
        `the changes made then ${Date.now() - promotedAt} ms later`,
    );
    flip(sim, 15, 40);
    for (const p of providers) {
      await waitUntil(() => storeDiff(p, want()).length === 0, 20_000, "providers after a later change");
    }
    await waitUntil(() => gws.filter(isLeader).length === 1, 10_000, "one leader after the failover");

    // Never two leaders at once, as the replicas' own logs tell it.
    const end = Date.now();
    const [a, b] = gws.map((gw) => leaderships(gw, end)) as [[number, number][], [number, number][]];
    for (const [s1, e1] of a) {
      for (const [s2, e2] of b) assert.ok(e1 <= s2 || e2 <= s1, `overlapping leaders: ${[s1, e1, s2, e2]}`);
    }
    // The stream on the promoted Redis: every change numbered once, in order.
    const master = await cluster.master();
    try {
      const entries = await master.xrange(`${PREFIX}:changes`, "-", "+");
      assert.ok(entries.length > 0, "the new leader published on the promoted Redis");
      const seqs = entries.flatMap(([, fields]) =>
        (JSON.parse(fields[1]!) as { changes: [number][] }).changes.map((c) => c[0]),
      );
      for (let i = 1; i < seqs.length; i++)
        assert.ok(seqs[i]! > seqs[i - 1]!, `seq ${seqs[i]} after ${seqs[i - 1]}`);
    } finally {
      master.disconnect();
    }
    for (const p of providers) assert.deepEqual(p.violations, []);
    for (const p of providers) assert.equal(p.ws?.readyState, 1, "the provider's socket stayed open");
  });
});

describe("a leader elected after batches were lost with the old Redis", () => {
  const prefix = uniquePrefix("seen");
  let sim: MattermostSimulator;
  const gws: GatewayProcess[] = [];
  const env = () => ({
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_POLL_INTERVAL_MS: "300",
    REDIS_URL,
    PRESENCE_REDIS_PREFIX: prefix,
    PRESENCE_LEADER_TTL_MS: String(TTL_MS),
  });

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 32 });
    await sim.start(0, "127.0.0.1");
  });

  after(async () => {
    for (const gw of gws) await gw.stop();
    await sim.stop();
    await dropPrefix(REDIS_URL, prefix);
  });

  test("numbers its changes past the highest seq a replica reported, never reusing one", async () => {
    const first = await GatewayProcess.start(env());
    gws.push(first);
    await first.waitFor((l) => l.event === "leader_acquired", 15_000);
    await waitUntil(
      async () => (await fetch(`${first.url}/readyz`).catch(() => undefined))?.status === 200,
      15_000,
      "first replica ready",
    );
    await first.stop();
    // What replicas report when they reconnect to a promoted Redis that lacks the old
    // leader's last batches: they had seen numbers this Redis never got.
    const redis = new Redis(REDIS_URL);
    const seen = 5000;
    try {
      await redis.set(`${prefix}:seen`, String(seen));
      const second = await GatewayProcess.start(env());
      gws.push(second);
      const renumbered = await second.waitFor((l) => l.event === "leader_renumbered", 15_000);
      assert.equal(renumbered.seen, seen);
      await waitUntil(
        async () => (await fetch(`${second.url}/readyz`).catch(() => undefined))?.status === 200,
        15_000,
        "second replica ready",
      );
      flip(sim, 5, 0);
      const p = new FakeProvider(second.url, SECRET);
      await p.loadStatus();
      await p.connect();
      try {
        flip(sim, 5, 10);
        await waitUntil(() => storeDiff(p, expectedStatuses(sim)).length === 0, 15_000, "provider converged");
      } finally {
        p.ws?.terminate();
      }
      // The provider can converge before the leader's stream write (queued behind its state
      // write) lands in Redis: wait for the entries rather than read them once.
      let after: [string, string[]][] = [];
      await waitUntil(
        async () => {
          const entries = await redis.xrange(`${prefix}:changes`, "-", "+");
          after = entries.filter(([id]) => Number(id.split("-")[0]) > 0);
          return after.length > 0;
        },
        15_000,
        "the new leader published",
      );
      for (const [id] of after) assert.ok(Number(id.split("-")[0]) > seen, `entry ${id} reuses a number`);
    } finally {
      redis.disconnect();
    }
  });
});

describe("Sentinel settings at start", () => {
  test("unreachable sentinels are a startup error naming REDIS_SENTINELS (exit 1)", async () => {
    const r = await runCli(["start"], {
      MATTERMOST_URL: "http://127.0.0.1:1",
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
      REDIS_SENTINELS: "127.0.0.1:1",
      REDIS_SENTINEL_NAME: "nobody",
    });
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stderr + r.stdout, /cannot reach Redis through REDIS_SENTINELS/);
  });

  test("a bad sentinel list is a configuration error naming the key (exit 2)", async () => {
    const r = await runCli(["start"], {
      MATTERMOST_URL: "http://127.0.0.1:1",
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      REDIS_SENTINELS: "127.0.0.1",
      REDIS_SENTINEL_NAME: "m",
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /REDIS_SENTINELS \(--redis-sentinels\): expected host:port/);
  });
});
