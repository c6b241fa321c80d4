/**
 * Issue 13, item 8: a secret or token shorter than 16 characters is refused: exit 2 at start
 * naming the key, `reload_failed` on a reload (the current secret kept), a FAIL from `doctor`.
 * The old plugin's secret read from Mattermost is served even when short (a drop-in migration
 * must not lock desktops out) but logged loudly and failed by `doctor`. Before the fix a reload
 * to `a` succeeded and then opened `/status` and `/admin`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const TOKEN = `weak-secrets-token-${process.pid}`;
const SECRET = `weak-secrets-secret-${process.pid}`;
const PLUGIN = "com.mattermost.outlook-presence";
const KEYS = [
  "PRESENCE_SECRET",
  "PRESENCE_SECRET_PREVIOUS",
  "PRESENCE_ADMIN_TOKEN",
  "PRESENCE_METRICS_TOKEN",
];

const ENV = { MATTERMOST_URL: "http://127.0.0.1:1", MATTERMOST_TOKEN: "short", PRESENCE_SECRET: SECRET };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig([], env);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
}

test("each of the four secrets is refused under 16 characters, naming its key and what to do", () => {
  for (const key of KEYS) {
    for (const weak of ["Zq9", "Xy-fifteen-chr1"]) {
      const p = problems({ ...ENV, [key]: weak });
      assert.equal(p.length, 1, `${key}=${weak.length} chars: ${JSON.stringify(p)}`);
      assert.ok(p[0]!.startsWith(`${key} `), p[0]);
      assert.match(p[0]!, /too short .*at least 16.*`outlook-presence secret` makes one/);
      assert.doesNotMatch(p[0]!, new RegExp(weak), "the value itself is never shown");
    }
    assert.deepEqual(problems({ ...ENV, [key]: "sixteen-chars-xy" }), [], `${key}: 16 characters pass`);
  }
  assert.deepEqual(problems(ENV), [], "MATTERMOST_TOKEN is Mattermost's to make: not held to it");
  const doctorView = loadConfig([], { ...ENV, PRESENCE_SECRET: "a" }, { allowWeakSecrets: true }).config;
  assert.equal(doctorView.secret, "a", "doctor loads it, to report it");
});

test("start with a short secret: exit 2, the key named on stderr", async () => {
  const r = await runCli(["start"], { ...ENV, PRESENCE_ADMIN_TOKEN: "admin" });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /PRESENCE_ADMIN_TOKEN .*too short.*outlook-presence secret/);
});

describe("against the simulator", () => {
  let sim: MattermostSimulator;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 5, seed: 8 });
    await sim.start(0, "127.0.0.1");
  });
  after(async () => {
    await sim?.stop();
  });

  test("a reload to a short secret fails and keeps the current one", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "presence-weak-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secretFile = join(dir, "secret");
    writeFileSync(secretFile, `${SECRET}\n`);
    const gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET_FILE: secretFile,
    });
    t.after(() => gw.stop());
    const status = async (s: string) =>
      (await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(s)}`)).status;
    await waitUntil(async () => (await status(SECRET)) === 200, 10_000, "ready");

    writeFileSync(secretFile, "a\n");
    gw.child.kill("SIGHUP");
    const failed = await gw.waitFor((l) => l.event === "reload_failed" && l.reason === "SIGHUP");
    assert.match(String(failed.err), /PRESENCE_SECRET .*too short/);
    assert.equal(await status("a"), 403, "the short secret opens nothing");
    const admin = await fetch(`${gw.url}/admin/api/summary`, { headers: { Authorization: "Bearer a" } });
    assert.equal(admin.status, 403);
    await admin.text();
    assert.equal(await status(SECRET), 200, "the current secret still works");
    assert.ok(!gw.logs.some((l) => l.event === "reloaded"), "nothing was reloaded");
  });

  test("a short secret in the old plugin's settings: served, logged loudly, a doctor FAIL", async (t) => {
    const weak = "plugin12";
    sim.setPluginSettings(PLUGIN, { Secret: weak });
    t.after(() => sim.setPluginSettings(PLUGIN, undefined));
    const gw = await GatewayProcess.start({ MATTERMOST_URL: sim.url, MATTERMOST_TOKEN: TOKEN });
    t.after(() => gw.stop());
    const warned = await gw.waitFor((l) => l.event === "weak_secret");
    assert.equal(warned.level, "error");
    assert.match(String(warned.msg), /too short .*System Console/);
    await waitUntil(
      async () => (await fetch(`${gw.url}${BASE}/status?secret=${weak}`)).status === 200,
      10_000,
      "desktops keep working with the secret they have",
    );

    const doctor = await runCli(["doctor"], { MATTERMOST_URL: sim.url, MATTERMOST_TOKEN: TOKEN });
    assert.equal(doctor.code, 1);
    assert.match(doctor.stdout, /^FAIL {2}secret +the old plugin's secret in Mattermost is too short/m);
  });

  test("doctor FAILs a short configured secret instead of stopping at the configuration", async () => {
    const r = await runCli(["doctor"], {
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_METRICS_TOKEN: "m3tr1cZ",
    });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^FAIL {2}strength +PRESENCE_METRICS_TOKEN .*too short/m);
    assert.ok(!r.stdout.includes("m3tr1cZ"), "the value is never printed");
    const fine = await runCli(["doctor"], {
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
    });
    assert.match(fine.stdout, /^PASS {2}strength +PRESENCE_SECRET: long enough/m);
  });
});
