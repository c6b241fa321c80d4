import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { markerChange } from "../helpers/markers.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const PLUGIN_ID = "com.mattermost.outlook-presence";
const TOKEN = `tok-${process.pid}-dropin`;
const OLD_SECRET = `old-${process.pid}-Secret+/=-dropin`;
const NEW_SECRET = `new-${process.pid}-Secret-dropin`;

async function statusCode(url: string, secret: string): Promise<number> {
  return (await fetch(`${url}${BASE}/status?secret=${encodeURIComponent(secret)}`)).status;
}

describe("settings from the old plugin's System Console configuration", () => {
  let sim: MattermostSimulator;
  let gw: GatewayProcess;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 120, seed: 11 });
    // Mattermost keeps plugin setting keys lower-case in its config.
    sim.setPluginSettings(PLUGIN_ID, { secret: OLD_SECRET, perpagestatuses: 25 });
    await sim.start(0, "127.0.0.1");
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_POLL_INTERVAL_MS: "500",
      PRESENCE_SECRET_OVERLAP_MS: "60000",
    });
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  });
  after(async () => {
    assert.equal(await gw.stop(), 0);
    await sim.stop();
  });

  test("with no PRESENCE_SECRET, providers are served with the secret from Mattermost and its page size", async () => {
    const p = new FakeProvider(gw.url, OLD_SECRET);
    const pages = await p.loadStatus();
    const res = await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(OLD_SECRET)}&page=0`);
    assert.equal(((await res.json()) as unknown[]).length, 25);
    assert.equal(pages, Math.ceil(p.store.size / 25) + 1);
    assert.equal(await statusCode(gw.url, "not-the-secret"), 403);
  });

  test("a secret regenerated in the System Console takes effect without a restart; the old one during the overlap", async () => {
    const p = new FakeProvider(gw.url, OLD_SECRET);
    await p.connect();
    sim.setPluginSettings(PLUGIN_ID, { Secret: NEW_SECRET, PerPageStatuses: 25 });
    await waitUntil(async () => (await statusCode(gw.url, NEW_SECRET)) === 200, 10_000, "the new secret");
    assert.equal(await statusCode(gw.url, OLD_SECRET), 200, "previous secret accepted during the overlap");
    assert.equal(p.ws?.readyState, p.ws?.OPEN, "connected providers stay connected");
    await gw.waitFor((l) => l.event === "plugin_settings_changed" && l.reason === "config_changed", 2000);
    p.close();
  });

  test("the secrets never appear in the logs", () => {
    for (const s of [TOKEN, OLD_SECRET, NEW_SECRET, encodeURIComponent(OLD_SECRET)]) {
      assert.ok(!gw.output.includes(s), "a secret leaked into the logs");
    }
  });
});

describe("settings from Mattermost that cannot be used stop the start with a clear error", () => {
  let sim: MattermostSimulator;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 5 });
    await sim.start(0, "127.0.0.1");
  });
  after(() => sim.stop());
  const start = () =>
    runCli(["start"], { MATTERMOST_URL: sim.url, MATTERMOST_TOKEN: TOKEN, HOST: "127.0.0.1", PORT: "0" });

  test("a token without manage_system: exit 2, says to set PRESENCE_SECRET", async () => {
    sim.setPluginSettings(PLUGIN_ID, { secret: OLD_SECRET });
    sim.setBotIsAdmin(false);
    const r = await start();
    sim.setBotIsAdmin(true);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /manage_system.*PRESENCE_SECRET/);
  });

  test("masked plugin settings: exit 2, says to set PRESENCE_SECRET to the desktops' secret", async () => {
    sim.setObfuscatePluginSettings(true);
    const r = await start();
    sim.setObfuscatePluginSettings(false);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /hides .*PRESENCE_SECRET/);
  });

  test("no plugin settings at all: exit 2", async () => {
    sim.setPluginSettings(PLUGIN_ID, undefined);
    const r = await start();
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no settings for com\.mattermost\.outlook-presence.*PRESENCE_SECRET/);
  });
});

describe("POST /status/publish: a hint, never trusted", () => {
  const SECRET = `secret-${process.pid}-hints-dropin`;
  let sim: MattermostSimulator;
  let gw: GatewayProcess;
  /*
   * Each hint on a connection of its own (`Connection: close`), as a browser's one-off POST is:
   * fetch's pool would otherwise send a POST, which it never retries, on a kept-alive connection
   * the gateway may be closing at that moment (its keep-alive timeout, 5 s). On a loaded machine
   * the test process stalls for that long between two rounds of the flood, and a hint then
   * failed with "fetch failed" (reproduced by stopping the test process for 5.5 s mid-flood).
   */
  const publish = (body: unknown) =>
    fetch(`${gw.url}${BASE}/status/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Connection: "close" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 60, seed: 13 });
    await sim.start(0, "127.0.0.1");
    // Polls far apart: a change seen within the test's waits can only have come through a hint.
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_POLL_INTERVAL_MS: "600000",
      PRESENCE_DIRECTORY_REFRESH_MS: "600000",
      PRESENCE_HINTS_PER_SECOND: "4",
      PRESENCE_HINTS_PER_ADDRESS: "50",
    });
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  });
  after(async () => {
    assert.equal(await gw.stop(), 0);
    await sim.stop();
  });
  const someone = () => sim.listUsers().find((u) => u.delete_at === 0 && u.email && !u.is_bot)!;

  test("answered as the old plugin did: 200 {status: OK}; 400 for a bad id or status", async () => {
    const u = someone();
    const ok = await publish({ user_id: u.id, status: "online" });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { status: "OK" });
    for (const [body, code] of [
      [{ user_id: "short", status: "online" }, "invalid_user_id"],
      [{ user_id: u.id, status: "busy" }, "invalid_status"],
      ["not json", "invalid_body"],
      [{ status: "online" }, "invalid_body"],
    ] as const) {
      const res = await publish(body);
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, code);
    }
  });

  test("a real change plus a hint reaches a provider long before the next poll", async (t) => {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus();
    await p.connect();
    const u = someone();
    const next: SimStatus = p.store.get(u.email) === "dnd" ? "online" : "dnd";
    const started = Date.now();
    sim.setStatus(u.id, next);
    assert.equal((await publish({ user_id: u.id, status: next })).status, 200);
    await p.until((pp) => pp.store.get(u.email) === next, 5000, "the hinted change");
    t.diagnostic(`change + hint → provider: ${Date.now() - started} ms (poll interval 600000 ms)`);
    p.close();
  });

  test("a forged hint (a status Mattermost does not hold) produces no message", async () => {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus(); // as a provider starts: its socket is not resynced, so every message below is live
    await p.connect();
    const u = someone();
    const marker = sim.listUsers().find((x) => x.delete_at === 0 && x.email && !x.is_bot && x.id !== u.id)!;
    const hint = (status: SimStatus) => publish({ user_id: marker.id, status }).then((r) => r.arrayBuffer());
    await markerChange(sim, p, marker, hint); // written after the replay on connect
    const from = p.messages.length;
    const held = sim.getStatus(u.id);
    const forged = held === "dnd" ? "online" : "dnd";
    const before = sim.stats.statusIdsRequests;
    assert.equal((await publish({ user_id: u.id, status: forged })).status, 200);
    await waitUntil(() => sim.stats.statusIdsRequests > before, 5000, "the re-read");
    // A later hint's change arrived, after the forged one's re-read was answered: had that one made
    // a message, it would be in by now.
    await markerChange(sim, p, marker, hint);
    assert.deepEqual(
      p.messages.slice(from).filter((m) => m.email === u.email),
      [],
    );
    p.close();
  });

  test("a flood of hints from one address gets 429s and stays within the upstream budget", async (t) => {
    const users = sim.listUsers().filter((u) => u.delete_at === 0);
    const before = sim.stats.statusIdsRequests;
    const started = Date.now();
    const codes = new Map<number, number>();
    for (let round = 0; round < 20; round++) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          publish({ user_id: users[(round * 100 + i) % users.length]!.id, status: "online" }),
        ),
      );
      for (const r of batch) {
        codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
        await r.arrayBuffer();
      }
    }
    // The hints were re-read at all (the budget below would hold for a gateway that never did).
    await waitUntil(() => sim.stats.statusIdsRequests - before >= 2, 5000, "re-reads of the hints");
    const seconds = (Date.now() - started) / 1000;
    const upstream = sim.stats.statusIdsRequests - before;
    t.diagnostic(
      `2000 hints in ${seconds.toFixed(2)} s → ${JSON.stringify(Object.fromEntries(codes))}, ${upstream} status requests`,
    );
    assert.ok((codes.get(429) ?? 0) > 0, "the per-address limit answered 429");
    assert.ok((codes.get(200) ?? 0) > 0);
    // Budget: 4 requests a second, plus the one that may start at once.
    assert.ok(upstream <= Math.ceil(seconds * 4) + 1, `${upstream} upstream requests in ${seconds} s`);
  });
});
