/**
 * Issue 13, item 6: upstream bodies were read without a size limit. A 400 MB `/users` answer took
 * RSS to 1.69 GB (and it stayed there); 400 MB error bodies were read in full on every retry.
 * Here the simulator streams 40 MB answers as the gateway reads them and counts what it wrote: the
 * gateway must abort near the endpoint's limit, log one error, back off, and keep serving the last
 * snapshot.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { WebSocketServer } from "ws";
import { runChecks } from "../../src/cli/doctor.js";
import { loadConfig } from "../../src/config/load.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { BODY_LIMITS, MAX_USERS_PER_PAGE, MattermostClient } from "../../src/mattermost/client.js";
import { UpstreamError } from "../../src/mattermost/errors.js";
import { MAX_EVENT_BYTES, MattermostEvents } from "../../src/mattermost/events.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { startInProcess, waitUntil, type InProcessGateway, type Line } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-body-limit`;
const SECRET = `sec-${process.pid}-body-limit-0123456789`;
const BODY = 40 * 1024 * 1024;
/**
 * What the simulator may have written past the point where the gateway stopped reading: the
 * loopback socket's buffers on both sides and undici's, a few MB on Linux. Far below BODY, so an
 * answer read to its end fails the test.
 */
const SLACK = 12 * 1024 * 1024;
const PAGE_LIMIT = BODY_LIMITS.small + MAX_USERS_PER_PAGE * BODY_LIMITS.perUser;

const FAST = {
  PRESENCE_POLL_INTERVAL_MS: "250",
  PRESENCE_DIRECTORY_REFRESH_MS: "1000",
  PRESENCE_BACKOFF_MAX_MS: "400",
  PRESENCE_REQUEST_TIMEOUT_MS: "5000",
};

async function setup(t: TestContext): Promise<{ sim: MattermostSimulator; gw: InProcessGateway }> {
  const sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 13 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await startInProcess(sim, TOKEN, SECRET, FAST);
  t.after(() => gw.stop());
  await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");
  return { sim, gw };
}

const statusUrl = (url: string): string => `${url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`;
const failed = (lines: readonly Line[], kind: string): Line[] =>
  lines.filter((l) => l.event === "upstream_failed" && l.kind === kind);

test("a /users answer larger than a page can be is aborted near the limit; one error line, the last snapshot keeps serving", async (t) => {
  const { sim, gw } = await setup(t);
  const before = await (await fetch(statusUrl(gw.url))).text();
  sim.resetStats();
  sim.setFault({ kind: "oversized", bytes: BODY, paths: ["users"] });
  // Bounded either way: refused (the fix), or a whole 40 MB answer written (no limit).
  await waitUntil(
    () => failed(gw.lines, "too-large").length > 0 || sim.stats.oversizedBytesWritten >= BODY,
    20_000,
    "the oversized answer refused or read",
  );
  assert.equal(failed(gw.lines, "too-large").length, 1, "refused as too-large");
  // Several refreshes retried with the backoff, each aborted (bytes of one still in flight count too).
  const health = gw.gateway.sync.health;
  await waitUntil(() => health.consecutiveFailures >= 3, 10_000, "three failed refreshes");
  const attempts = health.consecutiveFailures;
  const perAttempt = sim.stats.oversizedBytesWritten / attempts;
  t.diagnostic(`${attempts} attempts, ${Math.round(perAttempt / 1024)} KiB written per attempt`);
  assert.ok(
    perAttempt <= PAGE_LIMIT + SLACK,
    `at most the limit plus socket buffers per attempt, got ${perAttempt} bytes`,
  );
  await waitUntil(
    () => sim.stats.oversizedAborted >= attempts,
    5_000,
    "the gateway to close each answer early",
  );

  const lines = failed(gw.lines, "too-large");
  assert.equal(lines.filter((l) => l.level === "error").length, 1, "one error line for the series");
  assert.equal(lines[0]!.endpoint, "users");
  assert.equal((await fetch(`${gw.url}/readyz`)).status, 200, "still ready: the last snapshot serves");
  assert.equal(await (await fetch(statusUrl(gw.url))).text(), before, "the last snapshot, byte for byte");

  sim.setFault(null);
  await waitUntil(() => gw.gateway.sync.health.consecutiveFailures === 0, 10_000, "recovery");
});

