/**
 * Upstream faults (issue 5, point 1): each fault injected into the simulator while providers are
 * connected; during it the last snapshot keeps serving, and after it every provider's store equals
 * Mattermost's. The keepalive is set far beyond the tests' length, so convergence can only come from
 * change messages (the keepalive would otherwise repair a lost change and hide it).
 */
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import {
  STATUSES,
  assertConverged,
  sleep,
  startInProcess,
  waitUntil,
  type InProcessGateway,
  type Line,
} from "../helpers/in-process.js";
import { nthEvent, record } from "../helpers/events.js";
import { BASE, FakeProvider } from "../helpers/provider.js";
import type { SyncEvent } from "../../src/mattermost/sync.js";

const TOKEN = `tok-${process.pid}-faults-up`;
const SECRET = `secret-${process.pid}-faults-up`;

/** Settings shared by these tests: fast polls, no keepalive repair within a test's length. */
const FAST = {
  PRESENCE_POLL_INTERVAL_MS: "250",
  PRESENCE_DIRECTORY_REFRESH_MS: "1000",
  PRESENCE_KEEPALIVE_MS: "600000",
  PRESENCE_BACKOFF_MAX_MS: "400",
  PRESENCE_REQUEST_TIMEOUT_MS: "1000",
};

let seed = 100;
async function simulator(t: TestContext, users = 60): Promise<MattermostSimulator> {
  const sim = new MattermostSimulator({ token: TOKEN, users, seed: seed++ });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  return sim;
}

async function gateway(
  t: TestContext,
  sim: MattermostSimulator,
  env: Record<string, string> = {},
): Promise<InProcessGateway> {
  const gw = await startInProcess(sim, TOKEN, SECRET, { ...FAST, ...env });
  t.after(() => gw.stop());
  return gw;
}

/** Providers that read /status and hold /ws, as deployed desktops do. */
async function providers(t: TestContext, url: string, n = 2): Promise<FakeProvider[]> {
  const out: FakeProvider[] = [];
  for (let i = 0; i < n; i++) {
    const p = new FakeProvider(url, SECRET);
    t.after(() => p.close());
    await p.loadStatus();
    await p.connect();
    out.push(p);
  }
  return out;
}

async function ready(url: string): Promise<boolean> {
  return (await fetch(`${url}/readyz`)).status === 200;
}

const statusUrl = (url: string): string => `${url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`;

/** Moves `n` active non-bot users (from `offset`) to another status; returns them. */
let churnRound = 0;
function churn(sim: MattermostSimulator, n: number, offset = 0) {
  churnRound++;
  const users = sim
    .listUsers()
    .filter((u) => u.delete_at === 0 && !u.is_bot && u.email)
    .slice(offset, offset + n);
  for (const [i, u] of users.entries()) {
    const now = sim.getStatus(u.id);
    const next = STATUSES.filter((s) => s !== now)[(i + churnRound) % 3]!;
    sim.setStatus(u.id, next);
  }
  return users;
}

/** The `n`-th poll cycle `gw` ends from now on that satisfies `pred`. */
const cycles = (gw: InProcessGateway, n: number, pred: (e: SyncEvent) => boolean, what: string) =>
  nthEvent<SyncEvent>(
    (fn) => gw.gateway.sync.onEvent(fn),
    n,
    (e) => e.kind === "cycle" && pred(e),
    what,
  );

const failures = (lines: readonly Line[], kind?: string): Line[] =>
  lines.filter((l) => l.event === "upstream_failed" && (kind === undefined || l.kind === kind));

const totalRequests = (sim: MattermostSimulator): number =>
  Object.values(sim.stats.requests).reduce((a, b) => a + b, 0);

const newestRequestAt = (sim: MattermostSimulator): number =>
  Math.max(0, ...Object.values(sim.stats.lastRequestAt));

