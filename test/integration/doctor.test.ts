import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { doctorLine as line, doctorLines as lines } from "../helpers/doctor-output.js";

const TOKEN = `doctor-token-${process.pid}-abcdef`;
const SECRET = `doctor-secret-${process.pid}-abcdef`;

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * How long a doctor run may take before the test gives up on it. What these tests check is
 * doctor's verdicts, not its speed; a whole run takes well under a second idle, and on a loaded
 * machine (load average ~20) one was still running at the helper's default 10 s.
 */
const DOCTOR_LIMIT_MS = 60_000;

async function doctor(url: string, token = TOKEN, extra: string[] = [], env: Record<string, string> = {}) {
  const res = await runCli(
    ["doctor", ...extra],
    {
      MATTERMOST_URL: url,
      MATTERMOST_TOKEN: token,
      PRESENCE_REQUEST_TIMEOUT_MS: "3000",
      ...env,
    },
    DOCTOR_LIMIT_MS,
  );
  assert.doesNotMatch(res.stdout + res.stderr, new RegExp(TOKEN), "the token is never printed");
  assert.doesNotMatch(res.stdout + res.stderr, new RegExp(SECRET), "the secret is never printed");
  return { ...res, out: lines(res.stdout) };
}

describe("outlook-presence doctor, against the simulator", () => {
  const sims: MattermostSimulator[] = [];
  const sim = async (opts: Partial<ConstructorParameters<typeof MattermostSimulator>[0]> = {}) => {
    const s = new MattermostSimulator({ token: TOKEN, users: 250, seed: 5, ...opts });
    // The old plugin's settings, as a Mattermost being migrated has them.
    s.setPluginSettings("com.mattermost.outlook-presence", { secret: SECRET });
    sims.push(s);
    await s.start(0, "127.0.0.1");
    return s;
  };
  let good: MattermostSimulator;

  before(async () => {
    good = await sim();
  });
  after(async () => {
    for (const s of sims) await s.stop();
  });

  test("a good configuration passes every check, without PRESENCE_SECRET, and exits 0", async () => {
    const r = await doctor(good.url);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.out.map((l) => [l.check, l.verdict]),
      [
        ["reachable", "PASS"],
        ["token", "PASS"],
        ["emails", "PASS"],
        ["statuses-on", "PASS"],
        ["status-api", "PASS"],
        ["poll-cost", "PASS"],
        ["secret", "PASS"],
      ],
    );
    assert.match(line(r.out, "secret").message, /^from the old plugin's settings in Mattermost/);
    assert.match(line(r.out, "reachable").message, /^Mattermost 10\.5\.0 answers at/);
    assert.match(line(r.out, "token").message, /@presence-bot, a bot/);
    const active = good.listUsers().filter((u) => u.delete_at === 0).length;
    assert.ok(active > 200, "enough users for two status requests");
    assert.match(
      line(r.out, "poll-cost").message,
      new RegExp(`^${active} active users: 2 status requests every 3000 ms`),
    );
  });

  test("where the secret comes from: PRESENCE_SECRET, or FAIL when neither it nor the plugin's settings exist", async () => {
    const fromEnv = await doctor(good.url, TOKEN, [], { PRESENCE_SECRET: SECRET });
    assert.equal(fromEnv.code, 0);
    assert.equal(line(fromEnv.out, "secret").message, "from PRESENCE_SECRET");
    const bare = await sim();
    bare.setPluginSettings("com.mattermost.outlook-presence", undefined);
    const none = await doctor(bare.url);
    assert.equal(none.code, 1);
    assert.equal(line(none.out, "secret").verdict, "FAIL");
    assert.match(line(none.out, "secret").message, /set PRESENCE_SECRET/);
  });

  test("a bad token: FAIL token with what to do, dependent checks skipped, exit 1", async () => {
    const r = await doctor(good.url, "wrong-token-abcdef");
    assert.equal(r.code, 1);
    assert.equal(line(r.out, "reachable").verdict, "PASS");
    const t = line(r.out, "token");
    assert.equal(t.verdict, "FAIL");
    assert.match(t.message, /rejected MATTERMOST_TOKEN \(401\).*new access token/);
    assert.equal(line(r.out, "emails").verdict, "SKIP");
  });

  test("emails hidden: FAIL emails naming system admin and ShowEmailAddress", async () => {
    const s = await sim({ emailsVisible: false, botIsAdmin: false });
    const r = await doctor(s.url);
    assert.equal(r.code, 1);
    const e = line(r.out, "emails");
    assert.equal(e.verdict, "FAIL");
    assert.match(e.message, /sees no email address of the \d+ other active users/);
    assert.match(e.message, /system admin/);
    assert.match(e.message, /ShowEmailAddress/);
    assert.equal(line(r.out, "status-api").verdict, "PASS", "only the emails check fails");
  });

  test("statuses disabled: FAIL statuses-on and status-api, naming EnableUserStatuses", async () => {
    const s = await sim({ enableUserStatuses: false });
    const r = await doctor(s.url);
    assert.equal(r.code, 1);
    const on = line(r.out, "statuses-on");
    assert.equal(on.verdict, "FAIL");
    assert.match(on.message, /EnableUserStatuses is off/);
    const api = line(r.out, "status-api");
    assert.equal(api.verdict, "FAIL");
    assert.match(api.message, /answered \[\].*EnableUserStatuses/);
    assert.equal(line(r.out, "emails").verdict, "PASS");
  });

  test("unreachable: FAIL reachable with the network error, everything else skipped", async () => {
    const port = await closedPort();
    const r = await doctor(`http://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    const c = line(r.out, "reachable");
    assert.equal(c.verdict, "FAIL");
    assert.match(c.message, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): check MATTERMOST_URL/);
    assert.ok(r.out.slice(1).every((l) => l.verdict === "SKIP"));
  });

  test("a Mattermost that drops every connection (simulator outage): FAIL reachable", async () => {
    const s = await sim();
    s.setFault({ kind: "down" });
    const r = await doctor(s.url, TOKEN, [], { PRESENCE_REQUEST_TIMEOUT_MS: "1000" });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const c = line(r.out, "reachable");
    assert.equal(c.verdict, "FAIL");
    assert.match(c.message, /^cannot reach http:\/\/127\.0\.0\.1:\d+ \(.+\): check MATTERMOST_URL/);
  });

  test("a URL that is not Mattermost: FAIL reachable, says what MATTERMOST_URL should be", async () => {
    const r = await doctor(`${good.url}/api/v4`);
    assert.equal(r.code, 1);
    const c = line(r.out, "reachable");
    assert.equal(c.verdict, "FAIL");
    assert.match(c.message, /HTTP 404.*base URL/);
  });

  test("bad usage exits 2 without checking anything", async () => {
    const r = await runCli(
      ["doctor", "--gateway", "not a url"],
      { MATTERMOST_URL: good.url, MATTERMOST_TOKEN: TOKEN },
      DOCTOR_LIMIT_MS,
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--gateway: expected an absolute URL/);
    const missing = await runCli(["doctor"], { MATTERMOST_URL: good.url }, DOCTOR_LIMIT_MS);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /MATTERMOST_TOKEN/);
    assert.doesNotMatch(missing.stderr, /PRESENCE_SECRET/, "the secret is not required without --gateway");
  });

  describe("--gateway", () => {
    let gw: GatewayProcess;
    before(async () => {
      gw = await GatewayProcess.start({
        MATTERMOST_URL: good.url,
        MATTERMOST_TOKEN: TOKEN,
        PRESENCE_SECRET: SECRET,
        PRESENCE_POLL_INTERVAL_MS: "250",
      });
      await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
    });
    after(async () => {
      await gw?.stop();
    });

    test("the gateway answers /status with the secret: PASS, exit 0", async () => {
      const r = await doctor(good.url, TOKEN, ["--gateway", gw.url], { PRESENCE_SECRET: SECRET });
      assert.equal(r.code, 0, r.stdout);
      assert.match(
        line(r.out, "gateway").message,
        /answers \/status with the secret \(100 users on page 0\)/,
      );
    });

    test("another secret: FAIL gateway, says the two secrets differ", async () => {
      const r = await doctor(good.url, TOKEN, [`--gateway=${gw.url}`], {
        PRESENCE_SECRET: "other-secret-123",
      });
      assert.equal(r.code, 1);
      const g = line(r.out, "gateway");
      assert.equal(g.verdict, "FAIL");
      assert.match(g.message, /refused the secret \(403\)/);
    });

    test("a URL without the compat path: FAIL gateway with a 404 hint", async () => {
      const r = await doctor(good.url, TOKEN, ["--gateway", good.url], { PRESENCE_SECRET: SECRET });
      assert.equal(r.code, 1);
      assert.match(
        line(r.out, "gateway").message,
        /\(404\).*route \/plugins\/com\.mattermost\.outlook-presence\//,
      );
    });
  });
});