test("a 503 with a 40 MB body: only the start is read on every retry, and it still counts as a 503", async (t) => {
  const { sim, gw } = await setup(t);
  sim.resetStats();
  sim.setFault({ kind: "oversized", bytes: BODY, status: 503, paths: ["status/ids"] });
  const health = gw.gateway.sync.health;
  await waitUntil(
    () => health.consecutiveFailures >= 3 || sim.stats.oversizedBytesWritten >= BODY,
    20_000,
    "three failed polls, or one error body read to its end",
  );
  const attempts = Math.max(1, health.consecutiveFailures);
  const perAttempt = sim.stats.oversizedBytesWritten / attempts;
  t.diagnostic(`${attempts} attempts, ${Math.round(perAttempt / 1024)} KiB written per attempt`);
  assert.ok(perAttempt <= BODY_LIMITS.error + SLACK, `error bodies are not read, got ${perAttempt} bytes`);
  await waitUntil(
    () => sim.stats.oversizedAborted >= attempts,
    5_000,
    "the gateway to close each answer early",
  );
  const served = gw.lines.filter((l) => l.event === "upstream_failed" && l.kind === "server");
  assert.ok(served.length > 0, "a 503 is a server error, backed off as usual");
  assert.equal(served[0]!.status, 503);
  assert.equal((await fetch(`${gw.url}/readyz`)).status, 200);
});

/** A server that answers every request with `body` and `headers`; its URL. */
async function fakeMattermost(
  t: TestContext,
  body: Buffer,
  headers: Record<string, string>,
): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "Content-Type": "application/json", ...headers });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  t.after(() => server.closeAllConnections());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const isTooLarge = (err: unknown): boolean => err instanceof UpstreamError && err.kind === "too-large";

test("a small gzip body that inflates past the limit is refused: decoded bytes are counted", async (t) => {
  // Valid JSON ([] and 40 MB of spaces) in about 40 KB on the wire.
  const inflated = Buffer.alloc(BODY, 0x20);
  inflated.write("[]", 0);
  const url = await fakeMattermost(t, gzipSync(inflated, { level: 1 }), { "Content-Encoding": "gzip" });
  const client = new MattermostClient({ url, token: "t", timeoutMs: 5000 });
  t.after(() => client.close());
  await assert.rejects(client.getActiveUsers(0, MAX_USERS_PER_PAGE), isTooLarge);
});

test("a Content-Length over the limit is refused before the body is read", async (t) => {
  const url = await fakeMattermost(t, Buffer.alloc(PAGE_LIMIT + 2048, 0x20), {});
  const client = new MattermostClient({ url, token: "t", timeoutMs: 5000 });
  t.after(() => client.close());
  await assert.rejects(client.getActiveUsers(0, MAX_USERS_PER_PAGE), isTooLarge);
  // A statuses answer is bounded by the ids asked for: 64 KiB and 1 KiB an id.
  await assert.rejects(client.getStatuses(["a".repeat(26)]), isTooLarge);
});

test("an event message over MAX_EVENT_BYTES on Mattermost's WebSocket closes it (1009) unread", async (t) => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/api/v4/websocket" });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  const closed = new Promise<number>((resolve) => {
    wss.once("connection", (ws) => {
      ws.on("error", () => undefined);
      ws.once("close", (code) => resolve(code));
      ws.send(JSON.stringify({ event: "hello", data: {}, seq: 0 }));
      // 8 MiB: twice the cap, a tenth of ws's default.
      const pad = "x".repeat(2 * MAX_EVENT_BYTES);
      ws.send(JSON.stringify({ event: "user_updated", data: { pad }, seq: 1 }));
    });
  });
  const hints: string[] = [];
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const events = new MattermostEvents({
    url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    token: () => "t",
    log: createLogger("error", new SecretScrubber(), sink),
    onHint: (reason) => hints.push(reason),
    maxBackoffMs: 60_000,
  });
  t.after(async () => {
    events.stop();
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  events.start();
  const code = await Promise.race([
    closed,
    new Promise<string>((resolve) => setTimeout(() => resolve("still open after 10 s"), 10_000).unref()),
  ]);
  assert.equal(code, 1009, "closed by the gateway as too big");
  assert.deepEqual(hints, [], "the oversized event was not acted on");
});

test("doctor reads no more of an oversized answer than the gateway would", async (t) => {
  const sim = new MattermostSimulator({ token: TOKEN, users: 5, seed: 13 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  sim.setFault({ kind: "oversized", bytes: BODY, paths: ["ping"] });
  const { config } = loadConfig([], {
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_REQUEST_TIMEOUT_MS: "5000",
  });
  const results = await runChecks(config, undefined, () => undefined);
  const reachable = results.find((r) => r.check === "reachable");
  assert.equal(reachable?.verdict, "FAIL", "a 40 MB ping is not Mattermost's");
  await waitUntil(() => sim.stats.oversizedAborted === 1, 5_000, "doctor to close the answer early");
  assert.ok(sim.stats.oversizedBytesWritten <= BODY_LIMITS.small + SLACK);
});
