import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Redis } from "ioredis";
import type { PresenceResponse } from "../../src/http/v2/protocol.js";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, type LogLine } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { REDIS_URL, dropPrefix, skipWithoutRedis, uniquePrefix } from "../helpers/redis.js";
import { StreamConn } from "../helpers/v2-stream.js";

const TOKEN = `tok-${process.pid}-epoch`;
const SECRET = `secret-${process.pid}-epoch`;
const POLL_MS = 300;
const TTL_MS = 2000;

function env(sim: MattermostSimulator, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
    PRESENCE_BACKOFF_MAX_MS: "1000",
    LOG_LEVEL: "info",
    ...extra,
  };
}

async function presence(gw: GatewayProcess): Promise<PresenceResponse | undefined> {
  const res = await fetch(`${gw.url}/api/v2/presence`, {
    headers: { Authorization: `Bearer ${SECRET}` },
  }).catch(() => undefined);
  return res?.status === 200 ? ((await res.json()) as PresenceResponse) : undefined;
}

/** Flips `count` users from `offset` and waits until `gw` serves all of them; its position then. */
async function flipAndSee(
  sim: MattermostSimulator,
  gw: GatewayProcess,
  count: number,
  offset: number,
): Promise<PresenceResponse> {
  const users = sim
    .listUsers()
    .filter((u) => u.delete_at === 0 && u.email && !u.is_bot)
    .slice(offset, offset + count);
  const want = new Map<string, SimStatus>();
  for (const u of users) {
    const status: SimStatus = sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
    sim.setStatus(u.id, status);
    want.set(u.email, status);
  }
  let seen: PresenceResponse | undefined;
  await waitUntil(
    async () => {
      seen = await presence(gw);
      const got = new Map(seen?.users.map((u) => [u.email, u.status]));
      return [...want].every(([email, status]) => got.get(email) === status);
    },
    15_000,
    "the gateway to serve the flipped statuses",
  );
  return seen!;
}

const streams: StreamConn[] = [];
async function resumeAt(gw: GatewayProcess, since: string | number) {
  const conn = await StreamConn.open(gw.url, { secret: SECRET, since });
  streams.push(conn);
  const ready = await conn.nth("ready");
  return { conn, ready };
}

after(async () => {
  for (const c of streams) await c.close();
});

describe("stream positions across a gateway restart (memory broker)", () => {
  test("a position from the old process is answered with a snapshot, not the new process's changes", async () => {
    const sim = new MattermostSimulator({ token: TOKEN, users: 60, seed: 5 });
    await sim.start(0, "127.0.0.1");
    const gws: GatewayProcess[] = [];
    try {
      const first = await GatewayProcess.start(env(sim));
      gws.push(first);
      await waitUntil(async () => (await presence(first)) !== undefined, 15_000, "first ready");
      const old = await flipAndSee(sim, first, 5, 0);
      assert.ok(old.seq >= 5);
      await first.stop();

      const second = await GatewayProcess.start(env(sim));
      gws.push(second);
      await waitUntil(async () => (await presence(second)) !== undefined, 15_000, "second ready");
      // The new process numbers from 1 again: run it past the old position.
      let now = await flipAndSee(sim, second, 5, 10);
      while (now.seq <= old.seq) now = await flipAndSee(sim, second, 5, 20);
      assert.notEqual(now.epoch, old.epoch, "a new process, a new epoch");

      const withEpoch = await resumeAt(second, `${old.epoch}:${old.seq}`);
      assert.equal(withEpoch.ready.resumed, false);
      assert.equal(withEpoch.ready.epoch, now.epoch);
      assert.equal(withEpoch.conn.messages[0]?.type, "snapshot");
      assert.equal(withEpoch.conn.changes().length, 0, "none of the new process's changes as a resume");
      // A client older than epochs sends the bare number: it falls inside the new numbering.
      const bare = await resumeAt(second, old.seq);
      assert.equal(bare.ready.resumed, false);
      assert.equal(bare.conn.messages[0]?.type, "snapshot");
      // Within the new process's epoch, resuming still works.
      const same = await resumeAt(second, `${now.epoch}:${old.seq}`);
      assert.equal(same.ready.resumed, true);
      assert.equal(same.conn.changes().length, now.seq - old.seq);
    } finally {
      for (const gw of gws) await gw.stop();
      await sim.stop();
    }
  });
});

