/**
 * The socket pool under both protocols (src/http/sockets): real `ws` sockets on loopback, time
 * driven by node:test's mock timers (ping rounds, keepalives, auth timeouts: no sleeps).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test, type TestContext } from "node:test";
import WebSocket from "ws";
import { STREAM_CLOSE } from "../../src/client/index.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { CLOSES, closeFrame, type CloseReason } from "../../src/http/sockets/close-codes.js";
import { SocketPool } from "../../src/http/sockets/pool.js";
import type { PoolSocket, SocketProtocol } from "../../src/http/sockets/socket.js";
import { V2_CLOSE } from "../../src/http/v2/protocol.js";
import { V2Stream } from "../../src/http/v2/stream.js";
import { PresenceView } from "../../src/http/v2/view.js";
import { WsHub } from "../../src/http/ws-hub.js";
import { NO_TELEMETRY, type Telemetry } from "../../src/telemetry.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";
import type { Line } from "../helpers/in-process.js";

const SECRET = "socket-pool-secret-0123456789";
const PING_MS = 30_000;
const KEEPALIVE_MS = 20_000;
const AUTH_MS = 5_000;
/** For a test about one timer: the others never fire within it. */
const NEVER = 1e9;

interface Rig {
  pool: SocketPool;
  hub: WsHub;
  stream: V2Stream;
  snapshot: PresenceSnapshot;
  /** wsClosed calls as `protocol/reason`, unsentClosed as `unsent:protocol/reason`. */
  closes: string[];
  lines: Line[];
  /** Opens a client: `/ws` (compat) or `/stream` (v2; `auth: "header"` counts at once). */
  open(
    protocol: SocketProtocol,
    opts?: { auth?: "header" | "message"; autoPong?: boolean },
  ): Promise<WebSocket>;
  /** The server side of the newest socket of a protocol. */
  newest(protocol: SocketProtocol): PoolSocket;
}

interface RigOptions {
  maxConnections?: number;
  maxBufferBytes?: number;
  pingIntervalMs?: number;
  keepaliveMs?: number;
}

