/**
 * Downstream faults (issue 5, point 2): clients that do not read, crowds, junk frames and dead
 * peers. In-process gateway, so the hub's state and the log can be watched as it happens.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { describe, test, type TestContext } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator } from "../../src/simulator/index.js";
import {
  STATUSES,
  assertConverged,
  sleep,
  startInProcess,
  waitUntil,
  type InProcessGateway,
  type Line,
} from "../helpers/in-process.js";
import { BASE, FakeProvider } from "../helpers/provider.js";
import { StreamConn } from "../helpers/v2-stream.js";
import { MAX_PENDING_AUTH, MAX_PENDING_AUTH_PER_ADDRESS } from "../../src/http/v2/stream.js";

const TOKEN = `tok-${process.pid}-faults-down`;
const SECRET = `secret-${process.pid}-faults-down`;

async function setup(
  t: TestContext,
  env: Record<string, string>,
  users = 40,
): Promise<{ sim: MattermostSimulator; gw: InProcessGateway }> {
  const sim = new MattermostSimulator({ token: TOKEN, users, seed: 11 });
  await sim.start(0, "127.0.0.1");
  const gw = await startInProcess(sim, TOKEN, SECRET, {
    PRESENCE_POLL_INTERVAL_MS: "250",
    PRESENCE_KEEPALIVE_MS: "600000",
    ...env,
  });
  t.after(async () => {
    await gw.stop();
    await sim.stop();
  });
  await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
  return { sim, gw };
}

const wsUrl = (url: string): string =>
  `${url.replace("http", "ws")}${BASE}/ws?secret=${encodeURIComponent(SECRET)}`;

interface Attempt {
  ws: WebSocket;
  /** "open", or the refused upgrade's HTTP status and body. */
  result: Promise<{ open: true } | { open: false; status: number; body: string }>;
  closed: Promise<number>;
}

function attempt(url: string, opts: WebSocket.ClientOptions = {}): Attempt {
  const ws = new WebSocket(wsUrl(url), opts);
  ws.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
  const result = new Promise<{ open: true } | { open: false; status: number; body: string }>(
    (resolve, reject) => {
      ws.once("open", () => resolve({ open: true }));
      ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ open: false, status: res.statusCode ?? 0, body }));
      });
      ws.once("error", reject);
    },
  );
  return { ws, result, closed };
}

function flipAll(sim: MattermostSimulator, round: number): void {
  for (const u of sim.listUsers()) {
    if (u.delete_at !== 0 || u.is_bot) continue;
    sim.setStatus(u.id, STATUSES[round % 4]!);
  }
}

