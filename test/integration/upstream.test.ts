import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { loadConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/gateway.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { waitUntil } from "../helpers/in-process.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-upstream`;
const SECRET = `secret-${process.pid}-upstream`;

interface Line {
  event?: string;
  [k: string]: unknown;
}

/** An in-process gateway (for upstream request counting and timer-driven behaviour). */
async function startGateway(sim: MattermostSimulator, env: Record<string, string> = {}) {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l) as Line);
      cb();
    },
  });
  const { config } = loadConfig([], {
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "debug",
    ...env,
  });
  const gateway = new Gateway(config, createLogger("debug", new SecretScrubber(), sink));
  const url = await gateway.start();
  return { gateway, url, lines };
}

describe("upstream cost", () => {
  let sim: MattermostSimulator;
  let gw: Awaited<ReturnType<typeof startGateway>>;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 1030, seed: 3 });
    await sim.start(0, "127.0.0.1");
    // A poll interval long enough that only the cycles this test runs happen.
    gw = await startGateway(sim, {
      PRESENCE_POLL_INTERVAL_MS: "3600000",
      PRESENCE_DIRECTORY_REFRESH_MS: "3600000",
    });
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
  });
  after(async () => {
    await gw.gateway.stop(1000);
    await sim.stop();
  });

  test("one poll cycle costs ceil(users / 200) status requests", async () => {
    const users = gw.gateway.snapshot.size;
    sim.resetStats();
    assert.equal(await gw.gateway.sync.runOnce(), true);
    assert.equal(sim.stats.statusIdsRequests, Math.ceil(users / 200));
    assert.ok(sim.stats.statusIdsMaxInFlight <= 4, "bounded concurrency");
  });

  test("users without a status record are asked for together, so the other requests stay in Mattermost's cache", async () => {
    const active = sim.listUsers().filter((u) => u.delete_at === 0);
    const noRecord = active.filter((u) => sim.getStatus(u.id) === undefined).length;
    assert.ok(noRecord > 0 && noRecord < 200, `users without a record: ${noRecord}`);
    // The cycle before tells the gateway who has no record (Mattermost answers them offline, last_activity_at 0).
    assert.equal(await gw.gateway.sync.runOnce(), true);
    sim.resetStats();
    assert.equal(await gw.gateway.sync.runOnce(), true);
    const requests = Math.ceil(gw.gateway.snapshot.size / 200);
    assert.equal(sim.stats.statusIdsRequests, requests, "still ceil(users / 200) requests");
    // Spread over the directory, they were in every request (each a database query in Mattermost).
    assert.ok(
      sim.stats.statusIdsMissingRecord <= Math.ceil(noRecord / 200) + 1,
      `${sim.stats.statusIdsMissingRecord} of ${requests} requests name a user without a record`,
    );
  });

  test("serving /status costs no upstream request", async () => {
    sim.resetStats();
    const p = new FakeProvider(gw.url, SECRET);
    for (let i = 0; i < 5; i++) await p.loadStatus();
    const total = Object.values(sim.stats.requests).reduce((a, b) => a + b, 0);
    assert.equal(total, 0);
  });

  test("/status answers 304 to a matching If-None-Match and gzip when asked", async () => {
    const url = `${gw.url}${BASE}/status?secret=${SECRET}&page=1`;
    const first = await fetch(url);
    const etag = first.headers.get("etag")!;
    assert.match(etag, /^"[\w-]+"$/);
    const again = await fetch(url, { headers: { "If-None-Match": etag } });
    assert.equal(again.status, 304);
    const gz = await fetch(url, { headers: { "Accept-Encoding": "gzip" } });
    assert.equal(gz.headers.get("content-encoding"), "gzip");
    assert.deepEqual(await gz.json(), await first.json());
  });
});

describe("readiness and the keepalive", () => {
  let sim: MattermostSimulator;
  let gw: Awaited<ReturnType<typeof startGateway>>;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 30, seed: 5 });
    await sim.start(0, "127.0.0.1");
    sim.setFault({ kind: "down" });
    gw = await startGateway(sim, {
      PRESENCE_POLL_INTERVAL_MS: "250",
      PRESENCE_BACKOFF_MAX_MS: "500",
      PRESENCE_KEEPALIVE_MS: "200",
    });
  });
  after(async () => {
    await gw.gateway.stop(1000);
    await sim.stop();
  });

  test("Mattermost down at start: /readyz and /status 503, /healthz 200; ready once it is back", async () => {
    await waitUntil(() => gw.lines.some((l) => l.event === "upstream_failed"), 5000, "a failed cycle");
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    const ready = await fetch(`${gw.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { error: { code: string } }).error.code, "not_ready");
    const status = await fetch(`${gw.url}${BASE}/status?secret=${SECRET}`);
    assert.equal(status.status, 503);
    sim.setFault(null);
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 5000, "ready");
  });

  test("with no change at all, each socket still gets a real current status every keepalive", async () => {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus(); // as a provider starts: its socket is not resynced, so what follows is keepalives
    await p.connect();
    const from = p.messages.length;
    await waitUntil(() => p.messages.length - from >= 4, 3000, "keepalive messages");
    const snapshot = new Map(gw.gateway.snapshot.visible().map((u) => [u.email, u.status]));
    const keepalives = p.messages.slice(from);
    for (const m of keepalives) assert.equal(m.status, snapshot.get(m.email));
    assert.ok(new Set(keepalives.map((m) => m.email)).size > 1, "round-robin over users");
    assert.deepEqual(p.violations, []);
    p.close();
  });

  test("a rejected token: not ready, one clear log line naming the token; ready again with a good token", async () => {
    sim.setToken("another-token-entirely");
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 503, 5000, "not ready");
    const rejected = gw.lines.filter((l) => l.event === "token_rejected");
    assert.equal(rejected.length, 1);
    assert.match(String(rejected[0]!.msg), /MATTERMOST_TOKEN/);
    // /status keeps serving the last snapshot while the token is fixed.
    assert.equal((await fetch(`${gw.url}${BASE}/status?secret=${SECRET}`)).status, 200);
    sim.setToken(TOKEN);
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 5000, "ready again");
  });
});

describe("a token that sees no emails", () => {
  test("is reported loudly at startup (the token's own user is the only one with an email)", async () => {
    const sim = new MattermostSimulator({
      token: TOKEN,
      users: 20,
      seed: 8,
      emailsVisible: false,
      botIsAdmin: false,
    });
    await sim.start(0, "127.0.0.1");
    const gw = await startGateway(sim, { PRESENCE_POLL_INTERVAL_MS: "250" });
    try {
      await waitUntil(
        () => gw.lines.some((l) => l.event === "emails_hidden"),
        5000,
        "the emails_hidden error",
      );
      const line = gw.lines.find((l) => l.event === "emails_hidden")!;
      assert.equal(line.level, "error");
      assert.match(String(line.msg), /ShowEmailAddress/);
    } finally {
      await gw.gateway.stop(1000);
      await sim.stop();
    }
  });
});
