/**
 * End to end against a real Mattermost: the real gateway CLI reads it with a system-admin bot's
 * token (and, without PRESENCE_SECRET, the old plugin's secret from its config), a provider-like
 * client pages /status and holds /ws, and every change made through Mattermost's API arrives as the
 * provider expects within the poll interval plus MARGIN_MS.
 *
 * Needs a server started by test/helpers/real-mattermost-cli.ts (CI's .ci/run does this:
 * `node dist/test/helpers/real-mattermost-cli.js -- node --test dist/test/real/`); without one it
 * is skipped, saying so. The measured latencies are printed as test diagnostics (`# latency ...`).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { bundle } from "../../plugin/bundle.js";
import { PLUGIN_ID } from "../../src/mattermost/plugin-settings.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { BASE, FakeProvider, type WireMessage } from "../helpers/provider.js";
import { realMattermostFromEnv, type RealMattermost, type RealUser } from "../helpers/real-mattermost.js";

const POLL_MS = 1000;
/**
 * On top of the poll interval: one poll cycle's requests, a directory refresh after a hint, and a
 * loaded 2-core CI machine running Mattermost, PostgreSQL, the gateway and the test.
 */
const MARGIN_MS = 10_000;
const LIMIT_MS = POLL_MS + MARGIN_MS;

const server = realMattermostFromEnv();
const SKIP = server
  ? false
  : "no real Mattermost: run under test/helpers/real-mattermost-cli.ts (as .ci/run does), which sets MM_REAL_*";

async function api<T = unknown>(s: RealMattermost, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${s.url}/api/v4/${path}`, {
    method,
    headers: { Authorization: `Bearer ${s.adminToken}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} /api/v4/${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return (text ? JSON.parse(text) : null) as T;
}