async function rig(t: TestContext, opts: RigOptions = {}): Promise<Rig> {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const closes: string[] = [];
  const lines: Line[] = [];
  const telemetry: Telemetry = {
    ...NO_TELEMETRY,
    wsClosed: (reason, _n, protocol) => void closes.push(`${protocol}/${reason}`),
    unsentClosed: (protocol, reason) => void closes.push(`unsent:${protocol}/${reason}`),
  };
  const log = createLogger("info", new SecretScrubber(), {
    write: (s: string) => void lines.push(JSON.parse(s) as Line),
  });
  const snapshot = new PresenceSnapshot();
  snapshot.applyDirectory([0, 1, 2].map((i) => user(i)));
  snapshot.applyStatuses(new Map([0, 1, 2].map((i) => [id(i), "online"])), true);
  const maxBufferBytes = opts.maxBufferBytes ?? 1024 * 1024;
  const pool = new SocketPool({
    log,
    telemetry,
    maxConnections: opts.maxConnections ?? 100,
    pingIntervalMs: opts.pingIntervalMs ?? NEVER,
    maxBufferBytes,
  });
  const hub = new WsHub({
    pool,
    snapshot,
    keepaliveMs: opts.keepaliveMs ?? NEVER,
    replayWindowMs: 120_000,
    maxBufferBytes,
    telemetry,
  });
  const stream = new V2Stream({
    pool,
    snapshot,
    view: new PresenceView(snapshot),
    log,
    secrets: () => [SECRET],
    retainedChanges: 100,
    authTimeoutMs: AUTH_MS,
  });
  const server: Server = createServer();
  server.timeout = 30_000; // as the gateway's router sets it (idle HTTP connections)
  server.on("upgrade", (req, socket, head) => {
    // What the routes check before the handshake, reduced to admission.
    const authorized = req.headers.authorization === `Bearer ${SECRET}`;
    const room = req.url === "/ws" ? hub.hasRoom() : !authorized || stream.hasRoom();
    if (!room) return void socket.end("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    if (req.url === "/ws") hub.accept(req, socket, head, { resync: false });
    else stream.accept(req, socket, head, { authorized, since: undefined, filter: undefined });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  pool.start();
  hub.start();
  stream.start();
  const clients: WebSocket[] = [];
  t.after(async () => {
    for (const c of clients) c.terminate();
    pool.stop();
    pool.terminateAll();
    server.close();
  });
  return {
    pool,
    hub,
    stream,
    snapshot,
    closes,
    lines,
    async open(protocol, o = {}) {
      const headers: Record<string, string> =
        o.auth === "header" ? { Authorization: `Bearer ${SECRET}` } : {};
      const ws = new WebSocket(`${base}${protocol === "compat" ? "/ws" : "/stream"}`, {
        headers,
        autoPong: o.autoPong ?? true,
      });
      clients.push(ws);
      await once(ws, "open");
      // The server side is in the pool once the client has the 101; its first write may follow.
      return ws;
    },
    newest(protocol) {
      const all = [...pool.sockets(protocol)];
      assert.ok(all.length > 0, `no ${protocol} socket`);
      return all[all.length - 1]!;
    },
  };
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

describe("close codes: one table", () => {
  test("every reason has the code its protocol documents; v2's match V2_CLOSE and the client's", () => {
    const expected: Record<Exclude<CloseReason, "client">, number | undefined> = {
      shutdown: V2_CLOSE.goingAway,
      abuse: V2_CLOSE.protocolError,
      bad_message: V2_CLOSE.protocolError,
      unauthorized: V2_CLOSE.unauthorized,
      auth_timeout: V2_CLOSE.unauthorized,
      too_many_connections: V2_CLOSE.tooSlow,
      slow_consumer: V2_CLOSE.tooSlow,
      slow_catch_up: V2_CLOSE.tooSlow,
      unsent_total: V2_CLOSE.tooSlow,
      dead_peer: undefined,
    };
    for (const [reason, code] of Object.entries(expected)) {
      assert.equal(CLOSES[reason as keyof typeof CLOSES].code, code, reason);
    }
    assert.deepEqual(STREAM_CLOSE, V2_CLOSE, "the TypeScript client's codes are the server's");
    // The compat provider has always been told 1013 "too slow"; v2 clients what to do next.
    assert.deepEqual(closeFrame("slow_consumer", "compat"), { code: 1013, text: "too slow" });
    assert.deepEqual(closeFrame("slow_consumer", "v2"), {
      code: 1013,
      text: "too slow: reconnect with since",
    });
    assert.deepEqual(closeFrame("shutdown", "compat"), { code: 1001, text: "server shutting down" });
  });
});

// First in the file: on Node 20.20, after the admission test below had run, tick() did not run a
// mock interval created by a later test (MockTimers is still experimental there).
describe("compat keepalive and v2 auth timeout, on mock timers", () => {
  test("the keepalive sends one visible user's status per interval, round-robin", async (t) => {
    const r = await rig(t, { keepaliveMs: KEEPALIVE_MS });
    const client = await r.open("compat");
    const got: string[] = [];
    client.on("message", (data) => got.push((JSON.parse(data.toString()) as { email: string }).email));
    for (let i = 0; i < 4; i++) {
      const next = once(client, "message");
      t.mock.timers.tick(KEEPALIVE_MS);
      await next;
    }
    assert.deepEqual(got, [
      "user0@example.com",
      "user1@example.com",
      "user2@example.com",
      "user0@example.com",
    ]);
  });

  test("a v2 socket without its auth message is closed 4401 when the auth timeout runs out", async (t) => {
    const r = await rig(t);
    const client = await r.open("v2", { auth: "message" });
    const socket = r.newest("v2");
    const bye = closed(client);
    t.mock.timers.tick(AUTH_MS - 1);
    assert.equal(socket.closeReason, undefined, "still waiting");
    assert.equal(r.stream.pendingAuth, 1);
    t.mock.timers.tick(1);
    assert.deepEqual(await bye, { code: 4401, reason: "no auth message in time" });
    await once(socket, "close");
    assert.equal(r.stream.pendingAuth, 0);
    assert.deepEqual(r.closes, ["v2/auth_timeout"]);
  });
});

describe("SocketPool", () => {
  test("PRESENCE_MAX_CONNECTIONS counts compat and authenticated v2 sockets together", async (t) => {
    const r = await rig(t, { maxConnections: 2 });
    const compat = await r.open("compat");
    await r.open("v2", { auth: "header" });
    assert.equal(r.pool.connections, 2);
    assert.equal(r.hub.hasRoom(), false, "the compat route sees the v2 socket");
    assert.equal(r.stream.hasRoom(), false);
    // A socket waiting for its auth message is not counted, and is refused when it authenticates.
    const late = await r.open("v2", { auth: "message" });
    assert.equal(r.stream.pendingAuth, 1);
    assert.equal(r.pool.connections, 2);
    const lateClosed = closed(late);
    late.send(JSON.stringify({ type: "auth", secret: SECRET }));
    assert.deepEqual(await lateClosed, { code: 1013, reason: "connection limit reached" });
    // One compat socket leaves: one more fits, whichever protocol.
    const gone = once(r.newest("compat"), "close");
    compat.close();
    await gone;
    assert.equal(r.pool.connections, 1);
    assert.equal(r.stream.hasRoom(), true);
    assert.deepEqual(r.closes.sort(), ["compat/client", "v2/too_many_connections"]);
    assert.deepEqual(
      [...r.pool.list()].map((p) => p.protocol),
      ["v2"],
      "the admin page lists the counted sockets of both protocols",
    );
  });

  for (const protocol of ["compat", "v2"] as const) {
    test(`${protocol}: a socket that does not read is closed at the buffer cap, with telemetry and a log line`, async (t) => {
      const r = await rig(t, { maxBufferBytes: 1024 });
      const client = await r.open(protocol, { auth: "header" });
      const socket = r.newest(protocol);
      const tcp = (client as unknown as { _socket: { pause(): void } })._socket;
      tcp.pause(); // reads nothing from now on
      const gone = once(socket, "close");
      // Far more than the kernel's loopback buffers take: the rest stays unsent in the process.
      assert.equal(r.pool.write(socket, Buffer.alloc(32 * 1024 * 1024)), true, "under the cap: written");
      assert.ok(socket.bufferedAmount > 1024, `unsent ${socket.bufferedAmount}`);
      assert.equal(r.pool.write(socket, Buffer.from([0x81, 0])), false, "over the cap: refused");
      assert.equal(socket.closeReason, "slow_consumer");
      t.mock.timers.tick(1000); // it cannot read the close frame either: cut after 1 s
      await gone;
      assert.deepEqual(r.closes, [`unsent:${protocol}/slow_consumer`, `${protocol}/slow_consumer`]);
      const prefix = protocol === "compat" ? "ws" : "v2";
      assert.ok(r.lines.some((l) => l.event === `${prefix}_slow_consumer`));
      const bye = r.lines.find((l) => l.event === `${prefix}_disconnect`);
      assert.equal(bye?.reason, "slow_consumer");
    });

    test(`${protocol}: a peer that stops answering pings is dropped by the next round, with telemetry`, async (t) => {
      const r = await rig(t, { pingIntervalMs: PING_MS });
      await r.open(protocol, { auth: "header" });
      const healthy = r.newest(protocol);
      await r.open(protocol, { auth: "header", autoPong: false });
      const dead = r.newest(protocol);
      const pong = once(healthy, "pong");
      t.mock.timers.tick(PING_MS); // round 1: both pinged
      await pong;
      assert.equal(healthy.alive, true);
      assert.equal(dead.alive, false);
      const gone = once(dead, "close");
      t.mock.timers.tick(PING_MS); // round 2: no pong since round 1
      await gone;
      assert.equal(r.pool.size(protocol), 1, "the healthy socket stays");
      assert.equal(healthy.readyState, healthy.OPEN);
      assert.deepEqual(r.closes, [`${protocol}/dead_peer`]);
      const prefix = protocol === "compat" ? "ws" : "v2";
      assert.equal(r.lines.filter((l) => l.event === `${prefix}_dead_peer`).length, 1);
      assert.equal(r.lines.find((l) => l.event === `${prefix}_disconnect`)?.reason, "dead_peer");
    });
  }

  for (const protocol of ["compat", "v2"] as const) {
    test(`${protocol}: more than 100 client messages in one ping interval close the socket (1008)`, async (t) => {
      const r = await rig(t);
      const client = await r.open(protocol, { auth: "header" });
      const gone = once(r.newest(protocol), "close");
      const bye = closed(client);
      // v2: valid messages of an unknown type, each answered with an error (not a close).
      for (let i = 0; i < 101; i++) client.send(protocol === "v2" ? '{"type":"x"}' : "x");
      assert.deepEqual(await bye, { code: 1008, reason: "too many client messages" });
      await gone;
      assert.deepEqual(r.closes, [`${protocol}/abuse`]);
    });
  }

  test("an accepted socket does not keep the HTTP server's cleared idle timer", async (t) => {
    const r = await rig(t);
    await r.open("compat");
    const tcp = r.newest("compat").tcp!;
    const key = Object.getOwnPropertySymbols(tcp).find((k) => k.description === "timeout");
    assert.ok(
      key,
      "Node's socket timeout key moved: re-check dropClearedIdleTimer (src/http/sockets/socket.ts)",
    );
    assert.equal(tcp.timeout, 0, "ws cleared the idle timeout on upgrade");
    // Kept, it was ~200 bytes per idle socket (a Timeout and a bound callback).
    assert.equal((tcp as unknown as Record<symbol, unknown>)[key], null);
  });

  test("shutdown closes both protocols with 1001", async (t) => {
    const r = await rig(t);
    const a = await r.open("compat");
    const b = await r.open("v2", { auth: "header" });
    const [ca, cb] = [closed(a), closed(b)];
    r.pool.stop();
    assert.deepEqual(await ca, { code: 1001, reason: "server shutting down" });
    assert.deepEqual(await cb, { code: 1001, reason: "server shutting down" });
  });
});
