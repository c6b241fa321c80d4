import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimUser } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { FakeProvider } from "../helpers/provider.js";

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
    });
    for (let i = 0; i < 200 && (await fetch(`${gw.url}/readyz`)).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  });

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

  const noChromium = !existsSync(CHROMIUM);
  test(
    "in headless Chromium: the page loads, shows the counts, a status change appears in the live feed",
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
      try {
        const page = context.pages()[0] ?? (await context.newPage());
        page.setDefaultTimeout(10_000);
        await page.goto(`${gw.url}/admin?token=${ADMIN}`);
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
          .filter({ hasText: /^\(live\)$/ })
          .waitFor();

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
        if (process.env.ADMIN_SCREENSHOT) await page.screenshot({ path: process.env.ADMIN_SCREENSHOT });
      } finally {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  );
});