/** Installs and enables the plugin bundle: Mattermost keeps no settings of a plugin it does not have. */
async function installPluginBundle(s: RealMattermost): Promise<void> {
  const out = mkdtempSync(join(tmpdir(), "e2e-plugin-"));
  try {
    const form = new FormData();
    form.set("plugin", new Blob([readFileSync(bundle(out))]), "plugin.tar.gz");
    form.set("force", "true");
    const res = await fetch(`${s.url}/api/v4/plugins`, {
      method: "POST",
      headers: { Authorization: `Bearer ${s.adminToken}` },
      body: form,
    });
    assert.equal(res.status, 201, `POST /plugins: ${res.status} ${(await res.text()).slice(0, 300)}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  await api(s, "POST", `plugins/${PLUGIN_ID}/enable`);
}

async function setPluginSecret(s: RealMattermost, secret: string): Promise<void> {
  const cfg = await api<{ PluginSettings: { Plugins: Record<string, Record<string, unknown>> } }>(
    s,
    "GET",
    "config",
  );
  cfg.PluginSettings.Plugins[PLUGIN_ID] = { ...cfg.PluginSettings.Plugins[PLUGIN_ID], secret };
  await api(s, "PUT", "config", cfg);
}

function wsRefusal(url: string, secret: string): Promise<number | "open"> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}${BASE}/ws?secret=${encodeURIComponent(secret)}`);
    ws.once("open", () => {
      ws.terminate();
      resolve("open");
    });
    ws.once("unexpected-response", (_req, res) => {
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once("error", reject);
  });
}

describe("end to end: the real gateway against a real Mattermost", { skip: SKIP }, () => {
  const s = server!;
  const secret1 = `e2e-one-${process.pid}-${Date.now()}`;
  const secret2 = `e2e-two-${process.pid}-${Date.now()}`;
  const latencies: [string, number][] = [];
  let gw: GatewayProcess;
  let provider: FakeProvider;
  let alice: RealUser;
  let bob: RealUser;

  before(async () => {
    assert.ok(s.users.length >= 2, "the harness bootstraps at least two users");
    [alice, bob] = s.users as [RealUser, RealUser];
    await installPluginBundle(s);
    await setPluginSecret(s, secret1);
    for (const u of [alice, bob]) {
      await api(s, "PUT", `users/${u.id}/status`, { user_id: u.id, status: "online" });
    }
    gw = await GatewayProcess.start({
      MATTERMOST_URL: s.url,
      MATTERMOST_TOKEN: s.botToken,
      PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
      LOG_LEVEL: "info",
    });
    for (let i = 0; i < 300 && (await fetch(`${gw.url}/readyz`)).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await fetch(`${gw.url}/readyz`)).status, 200, gw.output.slice(-2000));
    provider = new FakeProvider(gw.url, secret1);
  });

  after(async () => {
    provider?.close();
    const code = await gw?.stop();
    for (const [what, ms] of latencies) console.log(`latency ${what}: ${ms} ms (limit ${LIMIT_MS} ms)`);
    assert.equal(code, 0, "the gateway stops cleanly");
    assert.doesNotMatch(gw.output, new RegExp(`${s.botToken}|${secret1}|${secret2}`), "no secret logged");
  });

  /** Runs `action`, then waits for a /ws message matching `pred`; records the latency. */
  async function arrives(what: string, action: () => Promise<unknown>, pred: (m: WireMessage) => boolean) {
    const from = provider.messages.length;
    const started = performance.now();
    await action();
    await provider.until((p) => p.messages.slice(from).some(pred), LIMIT_MS, what);
    const ms = Math.round(performance.now() - started);
    latencies.push([what, ms]);
    return ms;
  }

  test("the provider pages /status: every active user with Mattermost's status, then holds /ws", async () => {
    const pages = await provider.loadStatus();
    assert.ok(pages >= 2, "pages until []");
    for (const u of [alice, bob]) assert.equal(provider.store.get(u.email), "online", u.username);
    // The bots are in the directory as well (their emails end in @localhost).
    assert.ok([...provider.store.keys()].some((e) => e.startsWith("presence-bot@")));
    await provider.connect();
  });

  for (const status of ["away", "dnd", "offline", "online"] as const) {
    test(`${status} set through PUT /users/{id}/status arrives`, async () => {
      await arrives(
        `status ${status}`,
        () => api(s, "PUT", `users/${alice.id}/status`, { user_id: alice.id, status }),
        (m) => m.user_id === alice.id && m.email === alice.email && m.status === status,
      );
    });
  }

  test("dnd with an end time arrives as dnd", async () => {
    const end = Math.floor(Date.now() / 1000) + 3600;
    await arrives(
      "dnd with dnd_end_time",
      () =>
        api(s, "PUT", `users/${alice.id}/status`, { user_id: alice.id, status: "dnd", dnd_end_time: end }),
      (m) => m.user_id === alice.id && m.status === "dnd",
    );
    const st = await api<{ status: string; dnd_end_time: number }>(s, "GET", `users/${alice.id}/status`);
    assert.equal(st.status, "dnd");
    assert.ok(st.dnd_end_time > 0 && st.dnd_end_time <= end, `dnd_end_time ${st.dnd_end_time}`);
  });

  test("out of office (the auto-responder) arrives as away; leaving it arrives as online", async () => {
    await arrives(
      "dnd before ooo",
      () => api(s, "PUT", `users/${bob.id}/status`, { user_id: bob.id, status: "dnd" }),
      (m) => m.user_id === bob.id && m.status === "dnd",
    );
    const user = await api<{ notify_props: Record<string, string> }>(s, "GET", `users/${bob.id}`);
    await arrives(
      "ooo → away",
      () =>
        api(s, "PUT", `users/${bob.id}/patch`, {
          notify_props: {
            ...user.notify_props,
            auto_responder_active: "true",
            auto_responder_message: "away",
          },
        }),
      (m) => m.user_id === bob.id && m.status === "away",
    );
    assert.equal((await api<{ status: string }>(s, "GET", `users/${bob.id}/status`)).status, "ooo");
    await arrives(
      "leaving ooo → online",
      () => api(s, "PUT", `users/${bob.id}/status`, { user_id: bob.id, status: "online" }),
      (m) => m.user_id === bob.id && m.status === "online",
    );
  });

  test("a user created in Mattermost arrives", async () => {
    const name = `e2e.${process.pid}.${Date.now() % 100000}`;
    let id = "";
    await arrives(
      "new user",
      async () => {
        const u = await api<RealUser>(s, "POST", "users", {
          email: `${name}@example.com`,
          username: name,
          password: "E2e-Passw0rd!",
        });
        id = u.id;
      },
      (m) => m.user_id === id && m.email === `${name}@example.com`,
    );
  });

  test("a user deactivated in Mattermost: one offline message", async () => {
    const from = provider.messages.length;
    await arrives(
      "deactivation",
      () => api(s, "PUT", `users/${bob.id}/active`, { active: false }),
      (m) => m.user_id === bob.id && m.status === "offline",
    );
    // A later change proves the stream went on; still only one message for the deactivated user.
    await arrives(
      "a change after the deactivation",
      () => api(s, "PUT", `users/${alice.id}/status`, { user_id: alice.id, status: "away" }),
      (m) => m.user_id === alice.id && m.status === "away",
    );
    const forBob = provider.messages.slice(from).filter((m) => m.user_id === bob.id);
    assert.deepEqual(
      forBob.map((m) => m.status),
      ["offline"],
    );
    const page = await fetch(`${gw.url}${BASE}/status?secret=${secret1}&page=0`);
    assert.ok(
      !((await page.json()) as WireMessage[]).some((m) => m.user_id === bob.id),
      "left out of /status",
    );
    await api(s, "PUT", `users/${bob.id}/active`, { active: true });
  });

  test("the plugin's secret changed in Mattermost's config: the new one accepted, the old one refused", async () => {
    const started = performance.now();
    await setPluginSecret(s, secret2);
    await gw.waitFor((l) => l.event === "plugin_settings_changed" && l.secretChanged === true, LIMIT_MS);
    latencies.push(["secret change", Math.round(performance.now() - started)]);
    const status = (secret: string) => fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(secret)}`);
    assert.equal((await status(secret2)).status, 200);
    assert.equal((await status(secret1)).status, 403);
    assert.equal(await wsRefusal(gw.url, secret1), 403);
    assert.equal(await wsRefusal(gw.url, secret2), "open");
  });
});
