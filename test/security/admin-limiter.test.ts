/**
 * Issue 13, item 3: wrong admin credentials (a Bearer token or a session cookie on `/admin`,
 * `/admin/api/summary`, `/admin/api/user`, `/admin/events`) count in the one auth-failure
 * limiter, with every other credential check of the address: 429 once over the burst, a bounded
 * number of log lines, and the right secret still served. Before the fix, 5,000 wrong Bearer
 * guesses got 5,000 plain 403s and no log line.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { startInProcess, waitUntil, type InProcessGateway } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const TOKEN = `admin-limiter-token-${process.pid}`;
const SECRET = `admin-limiter-secret-${process.pid}`;
const BURST = 3;

const ROUTES = [
  "/admin",
  "/admin/api/summary",
  "/admin/api/user?email=a@example.com",
  "/admin/events",
  "/admin/api/providers",
  "/admin/api/history",
];
const WRONG: Record<string, (n: number) => Record<string, string>> = {
  bearer: (n) => ({ Authorization: `Bearer wrong-admin-guess-${n}` }),
  cookie: (n) => ({ Cookie: `op_admin=${Date.now()}.forged-session-${n}` }),
};

describe("admin credentials and the auth-failure limiter", () => {
  let sim: MattermostSimulator;
  let gw: InProcessGateway;
  /** Each case comes from its own address (X-Forwarded-For from the trusted loopback proxy). */
  let nextAddress = 1;
  const address = () => `10.13.0.${nextAddress++}`;
  const get = (path: string, from: string, headers: Record<string, string> = {}) =>
    fetch(`${gw.url}${path}`, { headers: { "X-Forwarded-For": from, ...headers }, redirect: "manual" });
  /** Log lines of one event from one address (admin lines name the port too: `address:port`). */
  const linesFor = (event: string, from: string) =>
    gw.lines.filter(
      (l) => l.event === event && typeof l.remote === "string" && l.remote.replace(/:\d+$/, "") === from,
    ).length;

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 5, seed: 3 });
    await sim.start(0, "127.0.0.1");
    gw = await startInProcess(sim, TOKEN, SECRET, {
      PRESENCE_AUTH_FAILURE_BURST: String(BURST),
      PRESENCE_AUTH_FAILURE_WINDOW_MS: "600000",
      PRESENCE_TRUSTED_PROXIES: "127.0.0.1",
    });
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
  });
  after(async () => {
    await gw?.stop();
    await sim?.stop();
  });

  for (const route of ROUTES) {
    for (const [kind, headers] of Object.entries(WRONG)) {
      test(`a wrong ${kind} on ${route.split("?")[0]} is counted: 429 past the burst, bounded log lines`, async () => {
        const from = address();
        for (let i = 0; i < BURST; i++) {
          const res = await get(route, from, headers(i));
          assert.equal(res.status, 403, `guess ${i + 1} of ${BURST}`);
          await res.body?.cancel();
        }
        for (let i = 0; i < 3; i++) {
          const res = await get(route, from, headers(BURST + i));
          assert.equal(res.status, 429, "over the burst");
          assert.ok(Number(res.headers.get("retry-after")) >= 1);
          assert.equal(((await res.json()) as { error: { code: string } }).error.code, "auth_rate_limited");
        }
        assert.equal(linesFor("admin_refused", from), BURST, "one warning per wrong guess under the burst");
        assert.equal(linesFor("auth_rate_limited", from), 1, "then one line for the window");
      });
    }
  }

  test("an address limited on /admin is limited everywhere; the right secret is still served", async () => {
    const from = address();
    for (let i = 0; i <= BURST; i++) await (await get("/admin/api/summary", from, WRONG.bearer!(i))).text();
    const wrongStatus = await get(`${BASE}/status?secret=wrong-secret-guess`, from);
    assert.equal(wrongStatus.status, 429, "a wrong secret on the compat API");
    await wrongStatus.text();
    const wrongV2 = await get("/api/v2/presence", from, { Authorization: "Bearer wrong-v2-guess" });
    assert.equal(wrongV2.status, 429, "a wrong Bearer on API v2");
    await wrongV2.text();

    const status = await get(`${BASE}/status?secret=${encodeURIComponent(SECRET)}`, from);
    assert.equal(status.status, 200, "the right secret on /status");
    await status.text();
    const summary = await get("/admin/api/summary", from, { Authorization: `Bearer ${SECRET}` });
    assert.equal(summary.status, 200, "the right admin token");
    await summary.text();
  });

  test("wrong secrets elsewhere limit the admin routes too", async () => {
    const from = address();
    for (let i = 0; i < BURST; i++) await (await get(`${BASE}/status?secret=guess-${i}`, from)).text();
    const res = await get("/admin/api/user?email=x", from, WRONG.cookie!(0));
    assert.equal(res.status, 429);
    await res.text();
  });

  test("a request without any credential (a first visit) is not a guess: never 429", async () => {
    const from = address();
    for (let i = 0; i < BURST * 2; i++) {
      const res = await get(i % 2 ? "/admin" : "/admin/api/summary", from);
      assert.equal(res.status, 403);
      await res.text();
    }
    assert.equal(linesFor("admin_refused", from), 0);
  });
});
