/**
 * Lifecycle (issue 5, point 3), against the real CLI process: SIGTERM/SIGINT close every socket
 * with 1001, stop accepting, finish in-flight responses and exit 0 within the grace period;
 * SIGHUP and a changed *_FILE reload the secret and token without dropping a socket.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { assertConverged, waitUntil } from "../helpers/in-process.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-lifecycle`;
const SECRET = `secret-${process.pid}-lifecycle`;

async function setup(t: TestContext, env: Record<string, string>) {
  const sim = new MattermostSimulator({ token: TOKEN, users: 30, seed: 21 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await GatewayProcess.start({
    MATTERMOST_URL: sim.url,
    PRESENCE_POLL_INTERVAL_MS: "250",
    PRESENCE_KEEPALIVE_MS: "600000",
    ...env,
  });
  t.after(() => gw.stop());
  await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  return { sim, gw };
}

/** Exit code and signal, waiting at most `timeoutMs` (an upper bound, not a measurement). */
async function exited(gw: GatewayProcess, timeoutMs: number): Promise<number | null> {
  if (gw.child.exitCode !== null) return gw.child.exitCode;
  const timer = setTimeout(() => gw.child.kill("SIGKILL"), timeoutMs);
  const [code, signal] = (await once(gw.child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  assert.equal(signal, null, `killed after ${timeoutMs} ms: it did not exit by itself`);
  return code;
}

/**
 * A POST /status/publish whose body is sent in two halves, so it is in flight in between. It asks
 * for `100 Continue`, which Node's server writes once it has read the head: `headRead` resolves then.
 */
function halfSentPublish(url: string, userId: string) {
  const body = JSON.stringify({ user_id: userId, status: "online" });
  const socket = connect(Number(new URL(url).port), "127.0.0.1");
  const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
  let response = "";
  let headRead: () => void = () => undefined;
  const headReadP = new Promise<void>((resolve) => (headRead = resolve));
  socket.on("data", (d: Buffer) => {
    response += d.toString();
    if (response.startsWith(CONTINUE)) headRead();
  });
  socket.on("error", () => undefined);
  const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.write(
    `POST ${BASE}/status/publish HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n` +
      `Expect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
  );
  return {
    headRead: () => headReadP,
    finish: () => socket.write(body.slice(10)),
    /** The final response (after the `100 Continue`). */
    response: async () => {
      await ended;
      return response.startsWith(CONTINUE) ? response.slice(CONTINUE.length) : response;
    },
    destroy: () => socket.destroy(),
  };
}

describe("lifecycle (real CLI)", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: every socket closed with 1001, no new connection, the in-flight response finished, exit 0`, async (t) => {
      const { sim, gw } = await setup(t, {
        MATTERMOST_TOKEN: TOKEN,
        PRESENCE_SECRET: SECRET,
        PRESENCE_SHUTDOWN_GRACE_MS: "20000",
      });
      const providers = await Promise.all(
        [0, 1, 2].map(async () => {
          const p = new FakeProvider(gw.url, SECRET);
          await p.connect();
          return p;
        }),
      );
      t.after(() => providers.forEach((p) => p.close()));
      const closes = providers.map((p) => new Promise<number>((r) => p.ws!.once("close", (code) => r(code))));
      const user = sim.listUsers().find((u) => !u.is_bot && u.delete_at === 0)!;
      const inFlight = halfSentPublish(gw.url, user.id);
      t.after(() => inFlight.destroy());
      await inFlight.headRead(); // the gateway has read the request's head

      gw.child.kill(signal);
      await gw.waitFor((l) => l.event === "stopping");
      assert.deepEqual(await Promise.all(closes), [1001, 1001, 1001]);
      await assert.rejects(fetch(`${gw.url}/healthz`), "no longer accepting");

      inFlight.finish();
      const response = await inFlight.response();
      assert.match(response, /^HTTP\/1\.1 200 /);
      assert.match(response, /\{"status":"OK"\}$/);
      assert.equal(await exited(gw, 20_000), 0);
    });
  }

  test("a request that never finishes does not hold the exit past PRESENCE_SHUTDOWN_GRACE_MS, nor does a hanging Mattermost", async (t) => {
    const { sim, gw } = await setup(t, {
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_SHUTDOWN_GRACE_MS: "1000",
      PRESENCE_REQUEST_TIMEOUT_MS: "60000",
    });
    const user = sim.listUsers().find((u) => !u.is_bot && u.delete_at === 0)!;
    const stuck = halfSentPublish(gw.url, user.id);
    t.after(() => stuck.destroy());
    // A poll in flight that Mattermost will not answer for a minute.
    sim.setFault({ kind: "slow", delayMs: 60_000 });
    await waitUntil(
      () => (sim.stats.requests["status/ids"] ?? 0) > 0 && sim.stats.statusIdsMaxInFlight > 0,
      5000,
    );
    sim.resetStats();
    await waitUntil(() => sim.stats.statusIdsMaxInFlight > 0, 5000, "a poll in flight");
    gw.child.kill("SIGTERM");
    assert.equal(await exited(gw, 10_000), 0);
    sim.setFault(null);
  });

  test("SIGHUP and a changed *_FILE reload the secret and the token without dropping a socket", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "presence-secrets-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secretFile = join(dir, "secret");
    const tokenFile = join(dir, "token");
    writeFileSync(secretFile, `${SECRET}\n`);
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const { sim, gw } = await setup(t, {
      MATTERMOST_TOKEN_FILE: tokenFile,
      PRESENCE_SECRET_FILE: secretFile,
      PRESENCE_BACKOFF_MAX_MS: "60000", // a reloaded token must be tried at once, not after this
    });
    const p = new FakeProvider(gw.url, SECRET);
    t.after(() => p.close());
    await p.loadStatus();
    await p.connect();
    const statusWith = async (s: string) =>
      (await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(s)}`)).status;

    // 1. The secret file is rewritten in place: no signal needed.
    const second = `${SECRET}-second`;
    writeFileSync(secretFile, `${second}\n`);
    await waitUntil(async () => (await statusWith(second)) === 200, 10_000, "the new secret accepted");
    assert.equal(await statusWith(SECRET), 403, "the old secret refused");
    await waitUntil(
      () => gw.logs.some((l) => l.event === "reload" && l.reason === "file_changed"),
      10_000,
      "the file_changed reload logged",
    );

    // 2. The token is revoked in Mattermost, and the new one is moved into place (as `mv` or a
    //    Kubernetes secret update does): ready again without a signal.
    const newToken = `${TOKEN}-rotated`;
    sim.setToken(newToken);
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 503, 10_000, "token rejected");
    writeFileSync(join(dir, ".token.tmp"), `${newToken}\n`);
    renameSync(join(dir, ".token.tmp"), tokenFile);
    await waitUntil(
      async () => (await fetch(`${gw.url}/readyz`)).status === 200,
      10_000,
      "ready with the new token",
    );

    // 3. SIGHUP re-reads at once.
    const third = `${SECRET}-third`;
    writeFileSync(secretFile, `${third}\n`);
    gw.child.kill("SIGHUP");
    await waitUntil(async () => (await statusWith(third)) === 200, 10_000, "the SIGHUP'd secret accepted");
    // The file watcher may have applied the new secret first; the SIGHUP's own log line arrives
    // on stdout asynchronously, so wait for it rather than expect it already read.
    await waitUntil(
      () => gw.logs.some((l) => l.event === "reload" && l.reason === "SIGHUP"),
      10_000,
      "the SIGHUP reload logged",
    );

    // The socket opened with the first secret survived all of it and still gets every change.
    assert.equal(p.ws!.readyState, p.ws!.OPEN);
    for (const u of sim
      .listUsers()
      .filter((x) => !x.is_bot && x.delete_at === 0)
      .slice(0, 8)) {
      sim.setStatus(u.id, sim.getStatus(u.id) === "dnd" ? "online" : "dnd");
    }
    await assertConverged(sim, [p]);
    assert.equal(gw.logs.filter((l) => l.event === "ws_disconnect").length, 0);
    for (const s of [SECRET, second, third, TOKEN, newToken])
      assert.ok(!gw.output.includes(s), "no secret logged");
    assert.equal(await gw.stop(), 0);
  });
});
