/**
 * Secrets (issue 5, point 4), against the real CLI: Bearer and the previous secret accepted,
 * failed checks rate limited per address with 429 (the WebSocket refused before the upgrade),
 * per desktop behind a trusted proxy, and a request log that never holds a secret, however the
 * URL spells it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess, TEST_WORKERS } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-faults-secrets`;
const SECRET = `Sec+/=${process.pid}-current-secret`;
const PREVIOUS = `Sec-${process.pid}-previous-secret`;

/** Every byte percent-encoded, even letters: no scrubber looking for the plain value finds it. */
const percentAll = (s: string): string =>
  [...Buffer.from(s)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");

function upgrade(
  url: string,
  query: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}${BASE}/ws?${query}`);
    ws.once("open", () => {
      ws.terminate();
      resolve({ status: 101, headers: {}, body: "" });
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => {
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    ws.once("error", reject);
  });
}

/**
 * A later log line that closes a "no further line" count: the debug line of a request tagged
 * `tag`. The gateway writes its log in order, and the lines of a request answered earlier are
 * written before its answer ends, so they are all in by then.
 */
async function logMarker(gw: GatewayProcess, tag: string): Promise<void> {
  await (await fetch(`${gw.url}/healthz?marker=${tag}`)).arrayBuffer();
  await gw.waitFor((l) => l.event === "http_request" && String(l.url).endsWith(`marker=${tag}`));
}

/**
 * Sends wrong credentials with `send` until one is refused with 429 and returns that answer.
 * `sent` failures from that address came before (on other routes); up to `burst` in all must get
 * `refused` (403 or 401). With worker processes a failure reaches the other workers one IPC hop
 * late (docs/SCALING.md), so an address may get up to one burst per worker before its 429; one
 * process limits it exactly at the burst.
 */
async function limitedAfter(
  burst: number,
  send: (i: number) => Promise<Response>,
  what: string,
  { refused = 403, sent = 0 } = {},
): Promise<Response> {
  const bound = burst * Number(TEST_WORKERS);
  for (let failures = sent; ; failures++) {
    const res = await send(failures - sent);
    if (failures < burst) {
      assert.equal(res.status, refused, `${what}: within the burst`);
    } else if (res.status === 429 || failures >= bound) {
      assert.equal(res.status, 429, `${what}: limited after ${failures} failures`);
      return res;
    } else {
      assert.equal(res.status, refused, `${what}: not limited yet, only a worker's lag`);
    }
  }
}

async function gateway(sim: MattermostSimulator, env: Record<string, string>): Promise<GatewayProcess> {
  const gw = await GatewayProcess.start({
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_SECRET_PREVIOUS: PREVIOUS,
    PRESENCE_POLL_INTERVAL_MS: "500",
    ...env,
  });
  await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  return gw;
}

