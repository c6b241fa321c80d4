import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimUser } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import { StreamConn } from "../helpers/v2-stream.js";
import type { AdminProviders } from "../../src/http/admin-providers.js";
import type { HistorySeries } from "../../src/http/admin-history.js";

const TOKEN = `admin-test-token-${process.pid}`;
const SECRET = `admin-test-secret-${process.pid}`;
const ADMIN = `admin-test-admin-${process.pid}`;
const CHROMIUM = "/usr/bin/chromium";
/** The flags the machine notes give for Chromium here (no network beyond the tests' own). */
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const PROVIDER_STATUS = (s: string | undefined): string =>
  s === undefined ? "offline" : s === "ooo" ? "away" : s;

describe("the admin page (real CLI process against the simulator)", () => {
  let sim: MattermostSimulator;
  let gw: GatewayProcess;

  /** Users the providers see, with the status they should show. */
  const visible = (): Map<string, string> =>
    new Map(
      sim
        .listUsers()
        .filter((u) => u.delete_at === 0 && u.email)
        .map((u) => [u.email, PROVIDER_STATUS(sim.getStatus(u.id))]),
    );
  /** An active user with an email who is not in `status`, to move there. */
  const someoneNot = (status: string, skip: readonly string[] = []): SimUser => {
    const u = sim
      .listUsers()
      .find(
        (x) =>
          x.delete_at === 0 &&
          x.email &&
          !x.is_bot &&
          !skip.includes(x.id) &&
          PROVIDER_STATUS(sim.getStatus(x.id)) !== status,
      );
    assert.ok(u);
    return u;
  };

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 11 });
    await sim.start(0, "127.0.0.1");
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_ADMIN_TOKEN: ADMIN,
      PRESENCE_POLL_INTERVAL_MS: "250",
      // The providers list shows the address X-Forwarded-For names when the peer is trusted.
      PRESENCE_TRUSTED_PROXIES: "127.0.0.1",
    });
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  });

  /** Waits until the gateway counts `n` providers: a socket closed by a test closes a little later. */
  const providersSettle = async (n: number): Promise<void> => {
    const auth = { headers: { Authorization: `Bearer ${ADMIN}` } };
    for (let i = 0; i < 100; i++) {
      const list = (await (await fetch(`${gw.url}/admin/api/providers`, auth)).json()) as AdminProviders;
      if (list.total === n) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`the gateway does not count ${n} providers`);
  };

  after(async () => {
    const code = await gw?.stop();
    await sim?.stop();
    assert.equal(code, 0);
    assert.doesNotMatch(gw.output, new RegExp(ADMIN), "the admin token is never logged");
  });

  test("access: the admin token once in the URL sets a cookie; nothing else opens it", async () => {
    assert.equal((await fetch(`${gw.url}/admin`)).status, 403);
    assert.equal((await fetch(`${gw.url}/admin?token=wrong`)).status, 403);
    const bySecret = await fetch(`${gw.url}/admin?token=${SECRET}`);
    assert.equal(bySecret.status, 403, "with PRESENCE_ADMIN_TOKEN set, the presence secret does not open it");
    assert.equal((await fetch(`${gw.url}/admin/api/summary`)).status, 403);
    assert.equal((await fetch(`${gw.url}/admin/events`)).status, 403);
    assert.equal((await fetch(`${gw.url}/admin/api/providers`)).status, 403);
    assert.equal((await fetch(`${gw.url}/admin/api/history`)).status, 403);
    const wrongBearer = { headers: { Authorization: `Bearer ${SECRET}` } };
    assert.equal((await fetch(`${gw.url}/admin/api/providers`, wrongBearer)).status, 403);
    assert.equal((await fetch(`${gw.url}/admin/api/history`, wrongBearer)).status, 403);

    const signIn = await fetch(`${gw.url}/admin`);
    const form = await signIn.text();
    assert.match(form, /<form id="signin"[^>]* method="get" action="\/admin">/, "signed out: a sign-in form");
    assert.match(form, /<input id="signin-token" name="token" type="password"/);
    assert.match(form, /href="\/admin\/admin.css"/, "styled like the page");
    assert.equal((await fetch(`${gw.url}/admin/admin.css`)).status, 200, "the style loads signed out");
    assert.equal((await fetch(`${gw.url}/admin/signin.js`)).status, 200);

    const login = await fetch(`${gw.url}/admin?token=${ADMIN}`, { redirect: "manual" });
    assert.equal(login.status, 303);
    assert.equal(login.headers.get("location"), "/admin", "the token leaves the address bar");
    const cookie = login.headers.get("set-cookie") ?? "";
    assert.match(cookie, /^op_admin=[^;]+; Path=\/admin; HttpOnly; SameSite=Strict/);
    assert.doesNotMatch(cookie, new RegExp(ADMIN), "the cookie does not carry the token itself");
    const session = cookie.split(";")[0]!;
    const page = await fetch(`${gw.url}/admin`, { headers: { Cookie: session } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.match(await page.text(), /Outlook presence gateway/);
    const forged = await fetch(`${gw.url}/admin`, { headers: { Cookie: "op_admin=AAAA" } });
    assert.equal(forged.status, 403);
  });

  test("summary and lookup by email, with a bearer header", async () => {
    const auth = { headers: { Authorization: `Bearer ${ADMIN}` } };
    const s = (await (await fetch(`${gw.url}/admin/api/summary`, auth)).json()) as {
      ready: boolean;
      leader: boolean;
      users: { visible: number; byStatus: Record<string, number> };
    };
    assert.equal(s.ready, true);
    assert.equal(s.leader, true);
    assert.equal(s.users.visible, visible().size);
    const u = someoneNot("none");
    const found = await fetch(
      `${gw.url}/admin/api/user?email=${encodeURIComponent(u.email.toUpperCase())}`,
      auth,
    );
    assert.equal(found.status, 200);
    assert.deepEqual(await found.json(), {
      user_id: u.id,
      username: u.username,
      email: u.email,
      status: visible().get(u.email),
      is_bot: false,
    });
    const missing = await fetch(`${gw.url}/admin/api/user?email=nobody%40nowhere.example`, auth);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "not_found");
  });

  test("the live feed is server-sent events on /admin/events; /ws still carries only statuses", async () => {
    const provider = new FakeProvider(gw.url, SECRET);
    await provider.connect();
    const ctrl = new AbortController();
    const res = await fetch(`${gw.url}/admin/events`, {
      headers: { Authorization: `Bearer ${ADMIN}` },
      signal: ctrl.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = res.body!.getReader();
    const u = someoneNot("dnd");
    sim.setStatus(u.id, "dnd");
    let text = "";
    const want = new RegExp(
      `event: change\\ndata: \\{[^\\n]*"email":"${u.email.replace(/\./g, "\\.")}","status":"dnd"`,
    );
    while (!want.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the feed ended early");
      text += Buffer.from(value).toString();
    }
    assert.match(text, /^retry: 3000\n\nevent: summary\ndata: \{/);
    ctrl.abort();
    await provider.until((p) => p.store.get(u.email) === "dnd", 10_000, "the change on /ws");
    assert.deepEqual(provider.violations, [], "nothing but statuses on the compat socket");
    provider.close();
  });

  test("one `ready` log line, at info, with the number of users served", async () => {
    const ready = await gw.waitFor((l) => l.event === "ready");
    assert.equal(ready.level, "info");
    const users = visible().size;
    assert.equal(ready.users, users);
    assert.equal(ready.pages, Math.ceil(users / 100), "of PRESENCE_PAGE_SIZE's default 100");
    assert.equal(ready.leader, true);
    assert.equal(typeof ready.startupMs, "number");
    // Later changes do not log it again: wait for one to go through first.
    const u = someoneNot("away");
    sim.setStatus(u.id, "away");
    await gw.waitFor((l) => l.event === "status_change" && l.userId === u.id);
    assert.equal(gw.logs.filter((l) => l.event === "ready").length, 1);
    assert.ok(
      gw.logs.indexOf(ready) > gw.logs.findIndex((l) => l.event === "listening"),
      "after listening: the port is open when it says ready",
    );
  });

  test("connected providers: both protocols, the forwarded address, messages sent, a filter", async () => {
    const auth = { headers: { Authorization: `Bearer ${ADMIN}` } };
    const get = async (query = ""): Promise<AdminProviders> => {
      const res = await fetch(`${gw.url}/admin/api/providers${query}`, auth);
      assert.equal(res.status, 200);
      return (await res.json()) as AdminProviders;
    };
    await providersSettle(0);
    const before = Date.now();
    const direct = new FakeProvider(gw.url, SECRET);
    const proxied = new FakeProvider(gw.url, SECRET, { forwardedFor: "10.20.30.40" });
    await direct.connect();
    await proxied.connect();
    const v2 = await StreamConn.open(gw.url, { secret: SECRET });
    try {
      await v2.until(() => v2.messages.some((m) => m.type === "ready"), 10_000, "v2 ready");
      const u = someoneNot("dnd");
      sim.setStatus(u.id, "dnd");
      await direct.until((p) => p.store.get(u.email) === "dnd", 10_000, "the change");
      await proxied.until((p) => p.store.get(u.email) === "dnd", 10_000, "the change");

      const all = await get();
      assert.equal(all.total, 3);
      assert.equal(all.matched, 3);
      assert.equal(all.limit, 500);
      const byProto = (proto: string) => all.providers.filter((p) => p.protocol === proto);
      assert.equal(byProto("compat").length, 2);
      assert.equal(byProto("v2").length, 1);
      const fwd = all.providers.find((p) => p.address === "10.20.30.40");
      assert.ok(fwd, "the address X-Forwarded-For names, the peer being a trusted proxy");
      assert.match(fwd.remote, /^10\.20\.30\.40:\d+$/);
      for (const p of all.providers) {
        assert.ok(p.connected_at >= before - 1000 && p.connected_at <= Date.now(), "connected since");
      }
      const directRow = all.providers.find((p) => p.protocol === "compat" && p.address === "127.0.0.1");
      assert.ok(directRow);
      // At least what it has received (more may be on the way: the resync of a reconnect).
      assert.ok(directRow.messages_sent >= 1, "the change counts as a message sent");
      assert.ok(
        directRow.messages_sent >= direct.messages.length,
        `${directRow.messages_sent} counted, ${direct.messages.length} received`,
      );
      const v2Row = byProto("v2")[0]!;
      assert.ok(v2Row.messages_sent >= 2, "snapshot and ready at least");

      const summary = (await (await fetch(`${gw.url}/admin/api/summary`, auth)).json()) as {
        sockets: number;
        providers: number;
      };
      assert.deepEqual([summary.sockets, summary.providers], [2, 3], "compat sockets; all providers");

      const one = await get("?address=10.20.30");
      assert.equal(one.total, 3);
      assert.equal(one.matched, 1);
      // The same row; only its count may have grown meanwhile (the reconnect's resync goes on).
      const { messages_sent: sentLater, ...later } = one.providers[0]!;
      const { messages_sent: sentBefore, ...earlier } = fwd;
      assert.deepEqual(later, earlier);
      assert.ok(sentLater >= sentBefore, `${sentLater} sent now, ${sentBefore} before`);
      const none = await get(`?address=${encodeURIComponent("192.0.2.")}`);
      assert.deepEqual([none.matched, none.providers.length, none.total], [0, 0, 3]);
    } finally {
      direct.close();
      proxied.close();
      v2.ws.terminate();
    }
  });

  test("the last hour: 60 one-minute buckets of changes and connected providers", async () => {
    const auth = { headers: { Authorization: `Bearer ${ADMIN}` } };
    const provider = new FakeProvider(gw.url, SECRET);
    await provider.connect();
    try {
      const u = someoneNot("online");
      sim.setStatus(u.id, "online");
      await provider.until((p) => p.store.get(u.email) === "online", 10_000, "the change");
      await gw.waitFor((l) => l.event === "status_change" && l.userId === u.id);
      await providersSettle(1);
      const res = await fetch(`${gw.url}/admin/api/history`, auth);
      assert.equal(res.status, 200);
      const h = (await res.json()) as HistorySeries;
      assert.equal(h.bucketMs, 60_000);
      assert.equal(h.changes.length, 60);
      assert.equal(h.providers.length, 60);
      assert.equal(h.start % 60_000, 0, "whole minutes");
      assert.ok(h.start + 60 * 60_000 > Date.now() - 1000 && h.start <= Date.now() - 59 * 60_000);
      const changes = h.changes.reduce((a, b) => a + b, 0);
      // Every change the gateway published since it started, as its own log counts them.
      const logged = gw.logs.filter((l) => l.event === "status_change").length;
      assert.ok(changes >= 1);
      assert.equal(changes, logged, "the chart counts every change published");
      assert.equal(h.providers.at(-1), 1, "sampled when asked: the one provider now connected");
    } finally {
      provider.close();
    }
  });

  const noChromium = !existsSync(CHROMIUM);
  test(
    "in headless Chromium: sign-in form, counts, live feed, providers list, chart, and no sideways scrolling at 360 px",
    { skip: noChromium && !process.env.CI ? `${CHROMIUM} is not installed` : false },
    async () => {
      assert.ok(!noChromium, `${CHROMIUM} is missing; CI installs it (.ci/run)`);
      const { chromium } = await import("playwright-core");
      const profile = mkdtempSync(join(tmpdir(), "op-admin-chromium-"));
      const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_FLAGS,
        viewport: { width: 1200, height: 820 },
      });
      await providersSettle(0);
      const provider = new FakeProvider(gw.url, SECRET, { forwardedFor: "10.9.8.7" });
      await provider.connect();
      const other = new FakeProvider(gw.url, SECRET);
      await other.connect();
      try {
        const page = context.pages()[0] ?? (await context.newPage());
        page.setDefaultTimeout(10_000);
        /** Whether the page scrolls sideways (the phone check). */
        const overflow = () =>
          page.evaluate(() => {
            // Runs in the page; the tests are compiled without the DOM's types.
            const w = globalThis as unknown as {
              innerWidth: number;
              document: { documentElement: { scrollWidth: number } };
            };
            return w.document.documentElement.scrollWidth - w.innerWidth;
          });

        // Signed out: the styled sign-in form, which also fits a phone.
        await page.setViewportSize({ width: 360, height: 740 });
        await page.goto(`${gw.url}/admin`);
        await page.locator("#signin-token").waitFor();
        assert.equal(await page.locator("#signin-error").isVisible(), false);
        assert.ok((await overflow()) <= 0, "the sign-in form fits 360 px");
        await page.fill("#signin-token", "not-the-token");
        await page.click("#signin button");
        await page.locator("#signin-error").waitFor({ state: "visible" });
        assert.equal(new URL(page.url()).search, "", "a refused token leaves the address bar too");
        await page.setViewportSize({ width: 1200, height: 820 });
        await page.fill("#signin-token", ADMIN);
        await page.click("#signin button");
        await page.locator("#ready").waitFor();
        assert.equal(new URL(page.url()).pathname, "/admin");
        assert.equal(new URL(page.url()).search, "", "the token is gone from the address bar");
        // Locator waits, not string predicates: the page's CSP forbids the eval those need.
        await page
          .locator("#ready")
          .filter({ hasText: /^ready$/ })
          .waitFor();

        const want = visible();
        const expected: Record<string, number> = { online: 0, away: 0, dnd: 0, offline: 0 };
        for (const s of want.values()) expected[s]!++;
        for (const [status, n] of Object.entries(expected)) {
          assert.equal(await page.textContent(`#count-${status}`), String(n), `count of ${status}`);
        }
        assert.equal(await page.textContent("#users"), String(want.size));
        await page
          .locator("#feed-state")
          .filter({ hasText: /^live$/ })
          .waitFor();
        const feedTitle = await page.locator("#feed-state").locator("xpath=..").innerText();
        assert.doesNotMatch(feedTitle, /live[\s\S]*live/i, `the feed's title says live once: ${feedTitle}`);

        const moved: SimUser[] = [];
        for (const status of ["dnd", "away", "online"] as const) {
          const u = someoneNot(
            status,
            moved.map((m) => m.id),
          );
          sim.setStatus(u.id, status);
          moved.push(u);
          await page.waitForSelector(`#feed li[data-email="${u.email}"][data-status="${status}"]`);
        }
        const dnd = moved[0]!;
        await page.fill("#search-email", dnd.email);
        await page.click("#search button");
        await page
          .locator("#result")
          .filter({ hasText: /do not disturb/ })
          .waitFor();
        assert.match((await page.textContent("#result")) ?? "", new RegExp(`@${dnd.username}`));

        // The providers list: both sockets, then only the one the filter names.
        await page.locator('#providers tbody tr[data-address="10.9.8.7"]').waitFor();
        await page.locator('#providers tbody tr[data-address="127.0.0.1"]').waitFor();
        assert.match((await page.textContent("#providers-count")) ?? "", /^2 connected/);
        await page.locator("#sockets").filter({ hasText: /^2$/ }).waitFor();
        await page.fill("#providers-address", "10.9.8");
        await page
          .locator("#providers-count")
          .filter({ hasText: /1 matching/ })
          .waitFor();
        assert.equal(await page.locator("#providers tbody tr").count(), 1);
        assert.match(
          (await page.locator("#providers tbody tr").innerText()) ?? "",
          /10\.9\.8\.7:\d+\s+compat/,
        );
        // The chart: 60 one-minute bars, drawn in the page (no chart library).
        assert.equal(await page.locator("#chart-changes rect").count(), 60);
        assert.ok((await page.locator("#chart-providers polyline").count()) >= 1);
        if (process.env.ADMIN_SCREENSHOT) await page.screenshot({ path: process.env.ADMIN_SCREENSHOT });

        // A phone: nothing scrolls sideways, the lookup and feed panels included.
        await page.fill("#providers-address", "");
        await page.locator("#providers tbody tr").nth(1).waitFor();
        await page.setViewportSize({ width: 360, height: 740 });
        assert.ok((await overflow()) <= 0, `scrolls ${await overflow()} px sideways at 360 px`);
        for (const id of ["#search", "#feed", "#providers", "#chart-changes"]) {
          const box = await page.locator(id).boundingBox();
          assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `${id} fits 360 px`);
        }
      } finally {
        provider.close();
        other.close();
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  );
});
