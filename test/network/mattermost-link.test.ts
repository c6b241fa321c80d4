import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BASE } from "../helpers/provider.js";
import { waitUntil } from "../helpers/in-process.js";
import { NetCluster, SECRET, notInside, type Replica } from "./cluster.js";
import { SIM_PORT, hostAddress } from "./topology.js";
import { Toxiproxy, toxiproxyServer } from "./toxiproxy.js";

const PROXY_PORT = 18065;
const OPEN = 1;
// CI installs Toxiproxy; elsewhere a machine without it skips, saying why.
const skip =
  notInside ?? (toxiproxyServer || process.env.CI ? undefined : "toxiproxy-server is not installed");

const M = "outlook_presence_";

describe("faults on the link between the gateway and Mattermost (Toxiproxy)", { skip }, () => {
  let proxy: Toxiproxy;
  let c: NetCluster;
  let leader: Replica;
  let offset = 0;

  before(async () => {
    proxy = await Toxiproxy.start();
    await proxy.proxy(
      "mattermost",
      `${hostAddress("ctl", "m")}:${PROXY_PORT}`,
      `${hostAddress("ctl", "m")}:${SIM_PORT}`,
    );
    c = await NetCluster.start({
      ttlMs: 3000,
      pollMs: 500,
      users: 150,
      mattermostPort: PROXY_PORT,
      env: { PRESENCE_REQUEST_TIMEOUT_MS: "5000" },
    });
    leader = await c.oneLeader();
  });

  after(async () => {
    await c?.stop();
    await proxy?.stop();
  });

  /** Every replica answers /status (from memory) and keeps its provider's socket meanwhile. */
  async function stillServing(): Promise<void> {
    for (const r of c.replicas) {
      const res = await fetch(`${r.gw.url}${BASE}/status?secret=${SECRET}&page=0`, {
        signal: AbortSignal.timeout(2000),
      });
      assert.equal(res.status, 200, `${r.host} /status`);
      assert.ok(((await res.json()) as unknown[]).length > 0);
      assert.equal(r.provider.ws?.readyState, OPEN, `${r.host} kept its provider's socket`);
    }
  }

  const flip = (n: number) => {
    c.flip(n, offset);
    offset += n;
  };

  test("2 s of latency each way: polls finish late, nothing stops serving, changes arrive", async (t) => {
    const slowBefore = await slowRequests();
    await proxy.add("mattermost", {
      name: "slow",
      type: "latency",
      stream: "downstream",
      attributes: { latency: 2000, jitter: 0 },
    });
    try {
      const at = Date.now();
      flip(10);
      await stillServing();
      await c.converged(c.replicas, 30_000, "under latency");
      t.diagnostic(`measured: providers converged ${Date.now() - at} ms after the change with 2 s latency`);
      await waitUntil(async () => (await slowRequests()) > slowBefore, 15_000, "slow answers in the metrics");
      for (const r of c.replicas) assert.ok(await c.ready(r), `${r.host} stays ready`);
    } finally {
      await proxy.remove("mattermost", "slow");
    }
    await c.assertV2(t, "2 s latency");
  });

  test("a stalled connection that never answers: polls time out and back off, metrics say so, then it recovers", async (t) => {
    await proxy.add("mattermost", {
      name: "stall",
      type: "timeout",
      stream: "downstream",
      attributes: { timeout: 0 },
    });
    let healAt = 0;
    try {
      flip(10);
      await waitUntil(
        async () => (await c.metric(leader, `${M}upstream_consecutive_failures`)) >= 2,
        30_000,
        "the leader counts failed polls",
      );
      assert.ok((await c.metric(leader, `${M}last_successful_poll_age_seconds`)) > 0);
      await stillServing();
    } finally {
      await proxy.remove("mattermost", "stall");
      healAt = Date.now();
    }
    await c.converged(c.replicas, 30_000, "after the stall");
    t.diagnostic(`measured: providers converged ${Date.now() - healAt} ms after the stall ended`);
    await waitUntil(
      async () => (await c.metric(leader, `${M}upstream_consecutive_failures`)) === 0,
      15_000,
      "failures back to 0",
    );
    await c.assertV2(t, "after the stall");
  });

  test("answers cut mid-response: the cycle fails and is retried, then everything converges", async (t) => {
    const errorsBefore = await c.metric(leader, `${M}upstream_requests_total`, 'code="error"');
    await proxy.add("mattermost", {
      name: "cut",
      type: "limit_data",
      stream: "downstream",
      attributes: { bytes: 200 },
    });
    let healAt = 0;
    try {
      flip(10);
      await waitUntil(
        async () => (await c.metric(leader, `${M}upstream_requests_total`, 'code="error"')) > errorsBefore,
        20_000,
        "cut answers counted as errors",
      );
      await stillServing();
    } finally {
      await proxy.remove("mattermost", "cut");
      healAt = Date.now();
    }
    await c.converged(c.replicas, 30_000, "after the cuts");
    t.diagnostic(`measured: providers converged ${Date.now() - healAt} ms after answers were whole again`);
    await c.assertV2(t, "after the cuts");
  });

  /** Requests to Mattermost whose answer took more than 1 s, on the leader. */
  async function slowRequests(): Promise<number> {
    const all = await c.metric(leader, `${M}upstream_request_duration_seconds_count`);
    const fast = await c.metric(leader, `${M}upstream_request_duration_seconds_bucket`, 'le="1"');
    return all - fast;
  }
});
