import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { expectedStatuses, storeDiff, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import { NetCluster, SECRET, notInside } from "./cluster.js";
import { GATEWAY_PORT, hostAddress } from "./topology.js";
import { Toxiproxy, toxiproxyServer } from "./toxiproxy.js";

const PING_MS = 2000;
const OPEN = 1;
const skip =
  notInside ?? (toxiproxyServer || process.env.CI ? undefined : "toxiproxy-server is not installed");

describe("faults on the links between desktops and the gateway", { skip }, () => {
  let proxy: Toxiproxy;
  let c: NetCluster;
  let offset = 0;

  before(async () => {
    proxy = await Toxiproxy.start();
    c = await NetCluster.start({
      ttlMs: 3000,
      pollMs: 500,
      users: 150,
      env: { PRESENCE_WS_PING_INTERVAL_MS: String(PING_MS) },
    });
  });

  after(async () => {
    await c?.stop();
    await proxy?.stop();
  });

  test("300 ms latency and 64 kbit/s to a desktop: it keeps its socket and gets every change", async (t) => {
    const gw = c.replicas[0]!;
    await proxy.proxy("desktop", "127.0.0.1:18080", `${hostAddress(gw.host, "c")}:${GATEWAY_PORT}`);
    for (const stream of ["upstream", "downstream"] as const) {
      await proxy.add("desktop", {
        name: `latency-${stream}`,
        type: "latency",
        stream,
        attributes: { latency: 300, jitter: 0 },
      });
    }
    // Toxiproxy's rate is in KB/s: 8 KB/s is 64 kbit/s.
    await proxy.add("desktop", {
      name: "narrow",
      type: "bandwidth",
      stream: "downstream",
      attributes: { rate: 8 },
    });
    const p = new FakeProvider("http://127.0.0.1:18080", SECRET);
    try {
      await p.loadStatus();
      await p.connect();
      const at = Date.now();
      c.flip(30, offset);
      offset += 30;
      await waitUntil(
        () => storeDiff(p, expectedStatuses(c.sim)).length === 0,
        30_000,
        "the slow desktop converged",
      );
      t.diagnostic(
        `measured: the desktop behind 300 ms and 64 kbit/s had 30 changes ${Date.now() - at} ms after they were made`,
      );
      assert.equal(p.ws?.readyState, OPEN);
      assert.deepEqual(p.violations, []);
    } finally {
      p.ws?.terminate();
    }
    await c.assertV2(t, "with a slow desktop");
  });

  test("desktops that vanish without a FIN are dropped by the ping, and come back to current statuses", async (t) => {
    const cutAt = Date.now();
    // Every provider of this test runs on ctl: its link to the clients' network goes.
    c.cutLink("ctl", "c");
    const dropped = await Promise.all(
      c.replicas.map((r) =>
        r.gw.waitFor((l) => l.event === "ws_dead_peer" && Date.parse(String(l.time)) >= cutAt, 4 * PING_MS),
      ),
    );
    const worst = Math.max(...dropped.map((l) => Date.parse(String(l.time)) - cutAt));
    c.flip(10, offset);
    offset += 10;
    c.healAll();
    for (const r of c.replicas) {
      r.provider.ws?.terminate();
      r.provider = new FakeProvider(r.gw.url, SECRET);
      const p = r.provider;
      // Pooled keep-alive sockets from before the cut were closed by the gateway meanwhile (its
      // FIN was lost): the first request on one fails, as a desktop's would, and is retried.
      await waitUntil(
        () =>
          p.loadStatus().then(
            () => true,
            () => false,
          ),
        10_000,
        `${r.host} /status again`,
      );
      await p.connect();
    }
    // The API v2 clients' sockets died the same way: they resume with since=, as the client does.
    for (const w of c.watchers) await w.reconnect();
    c.flip(10, offset);
    offset += 10;
    await c.converged(c.replicas, 20_000, "after the desktops came back");
    t.diagnostic(
      `measured: every replica dropped its vanished desktop within ${worst} ms (ping interval ${PING_MS} ms)`,
    );
    await c.assertV2(t, "after the desktops came back");
  });
});