const noSharedRedis = await skipWithoutRedis();
const isLeader = (gw: GatewayProcess): boolean => {
  const roles = gw.logs.filter((l: LogLine) => l.event === "leader_acquired" || l.event === "leader_lost");
  return roles.at(-1)?.event === "leader_acquired";
};

describe("stream positions across a Redis leader change", { skip: noSharedRedis }, () => {
  test("numbering continued: resumed in the same epoch; renumbered: a new epoch and a snapshot", async () => {
    const prefix = uniquePrefix("epoch");
    const sim = new MattermostSimulator({ token: TOKEN, users: 80, seed: 9 });
    await sim.start(0, "127.0.0.1");
    const redisEnv = env(sim, {
      REDIS_URL,
      PRESENCE_REDIS_PREFIX: prefix,
      PRESENCE_LEADER_TTL_MS: String(TTL_MS),
      PRESENCE_DIRECTORY_REFRESH_MS: "60000",
    });
    const gws: GatewayProcess[] = [];
    const start = async () => {
      const gw = await GatewayProcess.start(redisEnv);
      gws.push(gw);
      await waitUntil(async () => (await presence(gw)) !== undefined, 15_000, "replica ready");
      return gw;
    };
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const a = await start();
      await waitUntil(() => isLeader(a), 10_000, "the first replica to lead");
      const b = await start();

      // 1. The leader stops cleanly, handing over; the follower continues its numbering: same
      // epoch, exact resume.
      const before = await flipAndSee(sim, b, 4, 0);
      assert.equal(await a.stop(), 0);
      await waitUntil(() => isLeader(b), TTL_MS * 4, "the follower to take over");
      const after = await flipAndSee(sim, b, 4, 10);
      assert.equal(after.epoch, before.epoch, "the numbering continued");
      const resumed = await resumeAt(b, `${before.epoch}:${before.seq}`);
      assert.equal(resumed.ready.resumed, true);
      assert.equal(resumed.ready.epoch, before.epoch);
      assert.equal(resumed.conn.changes().length, resumed.ready.seq - before.seq);
      assert.ok(resumed.conn.changes().length >= 4);

      // 2. A new follower; then a leader that dies without handing over (SIGKILL): it may have
      // given its clients positions Redis never got, so the next leader starts a new epoch.
      const c = await start();
      const held = await flipAndSee(sim, c, 4, 20);
      assert.equal(held.epoch, before.epoch, "a new replica numbers in its leader's history");
      b.child.kill("SIGKILL");
      await waitUntil(() => isLeader(c), TTL_MS * 4, "the new follower to take over");
      await c.waitFor((l) => l.event === "leader_new_epoch");
      const killed = await flipAndSee(sim, c, 4, 30);
      assert.notEqual(killed.epoch, held.epoch, "a new epoch");
      const snap = await resumeAt(c, `${held.epoch}:${held.seq}`);
      assert.equal(snap.ready.resumed, false);
      assert.equal(snap.ready.epoch, killed.epoch);
      assert.equal(snap.conn.messages[0]?.type, "snapshot");

      // 3. A leader change that cannot continue the numbering even after a clean handover:
      // replicas saw batches the Redis lost (as after a failover), recorded in <prefix>:seen.
      const d = await start();
      const held2 = await flipAndSee(sim, d, 4, 40);
      assert.equal(held2.epoch, killed.epoch);
      await redis.set(`${prefix}:seen`, String(held2.seq + 1000));
      assert.equal(await c.stop(), 0);
      await waitUntil(() => isLeader(d), TTL_MS * 4, "the newest replica to take over");
      await d.waitFor((l) => l.event === "leader_renumbered");
      const renumbered = await flipAndSee(sim, d, 4, 50);
      assert.notEqual(renumbered.epoch, held2.epoch, "a new epoch");
      assert.ok(renumbered.seq > held2.seq + 1000);
      const snap2 = await resumeAt(d, `${held2.epoch}:${held2.seq}`);
      assert.equal(snap2.ready.resumed, false);
      assert.equal(snap2.ready.epoch, renumbered.epoch);
      assert.equal(snap2.conn.messages[0]?.type, "snapshot");
    } finally {
      redis.disconnect();
      for (const gw of gws) await gw.stop();
      await sim.stop();
      await dropPrefix(REDIS_URL, prefix);
    }
  });
});
