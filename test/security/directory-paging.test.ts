/**
 * Issue 13, item 4: directory paging had no end. An upstream (or a proxy that drops the query
 * string) answering the same 200 users for every `page` made the gateway send ~1,000 requests/s
 * to Mattermost for 40 s and grow to 2.26 GB (`directory_refreshed users:8653800`). Each refresh
 * now reads `/users/stats` and stops at a page that brings no new user, or past the pages the
 * stats allow: one error line, backoff, and the last good directory keeps serving.
 */
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { MAX_USERS_PER_PAGE, type DirectoryUser } from "../../src/mattermost/client.js";
import { FALLBACK_MAX_PAGES, maxPagesFor, readDirectory } from "../../src/mattermost/directory.js";
import { UpstreamError } from "../../src/mattermost/errors.js";
import { MattermostSimulator, type Fault } from "../../src/simulator/index.js";
import { startInProcess, waitUntil, type Line } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-paging`;
const SECRET = `sec-${process.pid}-paging-0123456789`;
const FAST = {
  PRESENCE_POLL_INTERVAL_MS: "250",
  PRESENCE_DIRECTORY_REFRESH_MS: "1000",
  PRESENCE_BACKOFF_MAX_MS: "400",
  PRESENCE_REQUEST_TIMEOUT_MS: "2000",
};
/** Far beyond what a bounded refresh sends, reached within seconds by paging that never ends. */
const RUNAWAY = 200;

const statusUrl = (url: string): string => `${url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`;
const paging = (lines: readonly Line[]): Line[] =>
  lines.filter((l) => l.event === "upstream_failed" && l.kind === "endless-paging");

/**
 * Starts a gateway on a directory of `users` (+ the bot), injects `fault` once it is ready, and
 * checks that every refresh stays within `pagesPerRefresh` pages, that one error line says why,
 * and that the last directory keeps serving; then heals.
 */
async function runaway(t: TestContext, users: number, fault: Fault, pagesPerRefresh: number): Promise<void> {
  const sim = new MattermostSimulator({ token: TOKEN, users, seed: 4 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await startInProcess(sim, TOKEN, SECRET, FAST);
  t.after(() => gw.stop());
  await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  const before = await (await fetch(statusUrl(gw.url))).text();
  const known = gw.gateway.snapshot.userIds().length;

  sim.resetStats();
  sim.setFault(fault);
  const health = gw.gateway.sync.health;
  const pages = (): number => sim.stats.requests.users ?? 0;
  const refreshes = (): number => sim.stats.requests["users/stats"] ?? 0;
  // Bounded either way: three refreshes refused (the fix), or paging that runs away.
  await waitUntil(
    () => (health.consecutiveFailures >= 3 && refreshes() >= 3) || pages() > RUNAWAY,
    20_000,
    "refusals or a runaway",
  );
  const [n, read] = [refreshes(), pages()];
  t.diagnostic(`${read} pages over ${n} refreshes (${health.consecutiveFailures} failed)`);
  assert.ok(read <= RUNAWAY, `paging ended, got ${read} pages`);
  // One refresh may have read /users/stats before resetStats and its pages after.
  assert.ok(read <= (n + 1) * pagesPerRefresh, `at most ${pagesPerRefresh} pages a refresh`);

  const lines = paging(gw.lines);
  assert.equal(lines.filter((l) => l.level === "error").length, 1, "one error line for the series");
  assert.equal(lines[0]!.endpoint, "users");
  assert.match(health.lastError ?? "", /directory not refreshed/);
  assert.equal(gw.gateway.snapshot.userIds().length, known, "the last good directory");
  assert.equal((await fetch(`${gw.url}/readyz`)).status, 200);
  assert.equal(await (await fetch(statusUrl(gw.url))).text(), before, "served byte for byte");

  sim.setFault(null);
  await waitUntil(() => health.consecutiveFailures === 0, 10_000, "recovery");
  assert.equal(gw.gateway.snapshot.userIds().length, known);
}

test("an upstream that ignores `page`: the second page repeats the first and the refresh stops there", async (t) => {
  // More users than a page, so that every page is full.
  await runaway(t, 250, { kind: "ignore-page" }, 2);
});

test("pages that never end: at most the pages /users/stats allows, plus a margin", async (t) => {
  // 30 users and the bot: 31 in the stats.
  assert.equal(maxPagesFor(31), 7);
  await runaway(t, 30, { kind: "endless-pages" }, maxPagesFor(31));
});

/** A client whose pages never end (every page new users); stats as given. */
function endlessClient(stats: () => Promise<number>) {
  let pages = 0;
  return {
    get pages() {
      return pages;
    },
    getTotalUsers: stats,
    getActiveUsers: async (page: number): Promise<DirectoryUser[]> => {
      // Paging that does not stop fails here, in bounded time.
      if (++pages > 1000) throw new Error("paging did not stop");
      return Array.from({ length: MAX_USERS_PER_PAGE }, (_, i) => ({
        id: `u${String(page * MAX_USERS_PER_PAGE + i).padStart(25, "0")}`,
        username: `u${page}.${i}`,
        email: `u${page}.${i}@example.com`,
        isBot: false,
      }));
    },
  };
}

const isPaging = (err: unknown): boolean => err instanceof UpstreamError && err.kind === "endless-paging";

test("without /users/stats, a fixed cap: never more pages than it, nor when the stats say more", async () => {
  assert.equal(maxPagesFor(undefined), FALLBACK_MAX_PAGES);
  assert.equal(maxPagesFor(1e12), FALLBACK_MAX_PAGES);
  // The same paths with a small cap (the real one is 500,000 users' worth of pages).
  const cap = 40;
  const unavailable = endlessClient(() =>
    Promise.reject(new UpstreamError("bad-request", "users/stats: HTTP 404", "users/stats", 404)),
  );
  await assert.rejects(readDirectory(unavailable, cap), isPaging);
  assert.equal(unavailable.pages, cap);
  const huge = endlessClient(async () => 1e12);
  await assert.rejects(readDirectory(huge, cap), isPaging);
  assert.equal(huge.pages, cap);
});

test("a 401 or 429 on /users/stats fails the refresh before any page", async () => {
  for (const kind of ["unauthorized", "rate-limited"] as const) {
    const client = endlessClient(() => Promise.reject(new UpstreamError(kind, kind, "users/stats")));
    await assert.rejects(readDirectory(client), (err) => err instanceof UpstreamError && err.kind === kind);
    assert.equal(client.pages, 0);
  }
});

test("a user who moves to the next page while pages are read is kept once, and paging goes on", async () => {
  const user = (n: number): DirectoryUser => ({
    id: `u${String(n).padStart(25, "0")}`,
    username: `u${n}`,
    email: `u${n}@example.com`,
    isBot: false,
  });
  // Someone sorted before everyone arrived after page 0 was read: user 199 is shown again.
  const pages = [
    Array.from({ length: 200 }, (_, i) => user(i)),
    Array.from({ length: 200 }, (_, i) => user(199 + i)),
    [user(399), user(400)],
  ];
  const client = {
    getTotalUsers: async () => 401,
    getActiveUsers: async (page: number) => pages[page] ?? [],
  };
  const dir = await readDirectory(client);
  assert.equal(dir.users.length, 401);
  assert.equal(new Set(dir.users.map((u) => u.id)).size, 401);
  assert.equal(dir.pages, 3);
});
