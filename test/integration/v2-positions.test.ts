import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Redis } from "ioredis";
import type { PresenceResponse } from "../../src/http/v2/protocol.js";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { CutProxy } from "../helpers/cut-proxy.js";
import { GatewayProcess, type LogLine } from "../helpers/gateway-process.js";
import { expectedStatuses, waitUntil } from "../helpers/in-process.js";
import { REDIS_URL, dropPrefix, skipWithoutRedis, uniquePrefix } from "../helpers/redis.js";
import { StreamConn } from "../helpers/v2-stream.js";
import {
  finalView,
  lastPosition,
  orderViolations,
  positionConflicts,
  viewDiff,
} from "../helpers/v2-positions.js";

/*
 * Every (epoch, seq) an API v2 client is given names one change on every replica: a follower
 * that reloads the leader's snapshot must not number its own difference with the leader's
 * numbers, and a leader that could not write to Redis must not have its numbers reused.
 */

const TOKEN = `tok-${process.pid}-positions`;
const SECRET = `secret-${process.pid}-positions`;
const POLL_MS = 300;
const TTL_MS = 3000;

const noSharedRedis = await skipWithoutRedis();
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const isLeader = (gw: GatewayProcess): boolean =>
  gw.logs.filter((l: LogLine) => l.event === "leader_acquired" || l.event === "leader_lost").at(-1)?.event ===
  "leader_acquired";

async function presence(gw: GatewayProcess): Promise<PresenceResponse | undefined> {
  const res = await fetch(`${gw.url}/api/v2/presence`, {
    headers: { Authorization: `Bearer ${SECRET}` },
    signal: AbortSignal.timeout(3000),
  }).catch(() => undefined);
  return res?.status === 200 ? ((await res.json()) as PresenceResponse) : undefined;
}

async function setup(name: string, leaderRedisUrl?: (url: string) => string) {
  const prefix = uniquePrefix(name);
  const sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 13 });
  await sim.start(0, "127.0.0.1");
  cleanups.push(
    () => sim.stop(),
    () => dropPrefix(REDIS_URL, prefix),
  );
  const env = (url: string) => ({
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
    PRESENCE_BACKOFF_MAX_MS: "1000",
    PRESENCE_DIRECTORY_REFRESH_MS: "60000",
    REDIS_URL: url,
    PRESENCE_REDIS_PREFIX: prefix,
    PRESENCE_LEADER_TTL_MS: String(TTL_MS),
    LOG_LEVEL: "info",
  });
  const a = await GatewayProcess.start(env(leaderRedisUrl ? leaderRedisUrl(REDIS_URL) : REDIS_URL));
  cleanups.push(() => a.stop());
  await waitUntil(() => isLeader(a), 15_000, "the first replica to lead");
  await waitUntil(async () => (await presence(a)) !== undefined, 15_000, "the leader ready");
  const b = await GatewayProcess.start(env(REDIS_URL));
  cleanups.push(() => b.stop());
  await waitUntil(async () => (await presence(b)) !== undefined, 15_000, "the follower ready");
  const open = async (gw: GatewayProcess, since?: string) => {
    const conn = await StreamConn.open(gw.url, { secret: SECRET, since });
    cleanups.push(() => conn.close());
    await conn.nth("ready");
    return conn;
  };
  const users = sim.listUsers().filter((u) => u.delete_at === 0 && u.email && !u.is_bot);
  /** Toggles these users (dnd ↔ online) in Mattermost. */
  const flip = (...idx: number[]) => {
    for (const i of idx) {
      const u = users[i]!;
      sim.setStatus(u.id, (sim.getStatus(u.id) === "dnd" ? "online" : "dnd") as SimStatus);
    }
  };
  const serves = async (gw: GatewayProcess, ...idx: number[]) => {
    const p = await presence(gw);
    const got = new Map(p?.users.map((u) => [u.email, u.status]));
    return idx.every((i) => got.get(users[i]!.email) === sim.getStatus(users[i]!.id));
  };
  const sees = (conn: StreamConn, ...idx: number[]) =>
    conn.until(
      () => {
        const view = finalView(conn.messages);
        return idx.every((i) => view.get(users[i]!.email) === sim.getStatus(users[i]!.id));
      },
      15_000,
      `a client to see users ${idx.join(", ")}`,
    );
  return { prefix, sim, a, b, open, flip, serves, sees };
}