describe("upstream faults", () => {
  test("Mattermost down at start: the process keeps running not ready, then becomes ready and serves (real CLI)", async (t) => {
    const sim = await simulator(t);
    sim.setFault({ kind: "down" });
    const gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      ...FAST,
    });
    t.after(() => gw.stop());
    // Several failed cycles, and the process is still there: no crash loop.
    await waitUntil(() => failures(gw.logs).length >= 3, 10_000, "three failed cycles");
    assert.equal(gw.child.exitCode, null, "still running");
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    const readyz = await fetch(`${gw.url}/readyz`);
    assert.equal(readyz.status, 503);
    assert.equal(((await readyz.json()) as { error: { code: string } }).error.code, "not_ready");
    assert.equal((await fetch(statusUrl(gw.url))).status, 503);
    // Only the first failure of a series is a warning; the rest are debug lines.
    assert.equal(failures(gw.logs).filter((l) => l.level === "warn").length, 1);

    sim.setFault(null);
    await waitUntil(() => ready(gw.url), 10_000, "ready once Mattermost is back");
    await gw.waitFor((l) => l.event === "upstream_recovered");
    const ps = await providers(t, gw.url);
    churn(sim, 10);
    await assertConverged(sim, ps);
    assert.equal(await gw.stop(), 0);
  });

  test("down mid-run: the last snapshot keeps serving, retries stay within the backoff cap, every change made meanwhile arrives", async (t) => {
    const sim = await simulator(t);
    const gw = await gateway(t, sim);
    await waitUntil(() => ready(gw.url), 10_000, "ready");
    const ps = await providers(t, gw.url);
    const before = await (await fetch(statusUrl(gw.url))).text();

    sim.setFault({ kind: "down" });
    const failedBefore = failures(gw.lines).length;
    // Uncapped, twelve consecutive failures would take minutes of backoff; capped at 400 ms, a few seconds.
    await waitUntil(
      () => failures(gw.lines).some((l) => (l.failures as number) >= 12),
      15_000,
      "twelve consecutive failed cycles (the backoff cap)",
    );
    assert.ok(failures(gw.lines).length - failedBefore >= 12);
    const during = await fetch(statusUrl(gw.url));
    assert.equal(during.status, 200, "the last snapshot keeps serving");
    assert.equal(await during.text(), before);

    // Everything that can happen during an outage: status changes, a new user, a deactivation,
    // an email change.
    churn(sim, 15);
    const active = sim.listUsers().filter((u) => u.delete_at === 0 && !u.is_bot && u.email);
    const newcomer = sim.addUser({ username: "zz.outage", email: "zz.outage@example.com", status: "dnd" });
    const leaver = active.at(-1)!;
    sim.deactivateUser(leaver.id);
    const mover = active.at(-2)!;
    sim.updateUser(mover.id, { email: "moved.during.outage@example.com" });

    sim.setFault(null);
    await assertConverged(sim, ps);
    for (const p of ps) {
      assert.equal(p.store.get(newcomer.email), "dnd");
      assert.equal(p.store.get(leaver.email), "offline");
      assert.equal(p.store.get(mover.email), "offline", "the old address goes offline");
    }
    await waitUntil(() => ready(gw.url), 5000, "ready");
    assert.ok(gw.lines.some((l) => l.event === "upstream_recovered"));
  });

  test("429: no request before Retry-After expires, even when hinted; then everything converges", async (t) => {
    const sim = await simulator(t);
    // A backoff cap far below Retry-After: Retry-After must win.
    const gw = await gateway(t, sim, { PRESENCE_BACKOFF_MAX_MS: "200" });
    await waitUntil(() => ready(gw.url), 10_000, "ready");
    const ps = await providers(t, gw.url);

    const someone = sim.listUsers().find((u) => !u.is_bot && u.delete_at === 0)!;
    const seen = failures(gw.lines, "rate-limited").length;
    sim.setFault({ kind: "rate-limit", retryAfterSeconds: 2 });
    await waitUntil(() => failures(gw.lines, "rate-limited").length > seen, 5000, "a 429");
    // Twice: the retry after the first Retry-After is answered 429 again and must wait again.
    for (let round = 0; round < 2; round++) {
      // The request answered 429 is the newest; anything after it must wait 2 s.
      const limitedAt = newestRequestAt(sim);
      const limitedCount = totalRequests(sim);
      // A browser's status hint during the wait must not reach Mattermost either.
      const hint = await fetch(`${gw.url}${BASE}/status/publish`, {
        method: "POST",
        body: JSON.stringify({ user_id: someone.id, status: "online" }),
      });
      assert.equal(hint.status, 200);
      await waitUntil(() => totalRequests(sim) > limitedCount, 10_000, "the retry after Retry-After");
      const next = newestRequestAt(sim);
      assert.ok(
        next - limitedAt >= 2000,
        `a request ${next - limitedAt} ms after the 429, before its Retry-After of 2000 ms`,
      );
      await waitUntil(() => failures(gw.lines, "rate-limited").length > seen + round + 1, 5000, "429 again");
    }
    churn(sim, 10);
    sim.setFault(null);
    await assertConverged(sim, ps);
  });

  test("401: not ready, one clear log line naming the token, retried slowly, ready at once after a reload with the new token", async (t) => {
    const sim = await simulator(t);
    // A 60 s backoff cap: recovery within the test proves the reload itself retried.
    const gw = await gateway(t, sim, { PRESENCE_BACKOFF_MAX_MS: "60000" });
    await waitUntil(() => ready(gw.url), 10_000, "ready");
    const ps = await providers(t, gw.url);

    const newToken = `${TOKEN}-rotated`;
    const told = record<SyncEvent>((fn) => gw.gateway.sync.onEvent(fn));
    sim.setToken(newToken);
    await waitUntil(async () => !(await ready(gw.url)), 5000, "not ready");
    const readyz = (await (await fetch(`${gw.url}/readyz`)).json()) as { error: { message: string } };
    assert.match(readyz.error.message, /401|token/i);
    const rejected = gw.lines.filter((l) => l.event === "token_rejected");
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.level, "error");
    assert.match(String(rejected[0]!.msg), /MATTERMOST_TOKEN/);
    assert.ok(!JSON.stringify(gw.lines).includes(TOKEN), "the token itself is never logged");
    // Retried slowly: at the backoff cap, so nothing for the next while (not every 250 ms). The
    // sleep is the window a hammering retry would fall in, not a wait for something to happen.
    const after401 = sim.stats.requests["status/ids"] ?? 0;
    const usersAfter401 = sim.stats.requests.users ?? 0;
    await sleep(1500);
    assert.equal(sim.stats.requests["status/ids"] ?? 0, after401, "no status poll hammering a 401");
    assert.equal(sim.stats.requests.users ?? 0, usersAfter401, "no directory read hammering a 401");
    assert.equal((await fetch(statusUrl(gw.url))).status, 200, "the last snapshot keeps serving");

    churn(sim, 10);
    const recovered = cycles(gw, 1, (e) => e.kind === "cycle" && e.ok, "the cycle the reload runs");
    gw.gateway.reload({ ...gw.config, mattermostToken: newToken });
    await recovered;
    // The reload's cycle was told, so any cycle between the 401 and it would be in the record
    // (a cycle that was under way when the token changed may come first, and succeed).
    const oks = told.events.flatMap((e) => (e.kind === "cycle" ? [e.ok] : []));
    assert.deepEqual(
      oks.slice(oks.indexOf(false)),
      [false, true],
      "one failed cycle (the 401), then the reload's",
    );
    told.stop();
    await waitUntil(() => ready(gw.url), 5000, "ready right after the reload");
    await assertConverged(sim, ps);
    assert.equal(gw.lines.filter((l) => l.event === "token_rejected").length, 1);
  });

  describe("bad answers (one gateway, one fault after another)", () => {
    let sim: MattermostSimulator;
    let gw: InProcessGateway;
    let ps: FakeProvider[];

    before(async () => {
      sim = new MattermostSimulator({ token: TOKEN, users: 80, seed: 42 });
      await sim.start(0, "127.0.0.1");
      gw = await startInProcess(sim, TOKEN, SECRET, FAST);
      await waitUntil(() => ready(gw.url), 10_000, "ready");
      ps = [];
      for (let i = 0; i < 2; i++) {
        const p = new FakeProvider(gw.url, SECRET);
        ps.push(p);
        await p.loadStatus();
        await p.connect();
      }
    });

    after(async () => {
      for (const p of ps ?? []) p.close();
      await gw?.stop();
      await sim?.stop();
    });

    /** Sets `fault`, waits for the gateway to see it as `kind`, changes statuses, heals, converges. */
    async function faultThenConverge(fault: Parameters<MattermostSimulator["setFault"]>[0], kind: string) {
      const before = await (await fetch(statusUrl(gw.url))).text();
      const seen = failures(gw.lines, kind).length;
      sim.setFault(fault);
      await waitUntil(() => failures(gw.lines, kind).length > seen, 5000, `a ${kind} failure`);
      const underFault = cycles(gw, 2, (e) => e.kind === "cycle" && !e.ok, "two more failed cycles");
      const changed = churn(sim, 12, 5);
      await underFault; // the changes were there to be read, and were not
      const during = await fetch(statusUrl(gw.url));
      assert.equal(during.status, 200);
      assert.equal(await during.text(), before, "the last good snapshot is served unchanged");
      sim.setFault(null);
      await assertConverged(sim, ps);
      return changed;
    }

    test("malformed JSON", async () => {
      await faultThenConverge({ kind: "malformed" }, "malformed");
    });

    test("truncated JSON", async () => {
      await faultThenConverge({ kind: "truncated" }, "malformed");
    });

    test("5xx", async () => {
      await faultThenConverge({ kind: "http-error", status: 502 }, "server");
    });

    test("a response slower than PRESENCE_REQUEST_TIMEOUT_MS, without piling up requests", async () => {
      sim.resetStats();
      await faultThenConverge({ kind: "slow", delayMs: 3000 }, "timeout");
      assert.ok(sim.stats.statusIdsMaxInFlight <= 4, "at most PRESENCE_POLL_CONCURRENCY in flight");
    });

    test("a status value outside the known set is shown as away, with one warning", async () => {
      const warned = gw.lines.filter((l) => l.event === "unknown_status").length;
      sim.setFault({ kind: "bad-status-value", value: 'busy"<\u2028\n' });
      const everyone = () => [...ps[0]!.store.keys()];
      await waitUntil(
        () => ps.every((p) => everyone().every((e) => p.store.get(e) === "away")),
        10_000,
        "everyone away",
      );
      for (const p of ps) assert.deepEqual(p.violations, []);
      // Two more cycles that read the same value (and would warn again if each did).
      await cycles(gw, 2, (e) => e.kind === "cycle" && e.ok, "two more cycles");
      assert.equal(gw.lines.filter((l) => l.event === "unknown_status").length, warned + 1);
      const pages = (await (await fetch(statusUrl(gw.url))).json()) as { status: string }[];
      assert.ok(pages.length > 0 && pages.every((u) => u.status === "away"));
      churn(sim, 10);
      sim.setFault(null);
      await assertConverged(sim, ps);
    });
  });
});
