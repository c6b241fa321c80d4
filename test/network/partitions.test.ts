import assert from "node:assert/strict";
import { after, afterEach, describe, test, type TestContext } from "node:test";
import { waitUntil } from "../helpers/in-process.js";
import type { LogLine } from "../helpers/gateway-process.js";
import { NetCluster, lastRole, notInside, overlappingLeaders, type Replica } from "./cluster.js";

const TTL_MS = 3000;
const OPEN = 1;
const time = (l: LogLine) => Date.parse(String(l.time));

let cluster: NetCluster | undefined;
const start = async () => {
  cluster = await NetCluster.start({ ttlMs: TTL_MS, pollMs: 500, users: 150 });
  return cluster;
};

afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});
after(async () => cluster?.stop());

function others(c: NetCluster, r: Replica): Replica[] {
  return c.replicas.filter((x) => x !== r);
}

/** Stream numbering: each change published once, in order, whoever led. */
async function assertNumberedOnce(c: NetCluster): Promise<void> {
  const seqs = await c.streamSeqs();
  assert.ok(seqs.length > 0);
  for (let i = 1; i < seqs.length; i++)
    assert.ok(seqs[i]! > seqs[i - 1]!, `seq ${seqs[i]} after ${seqs[i - 1]}`);
}

/**
 * Cuts the leader off from Redis (not from Mattermost nor its providers) for `holdMs` after
 * another replica took over, changing statuses `rounds` times meanwhile; then heals.
 */
async function leaderCutFromRedis(t: TestContext, holdMs: number, rounds: number): Promise<void> {
  const c = await start();
  const leader = await c.oneLeader();
  const rest = others(c, leader);
  c.flip(10, 0);
  await c.converged(c.replicas, 15_000, "before the partition");
  await c.roam(leader);

  const cutAt = Date.now();
  c.cutLink(leader.host, "r");
  c.flip(10, 20);
  const lost = await leader.gw.waitFor((l) => l.event === "leader_lost" && time(l) >= cutAt, 4 * TTL_MS);
  const took = await Promise.any(
    rest.map((r) =>
      r.gw
        .waitFor((l) => l.event === "leader_acquired" && time(l) >= cutAt, 6 * TTL_MS)
        .then((l) => ({ r, l })),
    ),
  );
  await c.converged(rest, 20_000, "during the partition");
  const convergedAt = Date.now();
  // A client of the cut-off leader, holding positions it numbered and never published, resumes
  // on the new leader with since=.
  await c.roam(took.r);
  await waitUntil(async () => !(await c.ready(leader)), 4 * TTL_MS, "the cut-off replica reports not ready");
  const notReadyAt = Date.now();
  for (let i = 1; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, holdMs / rounds));
    c.flip(10, 20 + 10 * i);
  }
  if (rounds <= 1) await new Promise((r) => setTimeout(r, holdMs));
  await c.converged(rest, 20_000, "at the end of the partition");
  assert.equal(leader.provider.ws?.readyState, OPEN, "the cut-off replica kept its provider's socket");

  const healAt = Date.now();
  c.healAll();
  c.flip(10, 100);
  await c.converged(c.replicas, 30_000, "after the heal");
  const healedAt = Date.now();
  await waitUntil(() => c.ready(leader), 20_000, "the old leader ready again");
  assert.equal(lastRole(leader.gw), "leader_lost", "the old leader rejoined as a follower");
  assert.equal(c.leaders().length, 1);
  assert.deepEqual(overlappingLeaders(c.replicas), []);
  await assertNumberedOnce(c);
  for (const r of c.replicas) assert.deepEqual(r.provider.violations, []);
  await c.assertV2(t, "after the heal");
  t.diagnostic(
    `measured: leader stepped down ${time(lost) - cutAt} ms after the cut; ${took.r.host} took over after ` +
      `${time(took.l) - cutAt} ms; the others' providers converged ${convergedAt - cutAt} ms after the cut; ` +
      `the cut-off replica not ready after ${notReadyAt - cutAt} ms; every provider converged ` +
      `${healedAt - healAt} ms after the heal; ${c.replicas.reduce((n, r) => n + r.provider.messages.length, 0)} /ws messages`,
  );
}

describe("network partitions between replicas and Redis", { skip: notInside }, () => {
  test("the leader cut off from Redis but not Mattermost: steps down, a follower takes over, it rejoins as a follower", (t) =>
    leaderCutFromRedis(t, 2000, 1));

  test("a 2/1 split (the leader alone) for 30 s with changes throughout, then healed", (t) =>
    leaderCutFromRedis(t, 30_000, 6));

  test("a follower cut off from Redis: keeps its sockets, reports not ready, catches up when healed", async (t) => {
    const c = await start();
    const leader = await c.oneLeader();
    const follower = others(c, leader)[0]!;
    const rest = others(c, follower);
    c.flip(10, 0);
    await c.converged(c.replicas, 15_000, "before the partition");
    await c.roam(follower);

    const cutAt = Date.now();
    c.cutLink(follower.host, "r");
    c.flip(15, 20);
    await c.converged(rest, 15_000, "the replicas still on Redis");
    await waitUntil(
      async () => !(await c.ready(follower)),
      4 * TTL_MS,
      "the cut-off follower reports not ready",
    );
    const notReadyAt = Date.now();
    const res = await fetch(`${follower.gw.url}/readyz`);
    assert.match(JSON.stringify(await res.json()), /Redis has not answered/);
    assert.equal(follower.provider.ws?.readyState, OPEN, "the follower kept its provider's socket");
    // A client of the stale follower moves to the leader (as a load balancer would send it).
    await c.roam(leader);

    const healAt = Date.now();
    c.healAll();
    await c.converged([follower], 20_000, "the follower after the heal");
    const caughtUpAt = Date.now();
    await waitUntil(() => c.ready(follower), 20_000, "the follower ready again");
    const readyAt = Date.now();
    c.flip(10, 60);
    await c.converged(c.replicas, 15_000, "every replica after a later change");
    assert.deepEqual(c.leaders(), [leader], "the leader never changed");
    await assertNumberedOnce(c);
    await c.assertV2(t, "after the heal");
    t.diagnostic(
      `measured: follower not ready ${notReadyAt - cutAt} ms after the cut; caught up ${caughtUpAt - healAt} ms ` +
        `and ready ${readyAt - healAt} ms after the heal`,
    );
  });
});
