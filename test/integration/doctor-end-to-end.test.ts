import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { CLI, GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { doctorLine as line, doctorLines as lines } from "../helpers/doctor-output.js";

const TOKEN = `e2e-token-${process.pid}-abcdef`;
const SECRET = `e2e-secret-${process.pid}-abcdef`;
/** Above what one status request takes on a loaded machine, so doctor's poll-cost check passes. */
const POLL_MS = "1000";

const env = (sim: MattermostSimulator): Record<string, string> => ({
  MATTERMOST_URL: sim.url,
  MATTERMOST_TOKEN: TOKEN,
  PRESENCE_SECRET: SECRET,
  PRESENCE_POLL_INTERVAL_MS: POLL_MS,
  PRESENCE_REQUEST_TIMEOUT_MS: "3000",
});

async function ready(gw: GatewayProcess): Promise<void> {
  await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
}

async function doctor(sim: MattermostSimulator, gatewayUrl: string, extra: string[] = []) {
  const res = await runCli(["doctor", "--gateway", gatewayUrl, "--end-to-end", ...extra], env(sim), 70_000);
  assert.doesNotMatch(res.stdout + res.stderr, new RegExp(`${TOKEN}|${SECRET}`), "no secret printed");
  return { ...res, out: lines(res.stdout) };
}

describe("outlook-presence doctor --end-to-end, real CLI processes against the simulator", () => {
  let sim: MattermostSimulator;
  /** Same seed and token as `sim`, so the same user ids, but another Mattermost. */
  let other: MattermostSimulator;
  let gw: GatewayProcess;
  let misdirected: GatewayProcess;

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 7 });
    other = new MattermostSimulator({ token: TOKEN, users: 40, seed: 7 });
    await sim.start(0, "127.0.0.1");
    await other.start(0, "127.0.0.1");
    gw = await GatewayProcess.start(env(sim));
    misdirected = await GatewayProcess.start(env(other));
    await Promise.all([ready(gw), ready(misdirected)]);
  });
  after(async () => {
    await gw?.stop();
    await misdirected?.stop();
    await sim?.stop();
    await other?.stop();
  });

  test("the bot's status change arrives on /ws: PASS with the latency, status put back, exit 0", async () => {
    const bot = sim.botUser.id;
    assert.equal(sim.getStatus(bot), undefined, "the bot starts without a status record (offline)");
    // A margin far above the poll interval: a loaded machine must not turn a pass into a fail.
    const r = await doctor(sim, gw.url, ["--margin-ms", "30000"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.out.filter((l) => l.check.startsWith("e2e-")).map((l) => [l.check, l.verdict]),
      [
        ["e2e-user", "PASS"],
        ["e2e-listed", "PASS"],
        ["e2e-socket", "PASS"],
        ["e2e-change", "PASS"],
        ["e2e-arrival", "PASS"],
        ["e2e-restore", "PASS"],
      ],
    );
    assert.match(line(r.out, "e2e-change").message, /offline → online/);
    assert.match(
      line(r.out, "e2e-arrival").message,
      /^"online" for @presence-bot \(.+\) arrived on the gateway's \/ws \d+ ms after the change \(limit 31000 ms: PRESENCE_POLL_INTERVAL_MS 1000 \+ margin 30000\)$/,
    );
    assert.match(line(r.out, "e2e-restore").message, /back to offline .*arrived on \/ws in \d+ ms/);
    assert.equal(sim.getStatus(bot), "offline", "put back");
    assert.equal(sim.stats.requests["update-status"], 2, "one change, one restore");
  });

  test("--user by email: a user who is online is set away and put back online", async () => {
    const u = sim.listUsers().find((x) => !x.is_bot && x.delete_at === 0 && x.id !== sim.botUser.id)!;
    sim.setStatus(u.id, "online");
    const r = await doctor(sim, gw.url, ["--user", u.email.toUpperCase(), "--margin-ms", "30000"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(line(r.out, "e2e-change").message, new RegExp(`@${u.username} .* online → away`));
    assert.match(line(r.out, "e2e-arrival").message, /margin 30000\)$/);
    assert.equal(sim.getStatus(u.id), "online");
  });

  test("a gateway reading another Mattermost: the change never arrives, FAIL naming MATTERMOST_URL, exit 1, put back", async () => {
    const before = sim.stats.requests["update-status"] ?? 0;
    const r = await doctor(sim, misdirected.url, ["--margin-ms", "500"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(line(r.out, "e2e-listed").verdict, "PASS", "same ids, so it looks listed");
    const a = line(r.out, "e2e-arrival");
    assert.equal(a.verdict, "FAIL");
    assert.match(a.message, /^no "online" for @presence-bot .* within 1500 ms: .*MATTERMOST_URL/);
    assert.equal(line(r.out, "e2e-restore").verdict, "WARN", "its restore does not arrive either");
    assert.equal(sim.getStatus(sim.botUser.id), "offline", "put back after the failure");
    assert.equal((sim.stats.requests["update-status"] ?? 0) - before, 2);
  });

  test("Ctrl-C while waiting: the status is put back, FAIL interrupted, exit 1", async () => {
    const child = spawn(
      process.execPath,
      [CLI, "doctor", "--gateway", misdirected.url, "--end-to-end", "--margin-ms", "60000"],
      { env: { PATH: process.env.PATH ?? "", ...env(sim) }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    const changed = new Promise<void>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (/^PASS {2}e2e-change/m.test(stdout)) resolve();
      });
    });
    const exited = once(child, "exit");
    await changed;
    assert.equal(sim.getStatus(sim.botUser.id), "online", "changed while waiting");
    child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    assert.equal(code, 1, stdout);
    const out = lines(stdout);
    assert.match(line(out, "e2e-arrival").message, /^interrupted before "online"/);
    assert.match(line(out, "e2e-restore").message, /back to offline/);
    assert.equal(sim.getStatus(sim.botUser.id), "offline");
  });

  test("a user out of office is refused before any change", async () => {
    const u = sim.listUsers().find((x) => !x.is_bot && x.delete_at === 0 && x.id !== sim.botUser.id)!;
    sim.setStatus(u.id, "ooo");
    const before = sim.stats.requests["update-status"] ?? 0;
    const r = await doctor(sim, gw.url, ["--user", `@${u.username}`]);
    assert.equal(r.code, 1);
    const l = line(r.out, "e2e-user");
    assert.equal(l.verdict, "FAIL");
    assert.match(l.message, /out of office.*automatic replies/);
    assert.equal(sim.stats.requests["update-status"] ?? 0, before);
    assert.equal(sim.getStatus(u.id), "ooo");
  });

  test("another user with a token that is not an admin's: FAIL e2e-change naming edit_other_users", async () => {
    const u = sim.listUsers().find((x) => !x.is_bot && x.delete_at === 0 && x.id !== sim.botUser.id)!;
    sim.setStatus(u.id, "away");
    sim.setBotIsAdmin(false);
    try {
      const r = await doctor(sim, gw.url, ["--user", u.username]);
      assert.equal(r.code, 1);
      assert.match(line(r.out, "e2e-change").message, /refused .*\(403\).*edit_other_users/);
      assert.equal(sim.getStatus(u.id), "away");
    } finally {
      sim.setBotIsAdmin(true);
    }
  });

  test("an unknown --user: FAIL e2e-user; bad usage exits 2", async () => {
    const r = await doctor(sim, gw.url, ["--user", "nobody-here"]);
    assert.equal(r.code, 1);
    assert.match(line(r.out, "e2e-user").message, /no active user .*"nobody-here"/);
    const noGateway = await runCli(["doctor", "--end-to-end"], env(sim));
    assert.equal(noGateway.code, 2);
    assert.match(noGateway.stderr, /--end-to-end: needs --gateway URL/);
    const badMargin = await runCli(
      ["doctor", "--gateway", gw.url, "--end-to-end", "--margin-ms", "-1"],
      env(sim),
    );
    assert.equal(badMargin.code, 2);
    assert.match(badMargin.stderr, /--margin-ms/);
  });
});