describe("API v2 positions name one change on every replica", { skip: noSharedRedis }, () => {
  test("a follower that missed batches and reloads gives its difference positions no one else uses", async () => {
    const s = await setup("pos-reload");
    const connA = await s.open(s.a);
    const connB = await s.open(s.b);
    s.flip(30);
    await s.sees(connB, 30);
    await s.sees(connA, 30);

    // The follower stops reading; batches it never sees are trimmed from the stream.
    s.b.child.kill("SIGSTOP");
    cleanups.push(async () => s.b.child.kill("SIGCONT"));
    s.flip(0);
    await waitUntil(() => s.serves(s.a, 0), 10_000, "the leader to number user 0");
    s.flip(1, 2, 3);
    await waitUntil(() => s.serves(s.a, 1, 2, 3), 10_000, "the leader to number users 1-3");
    s.flip(0); // back: the difference the follower computes will not hold it
    await waitUntil(() => s.serves(s.a, 0), 10_000, "the leader to number user 0 again");
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      await redis.xtrim(`${s.prefix}:changes`, "MAXLEN", 0);
    } finally {
      redis.disconnect();
    }
    // A directory change makes the leader rewrite its state in Redis before the entry (the
    // state it wrote last may predate what was trimmed, and a follower reloads from the state).
    const added = s.sim.addUser({ status: "online" });
    await waitUntil(
      async () => (await presence(s.a))?.users.some((u) => u.user_id === added.id) === true,
      10_000,
      "the leader to list the new user",
    );
    s.flip(5);
    await waitUntil(() => s.serves(s.a, 5), 10_000, "the leader to number user 5");
    const contAt = Date.now();
    s.b.child.kill("SIGCONT");
    await s.b.waitFor((l) => l.event === "replica_reloaded" && Date.parse(String(l.time)) >= contAt, 15_000);
    await s.sees(connB, 0, 1, 2, 3, 5);
    s.flip(6);
    await s.sees(connB, 6);
    await s.sees(connA, 6);

    const truth = expectedStatuses(s.sim);
    assert.deepEqual(positionConflicts([connA, connB]), []);
    assert.deepEqual(orderViolations(connA), []);
    assert.deepEqual(orderViolations(connB), []);
    assert.deepEqual(viewDiff(finalView(connA.messages), truth), []);
    assert.deepEqual(viewDiff(finalView(connB.messages), truth), []);
    // The follower is back in its leader's history: a position from there resumes on either.
    const pos = lastPosition(connB.messages)!;
    const resumed = await s.open(s.a, `${pos.epoch}:${pos.seq}`);
    const ready = resumed.messages.find((m) => m.type === "ready");
    assert.equal(ready?.type === "ready" && ready.resumed, true);
  });

  test("a leader cut off from Redis numbers changes it cannot publish: the next leader never reuses those positions", async () => {
    const url = new URL(REDIS_URL);
    const proxy = await CutProxy.start({ host: url.hostname, port: Number(url.port || 6379) });
    cleanups.push(() => proxy.close());
    const s = await setup("pos-deposed", (raw) => {
      const u = new URL(raw);
      u.hostname = "127.0.0.1";
      u.port = String(proxy.port);
      return u.toString();
    });
    const connA = await s.open(s.a);
    const connB = await s.open(s.b);
    s.flip(30);
    await s.sees(connA, 30);
    await s.sees(connB, 30);

    // The leader loses Redis but not Mattermost: it polls until its lease ends, numbering
    // changes its own clients get and Redis never does.
    const cutAt = Date.now();
    proxy.cutLink();
    s.flip(0, 1, 2);
    await s.sees(connA, 0, 1, 2);
    s.flip(0); // back before anyone else polls: the next leader's history differs from here on
    await s.b.waitFor(
      (l) => l.event === "leader_acquired" && Date.parse(String(l.time)) >= cutAt,
      TTL_MS * 5,
    );
    s.flip(20, 21, 22, 23);
    await s.sees(connB, 0, 1, 2, 20, 21, 22, 23);

    // A client of the deposed leader reconnects to the new one with the position it holds.
    const held = lastPosition(connA.messages)!;
    const heldView = finalView(connA.messages);
    await connA.close();
    const resumed = await s.open(s.b, `${held.epoch}:${held.seq}`);
    const truth = expectedStatuses(s.sim);
    assert.deepEqual(viewDiff(finalView(resumed.messages, heldView), truth), [], "the resumed client's view");
    assert.deepEqual(orderViolations({ start: held, messages: resumed.messages }), []);
    assert.deepEqual(positionConflicts([connA, connB, resumed]), []);

    // Healed, the old leader rejoins as a follower; its clients end with every current status.
    proxy.heal();
    await waitUntil(async () => (await presence(s.a)) !== undefined, 20_000, "the old leader ready again");
    const connA2 = await s.open(s.a);
    s.flip(7);
    await s.sees(connB, 7);
    await s.sees(connA2, 7);
    await s.sees(resumed, 7);
    const truth2 = expectedStatuses(s.sim);
    assert.deepEqual(viewDiff(finalView(connA2.messages), truth2), []);
    assert.deepEqual(positionConflicts([connA, connB, resumed, connA2]), []);
    for (const c of [connB, connA2]) assert.deepEqual(orderViolations(c), []);
  });
});