describe("downstream faults", () => {
  test("a client that never reads is closed at the buffer cap with 1013; memory stays bounded; others are unaffected", async (t) => {
    const CAP = 64 * 1024;
    const { sim, gw } = await setup(
      t,
      {
        PRESENCE_WS_MAX_BUFFER_BYTES: String(CAP),
        PRESENCE_POLL_INTERVAL_MS: "3600000", // cycles are driven by the test
        PRESENCE_DIRECTORY_REFRESH_MS: "3600000",
      },
      2000,
    );
    const healthy = new FakeProvider(gw.url, SECRET);
    t.after(() => healthy.close());
    await healthy.loadStatus();
    await healthy.connect();

    const stuck = attempt(gw.url);
    assert.deepEqual(await stuck.result, { open: true });
    const socket = (stuck.ws as unknown as { _socket: Socket })._socket;
    socket.pause(); // reads nothing from now on: the kernel buffers fill, then the gateway's
    t.after(() => stuck.ws.terminate());

    let slowLine: Line | undefined;
    gw.onLine((l) => {
      if (l.event !== "ws_slow_consumer" || slowLine) return;
      slowLine = l;
      socket.resume(); // read again now, so that the close frame queued behind the backlog arrives
    });
    let maxBatch = 0;
    for (let round = 1; !slowLine && round <= 300; round++) {
      flipAll(sim, round);
      const from = gw.gateway.snapshot.lastSeq;
      assert.equal(await gw.gateway.sync.runOnce(), true);
      maxBatch = Math.max(maxBatch, (gw.gateway.snapshot.lastSeq - from) * 120);
    }
    assert.ok(slowLine, "the socket that does not read was detected");
    const buffered = slowLine.buffered as number;
    assert.ok(buffered > CAP, "closed only past the cap");
    assert.ok(buffered <= CAP + maxBatch, `held at most the cap plus one batch, held ${buffered}`);
    assert.equal(await stuck.closed, 1013, "closed with 1013 (try again later)");
    await waitUntil(() => gw.gateway.hub.size === 1, 5000, "the stuck socket freed");
    assert.ok(gw.lines.some((l) => l.event === "ws_disconnect" && l.reason === "slow_consumer"));

    // The provider that reads kept its socket and holds every status.
    assert.equal(healthy.ws!.readyState, WebSocket.OPEN);
    await assertConverged(sim, [healthy]);
  });

  test("many clients connecting at once: none refused below PRESENCE_MAX_CONNECTIONS, a clear 503 above it", async (t) => {
    const LIMIT = 400;
    const EXTRA = 100;
    const { gw } = await setup(t, { PRESENCE_MAX_CONNECTIONS: String(LIMIT) });
    const attempts = Array.from({ length: LIMIT + EXTRA }, () => attempt(gw.url));
    t.after(() => attempts.forEach((a) => a.ws.terminate()));
    const results = await Promise.all(attempts.map((a) => a.result));
    const opened = results.filter((r) => r.open);
    const refused = results.filter((r) => !r.open);
    assert.equal(opened.length, LIMIT, "every connection below the limit is accepted");
    assert.equal(refused.length, EXTRA);
    for (const r of refused) {
      assert.equal(r.status, 503);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, "too_many_connections");
    }
    assert.equal(gw.gateway.hub.size, LIMIT);
    assert.ok(gw.lines.some((l) => l.event === "ws_refused"));

    // Room again once some leave.
    const leaving = attempts.filter((_, i) => results[i]!.open).slice(0, 10);
    for (const a of leaving) a.ws.close();
    await waitUntil(() => gw.gateway.hub.size === LIMIT - 10, 5000, "ten sockets gone");
    const again = Array.from({ length: 10 }, () => attempt(gw.url));
    t.after(() => again.forEach((a) => a.ws.terminate()));
    for (const r of await Promise.all(again.map((a) => a.result))) assert.deepEqual(r, { open: true });
  });

  test("compat and v2 stream sockets share PRESENCE_MAX_CONNECTIONS, and /metrics counts both", async (t) => {
    const { gw } = await setup(t, { PRESENCE_MAX_CONNECTIONS: "3" });
    const streams = [
      await StreamConn.open(gw.url, { secret: SECRET }),
      await StreamConn.open(gw.url, { secret: SECRET }),
    ];
    t.after(() => streams.forEach((s) => s.ws.terminate()));
    const first = attempt(gw.url);
    t.after(() => first.ws.terminate());
    assert.deepEqual(await first.result, { open: true });
    const over = attempt(gw.url);
    t.after(() => over.ws.terminate());
    const refused = await over.result;
    assert.ok(!refused.open && refused.status === 503, "a compat socket past the shared limit gets 503");
    await assert.rejects(StreamConn.open(gw.url, { secret: SECRET }), /upgrade refused: 503/);

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /^outlook_presence_ws_connections 1$/m);
    assert.match(metrics, /^outlook_presence_v2_stream_connections 2$/m);
  });

  test("v2 sockets that never authenticate cannot take the desktops' connections; their number is capped", async (t) => {
    // Behind a trusted proxy (loopback), so that the waiting sockets come from many addresses:
    // one address may hold only MAX_PENDING_AUTH_PER_ADDRESS of them (test/security).
    const { gw } = await setup(t, {
      PRESENCE_MAX_CONNECTIONS: "2",
      PRESENCE_TRUSTED_PROXIES: "127.0.0.1,::1",
    });
    const v2Url = `${gw.url.replace("http", "ws")}/api/v2/stream`;
    const openRaw = (headers: Record<string, string> = {}) => {
      const ws = new WebSocket(v2Url, { headers });
      ws.on("error", () => undefined);
      t.after(() => ws.terminate());
      return ws;
    };
    const opened = (ws: WebSocket) =>
      new Promise<number>((resolve) => {
        ws.once("open", () => resolve(101));
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      });
    // Sockets waiting for their auth message (no header): up to the cap, none counted as a desktop.
    const from = (i: number) => ({
      "X-Forwarded-For": `10.9.${Math.floor(i / MAX_PENDING_AUTH_PER_ADDRESS)}.1`,
    });
    const pending = Array.from({ length: MAX_PENDING_AUTH }, (_, i) => openRaw(from(i)));
    assert.deepEqual(new Set(await Promise.all(pending.map(opened))), new Set([101]));
    assert.equal(
      await opened(openRaw({ "X-Forwarded-For": "10.10.0.1" })),
      503,
      "one more waiting socket is refused",
    );
    // The desktops still get their two connections.
    const desktops = [attempt(gw.url), attempt(gw.url)];
    t.after(() => desktops.forEach((a) => a.ws.terminate()));
    for (const d of desktops) assert.deepEqual(await d.result, { open: true });
    // The limit is full now: a waiting socket that authenticates is closed (1013), not admitted.
    const late = pending[0]!;
    let closedWith: number | undefined;
    late.once("close", (code) => (closedWith = code));
    late.send(JSON.stringify({ type: "auth", secret: SECRET }));
    await waitUntil(() => closedWith !== undefined, 5000, "the late socket closed");
    assert.equal(closedWith, 1013);
    assert.equal(gw.gateway.hub.size, 2);
  });

  test("a provider that reconnects after missing changes is resynced; one that just read /status is not", async (t) => {
    // A short replay window, which the sleeper stays away longer than: only the resync can
    // repair what it missed.
    const REPLAY_MS = 1500;
    const { sim, gw } = await setup(
      t,
      { PRESENCE_REPLAY_WINDOW_MS: String(REPLAY_MS), PRESENCE_TRUSTED_PROXIES: "127.0.0.1,::1" },
      300,
    );
    // Two desktops behind a trusted proxy (loopback, as nginx on the same host).
    const away = new FakeProvider(gw.url, SECRET, { forwardedFor: "192.0.2.1" });
    t.after(() => away.close());
    // It never read /status (its first read failed, say): the resync alone fills it.
    await away.connect();
    await assertConverged(sim, [away]);
    away.close(); // the laptop goes to sleep
    await waitUntil(() => gw.gateway.hub.size === 0, 5000, "the socket gone");
    const movers = sim
      .listUsers()
      .filter((u) => u.delete_at === 0 && u.email && !u.is_bot)
      .slice(0, 60);
    for (const u of movers) sim.setStatus(u.id, STATUSES[(STATUSES.indexOf(sim.getStatus(u.id)!) + 1) % 4]!);
    const seq = gw.gateway.snapshot.lastSeq;
    await waitUntil(() => gw.gateway.snapshot.lastSeq >= seq + movers.length, 10_000, "the gateway saw them");
    assert.ok(
      movers.some((u) => away.store.get(u.email) !== sim.getStatus(u.id)),
      "the provider is stale",
    );
    await sleep(REPLAY_MS + 500); // the changes are now older than the replay window

    // A provider starting now reads /status first: its socket gets no resync.
    const fresh = new FakeProvider(gw.url, SECRET, { forwardedFor: "192.0.2.2" });
    t.after(() => fresh.close());
    await fresh.loadStatus();
    await fresh.connect();
    // The sleeper wakes up: no /status read (the provider never re-reads it), just a new socket.
    const before = away.messages.length;
    await away.connect();
    await assertConverged(sim, [away, fresh]);
    await waitUntil(() => gw.gateway.hub.resyncing === 0, 10_000, "the resync done");
    const resent = new Set(away.messages.slice(before).map((m) => m.email));
    const visible = gw.gateway.snapshot.visible().map((u) => u.email);
    assert.deepEqual(
      visible.filter((e) => !resent.has(e)),
      [],
      "the sleeper's new socket was sent every status",
    );
    assert.equal(fresh.messages.length, 0, "the fresh provider was sent nothing (no change happened)");
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /^outlook_presence_ws_resync_messages_sent_total [1-9]\d*$/m);
  });

  test("client frames of any size or content are ignored; too big closes with 1009, a flood with 1008", async (t) => {
    const { sim, gw } = await setup(t, {});
    const p = new FakeProvider(gw.url, SECRET);
    t.after(() => p.close());
    await p.loadStatus();
    await p.connect();
    const ws = p.ws!;
    const junk: (string | Buffer)[] = [
      "",
      "hello",
      '{"user_id":"x","status":"online"}',
      "\u0000\uffff\u2028",
      Buffer.alloc(0),
      Buffer.from([0, 1, 2, 255]),
      "x".repeat(4096), // exactly maxPayload
      Buffer.alloc(4096, 7),
    ];
    for (const j of junk) ws.send(j);
    ws.ping();
    // Still open and still served: a change arrives after the junk.
    const u = sim.listUsers().find((x) => !x.is_bot && x.delete_at === 0 && x.email)!;
    sim.setStatus(u.id, p.store.get(u.email) === "dnd" ? "online" : "dnd");
    await assertConverged(sim, [p]);
    assert.equal(ws.readyState, WebSocket.OPEN);

    const big = attempt(gw.url);
    t.after(() => big.ws.terminate());
    await big.result;
    big.ws.send("x".repeat(4097));
    assert.equal(await big.closed, 1009, "a frame over maxPayload closes with 1009");

    const flood = attempt(gw.url);
    t.after(() => flood.ws.terminate());
    await flood.result;
    for (let i = 0; i < 150; i++) flood.ws.send("{}");
    assert.equal(await flood.closed, 1008, "a flood of client messages closes with 1008");

    // Pings are frames too, each costing a pong: `ws` cuts a peer with too many unanswered
    // auto-pongs pending (terminated, so 1006).
    const pingFlood = attempt(gw.url);
    t.after(() => pingFlood.ws.terminate());
    await pingFlood.result;
    for (let i = 0; i < 1000; i++) pingFlood.ws.ping();
    assert.equal(await pingFlood.closed, 1006, "a flood of pings is cut");

    assert.equal(ws.readyState, WebSocket.OPEN, "the well-behaved socket is untouched");
    await waitUntil(() => gw.gateway.hub.size === 1, 5000, "abusive sockets freed");
  });

  test("half-open TCP: a peer that stops answering pings is dropped after about two ping intervals (/ws and v2)", async (t) => {
    const { gw } = await setup(t, { PRESENCE_WS_PING_INTERVAL_MS: "200" });
    const healthy = attempt(gw.url);
    const noPong = attempt(gw.url, { autoPong: false });
    const vanished = attempt(gw.url);
    t.after(() => [healthy, noPong, vanished].forEach((a) => a.ws.terminate()));
    await Promise.all([healthy.result, noPong.result, vanished.result]);
    // A vanished peer neither reads nor answers: its socket is paused for good.
    (vanished.ws as unknown as { _socket: Socket })._socket.pause();
    assert.equal(gw.gateway.hub.size, 3);

    await waitUntil(() => gw.gateway.hub.size === 1, 10_000, "dead peers dropped");
    assert.equal(gw.lines.filter((l) => l.event === "ws_dead_peer").length, 2);
    await noPong.closed;
    // The peer that answers keeps its socket through many more ping rounds.
    let pings = 0;
    healthy.ws.on("ping", () => pings++);
    await waitUntil(() => pings >= 5, 10_000, "five more pings");
    assert.equal(healthy.ws.readyState, WebSocket.OPEN);
    assert.equal(gw.gateway.hub.size, 1);

    // The API v2 stream's pool does the same.
    const v2Healthy = await StreamConn.open(gw.url, { secret: SECRET });
    t.after(() => v2Healthy.ws.terminate());
    const v2NoPong = new WebSocket(`${gw.url.replace("http", "ws")}/api/v2/stream`, {
      headers: { Authorization: `Bearer ${SECRET}` },
      autoPong: false,
    });
    t.after(() => v2NoPong.terminate());
    v2NoPong.on("error", () => undefined);
    let v2NoPongClosed = false;
    v2NoPong.once("close", () => (v2NoPongClosed = true));
    await new Promise((resolve, reject) => v2NoPong.once("open", resolve).once("error", reject));
    await waitUntil(() => v2NoPongClosed, 10_000, "the v2 peer without pongs dropped");
    let v2Pings = 0;
    v2Healthy.ws.on("ping", () => v2Pings++);
    await waitUntil(() => v2Pings >= 3, 10_000, "more pings on the healthy v2 stream");
    assert.equal(v2Healthy.ws.readyState, WebSocket.OPEN);
    assert.equal(gw.gateway.v2.stream.size, 1);
    await sleep(0);
  });
});