describe("secrets", () => {
  let sim: MattermostSimulator;
  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 20, seed: 9 });
    await sim.start(0, "127.0.0.1");
  });
  after(() => sim.stop());

  test("Bearer and the previous secret are accepted on /status and /ws; a wrong one is refused before the upgrade", async (t) => {
    const gw = await gateway(sim, {});
    t.after(() => gw.stop());
    const status = (init: RequestInit, q = "") => fetch(`${gw.url}${BASE}/status${q}`, init);
    assert.equal((await status({ headers: { Authorization: `Bearer ${SECRET}` } })).status, 200);
    assert.equal((await status({ headers: { Authorization: `Bearer ${PREVIOUS}` } })).status, 200);
    assert.equal((await status({}, `?secret=${encodeURIComponent(PREVIOUS)}`)).status, 200);
    assert.equal((await status({ headers: { Authorization: "Bearer nope" } })).status, 403);
    assert.equal((await upgrade(gw.url, `secret=${encodeURIComponent(PREVIOUS)}`)).status, 101);
    const refused = await upgrade(gw.url, "secret=nope");
    assert.equal(refused.status, 403);
    assert.equal((JSON.parse(refused.body) as { error: { code: string } }).error.code, "invalid_secret");
    // The gateway's log lines reach us asynchronously: wait for a later one, then count.
    await logMarker(gw, "after-upgrades");
    assert.equal(
      gw.logs.filter((l) => l.event === "ws_connect").length,
      1,
      "only the good upgrade opened a socket",
    );
  });

  test("wrong secrets past the burst get 429 with Retry-After, on /status and /ws; the right secret is still served", async (t) => {
    const BURST = 5;
    const gw = await gateway(sim, { PRESENCE_AUTH_FAILURE_BURST: String(BURST) });
    t.after(() => gw.stop());
    const wrong = () => fetch(`${gw.url}${BASE}/status?secret=guess-${Math.random()}`);
    const limited = await limitedAfter(BURST, wrong, "/status");
    const retryAfter = Number(limited.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(((await limited.json()) as { error: { code: string } }).error.code, "auth_rate_limited");

    const ws = await upgrade(gw.url, "secret=guess");
    assert.equal(ws.status, 429, "the WebSocket is refused before the upgrade");
    assert.ok(Number(ws.headers["retry-after"]) >= 1);

    // A desktop with the right secret behind the same address (a reverse proxy) is not locked out.
    assert.equal((await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`)).status, 200);
    assert.equal((await upgrade(gw.url, `secret=${encodeURIComponent(SECRET)}`)).status, 101);
    for (let i = 0; i < 10; i++) assert.equal((await wrong()).status, 429);
    await logMarker(gw, "after-guesses"); // any further (wrong) line would be in by now
    assert.equal(gw.logs.filter((l) => l.event === "auth_rate_limited").length, 1, "one log line per window");
  });

  test("behind a trusted proxy the limit is per desktop (X-Forwarded-For); from an untrusted peer the header is ignored", async (t) => {
    const BURST = 3;
    const wrongFrom = (gw: GatewayProcess, client: string) =>
      fetch(`${gw.url}${BASE}/status?secret=guess`, {
        headers: { "X-Forwarded-For": `198.51.100.1, ${client}` },
      });

    // Loopback (where this test connects from) is the trusted proxy, as for nginx on the same host.
    const proxied = await gateway(sim, {
      PRESENCE_AUTH_FAILURE_BURST: String(BURST),
      PRESENCE_TRUSTED_PROXIES: "127.0.0.1,::1",
      LOG_LEVEL: "debug",
    });
    t.after(() => proxied.stop());
    await limitedAfter(BURST, () => wrongFrom(proxied, "192.0.2.10"), "that desktop");
    assert.equal((await wrongFrom(proxied, "192.0.2.11")).status, 403, "its neighbour is not");
    const limited = await proxied.waitFor((l) => l.event === "auth_rate_limited");
    assert.equal(limited.remote, "192.0.2.10", "the log names the desktop, not the proxy");
    await waitUntil(
      () => proxied.logs.some((l) => l.event === "http_request" && l.remote === "192.0.2.11"),
      5000,
      "the request log names the desktop",
    );

    // No trusted proxy (the default): the header is anyone's claim, so all of it is one address.
    const direct = await gateway(sim, { PRESENCE_AUTH_FAILURE_BURST: String(BURST) });
    t.after(() => direct.stop());
    await limitedAfter(
      BURST,
      (i) => wrongFrom(direct, `192.0.2.${20 + i}`),
      "a made-up address does not escape the limit",
    );
  });

  test("guesses on every route count together: compat, API v2, the admin page and /metrics", async (t) => {
    const gw = await gateway(sim, {
      PRESENCE_AUTH_FAILURE_BURST: "3",
      PRESENCE_ADMIN_TOKEN: "admin-token-right",
      PRESENCE_METRICS_TOKEN: "metrics-token-right",
    });
    t.after(() => gw.stop());
    const v2 = (secret: string) =>
      fetch(`${gw.url}/api/v2/presence`, { headers: { Authorization: `Bearer ${secret}` } });
    assert.equal((await v2("guess-1")).status, 401);
    assert.equal((await fetch(`${gw.url}/admin?token=guess-2`, { redirect: "manual" })).status, 403);
    assert.equal(
      (await fetch(`${gw.url}/metrics`, { headers: { Authorization: "Bearer guess-3" } })).status,
      403,
    );
    // The fourth wrong guess, wherever it goes, is over the burst (with workers: within the bound).
    const limited = await limitedAfter(3, (i) => v2(`guess-${4 + i}`), "after three routes", {
      refused: 401,
      sent: 3,
    });
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.equal((await fetch(`${gw.url}${BASE}/status?secret=guess-5`)).status, 429);
    assert.equal((await fetch(`${gw.url}/admin?token=guess-6`, { redirect: "manual" })).status, 429);
    assert.equal(
      (await fetch(`${gw.url}/metrics`, { headers: { Authorization: "Bearer guess-7" } })).status,
      429,
    );
    assert.equal((await upgrade(gw.url, "secret=guess-8")).status, 429);
    // The right credentials are still served from that address.
    assert.equal((await v2(SECRET)).status, 200);
    assert.equal(
      (await fetch(`${gw.url}/metrics`, { headers: { Authorization: "Bearer metrics-token-right" } })).status,
      200,
    );
    await logMarker(gw, "after-guesses");
    assert.equal(gw.logs.filter((l) => l.event === "auth_rate_limited").length, 1, "one log line per window");
    assert.equal(
      gw.logs.filter((l) => l.event === "admin_refused").length,
      1,
      "refused logins past the burst are not logged each",
    );
  });

  test("no request log line holds a secret, a guess, or any spelling of them", async (t) => {
    const gw = await gateway(sim, { LOG_LEVEL: "debug", PRESENCE_AUTH_FAILURE_BURST: "0" });
    t.after(() => gw.stop());
    const GUESS = "guess-Zq9-near-miss";
    const queries = [
      `secret=${encodeURIComponent(SECRET)}`,
      `secret=${encodeURIComponent(encodeURIComponent(SECRET))}`,
      `secret=${percentAll(SECRET)}`,
      `%73ecret=${percentAll(SECRET)}`,
      `page=1&SECRET=${percentAll(PREVIOUS)}&secret=${percentAll(SECRET)}`,
      `secret=${GUESS}`,
      `secret=${percentAll(GUESS)}`,
    ];
    const served: number[] = [];
    for (const q of queries) served.push((await fetch(`${gw.url}${BASE}/status?${q}`)).status);
    assert.deepEqual(served, [200, 200, 200, 200, 200, 403, 403]);
    await fetch(`${gw.url}${BASE}/status`, { headers: { Authorization: `Bearer ${SECRET}` } });
    await upgrade(gw.url, `secret=${percentAll(SECRET)}`);
    // Wait for the lines of these requests, not just any: the readiness polls before them are
    // logged too, and the logs arrive through a pipe.
    const withQuery = () =>
      gw.logs.filter((l) => l.event === "http_request" && String(l.url).includes("/status?"));
    await waitUntil(() => withQuery().length >= queries.length, 5000, "a request log line per request");
    assert.equal(withQuery().length, queries.length);
    assert.ok(withQuery().every((l) => String(l.url).includes("[REDACTED]")));
    for (const needle of [
      SECRET,
      PREVIOUS,
      GUESS,
      percentAll(SECRET),
      percentAll(PREVIOUS),
      percentAll(GUESS),
    ]) {
      for (const spelling of [
        needle,
        encodeURIComponent(needle),
        encodeURIComponent(encodeURIComponent(needle)),
      ]) {
        assert.ok(!gw.output.includes(spelling), `log output holds ${spelling}`);
      }
    }
  });
});
