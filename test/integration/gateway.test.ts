import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { expectedStatuses, waitUntil } from "../helpers/in-process.js";
import { rawGet } from "../helpers/net.js";
import { markerChange } from "../helpers/markers.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const TOKEN = `test-token-${process.pid}-${Date.now()}`;
const SECRET = `s3cret+/=${process.pid}&x-gateway`;
const POLL_MS = 500;

describe("the gateway, as the Outlook provider sees it (real CLI process against the simulator)", () => {
  let sim: MattermostSimulator;
  let gw: GatewayProcess;
  const providers: FakeProvider[] = [];
  const provider = async (): Promise<FakeProvider> => {
    const p = new FakeProvider(gw.url, SECRET);
    providers.push(p);
    return p;
  };
  /** What Mattermost holds, as the provider should show it. */
  const expected = (): Map<string, string> => expectedStatuses(sim);
  const active = () => sim.listUsers().filter((u) => u.delete_at === 0);

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 520, seed: 7 });
    await sim.start(0, "127.0.0.1");
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
      PRESENCE_DIRECTORY_REFRESH_MS: "2000",
      PRESENCE_BACKOFF_MAX_MS: "1000",
      PRESENCE_REQUEST_TIMEOUT_MS: "2000",
    });
    await gw.waitFor((l) => l.event === "directory_refreshed");
    // Ready once the first full snapshot is loaded.
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  });

  after(async () => {
    for (const p of providers) p.close();
    const code = await gw?.stop();
    await sim?.stop();
    assert.equal(code, 0, "SIGTERM ends the gateway with exit code 0");
  });

  test("the simulator has what the acceptance asks for: 500+ users, bots, deactivated, no status record", () => {
    const users = sim.listUsers();
    assert.ok(users.length >= 500);
    assert.ok(users.some((u) => u.is_bot && u.delete_at === 0));
    assert.ok(users.some((u) => u.delete_at > 0));
    assert.ok(users.some((u) => u.delete_at === 0 && sim.getStatus(u.id) === undefined));
  });

  test("/status paged until [] holds every active user (bots included) with the right email and status, by username", async () => {
    const p = await provider();
    const pages = await p.loadStatus();
    const want = expected();
    assert.equal(pages, Math.ceil(want.size / 100) + 1);
    assert.deepEqual(new Map([...p.store].sort()), new Map([...want].sort()));
    const res = await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(SECRET)}&page=0`);
    const first = (await res.json()) as { user_id: string }[];
    const byUsername = active()
      .filter((u) => u.email)
      .sort((a, b) => (a.username < b.username ? -1 : 1))
      .slice(0, 100)
      .map((u) => u.id);
    assert.deepEqual(
      first.map((u) => u.user_id),
      byUsername,
    );
  });

  test("no page parameter is page 0; a page past the end is []", async () => {
    const q = `secret=${encodeURIComponent(SECRET)}`;
    const a = await (await fetch(`${gw.url}${BASE}/status?${q}`)).text();
    const b = await (await fetch(`${gw.url}${BASE}/status?${q}&page=0`)).text();
    assert.equal(a, b);
    const past = await fetch(`${gw.url}${BASE}/status?${q}&page=999`);
    assert.equal(past.status, 200);
    assert.equal(await past.text(), "[]");
  });

  test("a provider whose server URL ends in / (so it asks for //plugins/...) is served the same", async (t) => {
    const slash = new FakeProvider(`${gw.url}/`, SECRET);
    t.after(() => slash.close());
    await slash.loadStatus();
    await slash.connect();
    const reference = new FakeProvider(gw.url, SECRET);
    await reference.loadStatus();
    assert.deepEqual([...slash.store], [...reference.store]);
  });

  test("bad requests: wrong or missing secret 403, bad page 400, JSON errors with stable codes", async () => {
    const cases: [string, number, string][] = [
      [`${BASE}/status?secret=wrong`, 403, "invalid_secret"],
      [`${BASE}/status`, 403, "invalid_secret"],
      [`${BASE}/status?secret=${encodeURIComponent(SECRET)}&page=-1`, 400, "invalid_page"],
      [`${BASE}/status?secret=${encodeURIComponent(SECRET)}&page=x`, 400, "invalid_page"],
      [`${BASE}/status?secret=${encodeURIComponent(SECRET)}&page=1.5`, 400, "invalid_page"],
      [`/nope`, 404, "not_found"],
    ];
    for (const [path, status, code] of cases) {
      const res = await fetch(gw.url + path);
      assert.equal(res.status, status, path);
      assert.equal(res.headers.get("content-type"), "application/json");
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, code, path);
      assert.ok(body.error.message.length > 0);
    }
  });

  test("a path that would resolve to another one (.., \\, %2e, %2f) is 404, never that route", async () => {
    // fetch would resolve these itself: send the request line as written, as nginx passes it on.
    const port = Number(new URL(gw.url).port);
    for (const target of [
      `${BASE}/..\\..\\..\\..\\healthz`,
      `${BASE}/../../../../healthz`,
      `${BASE}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/healthz`,
      `${BASE}/..%2F..%2F..%2F..%2Fhealthz`,
      `${BASE}/./status?secret=${encodeURIComponent(SECRET)}`,
    ]) {
      const answer = await rawGet(port, target);
      assert.match(answer, /^HTTP\/1\.1 404 /, target);
      assert.match(answer, /"not_found"/, target);
    }
    assert.match(await rawGet(port, "/healthz"), /^HTTP\/1\.1 200 /, "the route itself answers");
  });

  test("the secret works URL-encoded once more (as providers send it) and as a Bearer header", async () => {
    const twice = encodeURIComponent(encodeURIComponent(SECRET));
    assert.equal((await fetch(`${gw.url}${BASE}/status?secret=${twice}`)).status, 200);
    const bearer = await fetch(`${gw.url}${BASE}/status`, { headers: { Authorization: `Bearer ${SECRET}` } });
    assert.equal(bearer.status, 200);
  });

  test("wrong secret on /ws is refused with 403 before any WebSocket is opened", async () => {
    const ws = new WebSocket(`${gw.url.replace("http", "ws")}${BASE}/ws?secret=nope`);
    const status = await new Promise<number>((resolve, reject) => {
      ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.once("open", () => reject(new Error("opened")));
      ws.once("error", () => undefined);
    });
    ws.terminate();
    assert.equal(status, 403);
  });

  test("status changes reach a connected provider, and only {user_id,email,status} messages are sent", async (t) => {
    const p = await provider();
    await p.loadStatus();
    await p.connect();
    const targets = active()
      .filter((u) => u.email)
      .slice(0, 20);
    const cycle: SimStatus[] = ["online", "away", "dnd", "offline"];
    const latencies: number[] = [];
    for (const [i, u] of targets.entries()) {
      const current = p.store.get(u.email);
      const next = cycle.find((s) => s !== current && s !== cycle[i % 4]) ?? "dnd";
      const changedAt = Date.now();
      sim.setStatus(u.id, next);
      await p.until((pp) => pp.store.get(u.email) === next, 10_000, `${u.email} → ${next}`);
      latencies.push(Date.now() - changedAt);
    }
    latencies.sort((a, b) => a - b);
    t.diagnostic(
      `change → provider latency over ${latencies.length} changes (poll ${POLL_MS} ms): median ${latencies[latencies.length >> 1]} ms, max ${latencies.at(-1)} ms`,
    );
    assert.deepEqual(p.violations, []);
    assert.deepEqual(new Map([...p.store].sort()), new Map([...expected()].sort()));
  });

  test("a deactivated user gets exactly one offline message and leaves /status", async () => {
    const p = await provider();
    await p.loadStatus(); // as a provider starts: its socket is not resynced, so every message below is live
    await p.connect();
    const victim = active().find((u) => u.email && sim.getStatus(u.id) === "online")!;
    const marker = active().find((u) => u.email && !u.is_bot && u.id !== victim.id)!;
    await markerChange(sim, p, marker); // written after the replay of recent changes on connect
    const from = p.messages.length;
    sim.deactivateUser(victim.id);
    await p.until((pp) => pp.messages.some((m) => m.email === victim.email), 10_000, "offline message");
    // A directory refresh after it, then a poll cycle after that, whose change arrived: still one message.
    const mark = gw.logs.length;
    await gw.waitFor((l) => l.event === "directory_refreshed" && gw.logs.indexOf(l) >= mark);
    await markerChange(sim, p, marker);
    const forVictim = p.messages.slice(from).filter((m) => m.email === victim.email);
    assert.deepEqual(
      forVictim.map((m) => m.status),
      ["offline"],
    );
    const q = new FakeProvider(gw.url, SECRET);
    await q.loadStatus();
    assert.equal(q.store.has(victim.email), false);
  });

  test("a new user appears with their current status, on /ws and in /status", async () => {
    const p = await provider();
    await p.loadStatus(); // as a provider starts: no resync, so the newcomer can only come live
    await p.connect();
    const u = sim.addUser({ username: "zz.newcomer", email: "zz.newcomer@example.com", status: "dnd" });
    await p.until((pp) => pp.store.get(u.email) === "dnd", 10_000, "new user on /ws");
    const q = new FakeProvider(gw.url, SECRET);
    await q.loadStatus();
    assert.equal(q.store.get(u.email), "dnd");
  });

  test("an upstream outage keeps /status serving the last snapshot; on recovery every change made meanwhile arrives", async () => {
    const p = await provider();
    await p.loadStatus();
    await p.connect();
    const before = await (await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`)).text();
    sim.setFault({ kind: "down" });
    await gw.waitFor((l) => l.event === "upstream_failed", 10_000);
    const during = await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`);
    assert.equal(during.status, 200);
    assert.equal(await during.text(), before);
    const changed = active()
      .filter((u) => u.email)
      .slice(40, 50);
    for (const u of changed) sim.setStatus(u.id, p.store.get(u.email) === "dnd" ? "online" : "dnd");
    sim.setFault(null);
    await p.until(
      (pp) => changed.every((u) => pp.store.get(u.email) === (sim.getStatus(u.id) as string)),
      15_000,
      "changes made during the outage",
    );
    await gw.waitFor((l) => l.event === "upstream_recovered", 5000);
    assert.deepEqual(p.violations, []);
  });

  test("a provider connecting later first receives the recent changes (replay)", async () => {
    const u = active().find((x) => x.email)!;
    const next: SimStatus = sim.getStatus(u.id) === "away" ? "online" : "away";
    sim.setStatus(u.id, next);
    const watcher = await provider();
    await watcher.loadStatus();
    await watcher.connect();
    await watcher.until((pp) => pp.store.get(u.email) === next, 10_000, "live change");
    const late = await provider();
    await late.loadStatus(); // it starts now: no resync, so a message for u can only be the replay
    await late.connect();
    await late.until(
      (pp) => pp.messages.some((m) => m.email === u.email && m.status === next),
      3000,
      "replayed change",
    );
  });

  test("connect and disconnect are logged with the pool size", async () => {
    const line = await gw.waitFor((l) => l.event === "ws_connect");
    assert.equal(typeof line.sockets, "number");
  });

  test("the token and the secret never appear in any log line", () => {
    assert.ok(gw.output.length > 0);
    assert.ok(!gw.output.includes(TOKEN), "token leaked");
    assert.ok(!gw.output.includes(SECRET), "secret leaked");
    assert.ok(!gw.output.includes(encodeURIComponent(SECRET)), "encoded secret leaked");
  });
});

describe("the CLI's configuration errors", () => {
  test("bad configuration exits 2 and names every bad key", async () => {
    const r = await runCli(["start"], { MATTERMOST_URL: "not a url", PRESENCE_POLL_INTERVAL_MS: "10" });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /MATTERMOST_URL/);
    assert.match(r.stderr, /MATTERMOST_TOKEN/);
    assert.match(r.stderr, /PRESENCE_POLL_INTERVAL_MS.*at least 250/);
  });

  test("secret prints a fresh URL-safe secret of at least 32 bytes", async () => {
    const a = await runCli(["secret"]);
    const b = await runCli(["secret"]);
    assert.equal(a.code, 0);
    assert.match(a.stdout, /^[A-Za-z0-9_-]{43,}\n$/);
    assert.notEqual(a.stdout, b.stdout);
  });

  test("--help lists every setting and an unknown command exits 2", async () => {
    const h = await runCli(["--help"]);
    assert.equal(h.code, 0);
    for (const key of [
      "MATTERMOST_URL",
      "PRESENCE_SECRET",
      "PRESENCE_POLL_INTERVAL_MS",
      "PRESENCE_KEEPALIVE_MS",
    ]) {
      assert.match(h.stdout, new RegExp(key));
    }
    assert.equal((await runCli(["frobnicate"])).code, 2);
  });
});
