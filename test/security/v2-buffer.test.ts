/**
 * Issue 13, item 2: every write on every WebSocket goes through one unsent-bytes cap. Replies to
 * `subscribe`/`unsubscribe` bypassed it: one v2 socket that never read and sent 100 tiny
 * `unsubscribe` messages took RSS from 222 MB to 814 MB; 200 authenticated sockets that never
 * read took RSS to 1.44 GB (each held its snapshot, allowed as "slack", until the ping timeout).
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { describe, test, type TestContext } from "node:test";
import WebSocket from "ws";
import {
  UnsentBytes,
  type BudgetedSocket,
  type UnsentCloseReason,
} from "../../src/http/sockets/unsent-bytes.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";
import { startInProcess, waitUntil, type InProcessGateway, type Line } from "../helpers/in-process.js";

const TOKEN = `sec-buffer-token-${process.pid}`;
const SECRET = `sec-buffer-secret-${process.pid}-abcdefgh`;

async function setup(t: TestContext, env: Record<string, string>): Promise<InProcessGateway> {
  const sim = new MattermostSimulator({ token: TOKEN, users: 2000, seed: 12 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await startInProcess(sim, TOKEN, SECRET, {
    LOG_LEVEL: "info",
    PRESENCE_POLL_INTERVAL_MS: "3600000", // no change batch: only the replies are written
    PRESENCE_DIRECTORY_REFRESH_MS: "3600000",
    ...env,
  });
  t.after(() => gw.stop());
  await waitUntil(() => gw.gateway.snapshot.ready, 15_000, "first snapshot");
  return gw;
}

/**
 * An authenticated v2 socket, caught up, that reads nothing from now on. A raw `ws` client that
 * does nothing with messages but watch for `ready`, so that once it reads again it drains fast.
 */
interface Stuck {
  ws: WebSocket;
  socket: Socket;
  closed: number | undefined;
  send(msg: unknown): void;
}

async function stuckSocket(t: TestContext, gw: InProcessGateway): Promise<Stuck> {
  const ws = new WebSocket(`${gw.url.replace("http", "ws")}/api/v2/stream`, {
    headers: { Authorization: `Bearer ${SECRET}` },
  });
  ws.on("error", () => undefined);
  t.after(() => ws.terminate());
  const stuck: Stuck = {
    ws,
    socket: undefined as unknown as Socket,
    closed: undefined,
    send: (msg) => ws.send(JSON.stringify(msg), () => undefined),
  };
  ws.on("close", (code) => (stuck.closed = code));
  await new Promise<void>((resolve, reject) => {
    const onMessage = (data: Buffer): void => {
      if (data.length > 200 || !data.toString().startsWith('{"type":"ready"')) return;
      ws.off("message", onMessage);
      resolve();
    };
    ws.on("message", onMessage);
    ws.once("close", () => reject(new Error("closed before ready")));
  });
  stuck.socket = (ws as unknown as { _socket: Socket })._socket;
  stuck.socket.pause(); // the kernel buffers fill, then the gateway's
  return stuck;
}

async function metric(gw: InProcessGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

describe("unsent bytes on /api/v2/stream", () => {
  test("a socket that never reads cannot stack snapshots with unsubscribe: 1013 once over the cap, in the metrics and the log", async (t) => {
    const CAP = 64 * 1024;
    const gw = await setup(t, { PRESENCE_WS_MAX_BUFFER_BYTES: String(CAP) });
    const stuck = await stuckSocket(t, gw);
    const full = (
      await (
        await fetch(`${gw.url}/api/v2/presence`, { headers: { Authorization: `Bearer ${SECRET}` } })
      ).arrayBuffer()
    ).byteLength;

    let slowLine: Line | undefined;
    gw.onLine((l) => {
      if (l.event !== "v2_slow_consumer" || slowLine) return;
      slowLine = l;
      stuck.socket.resume(); // read again, so that the close frame queued behind the backlog arrives
    });
    for (let i = 0; i < 100; i++) stuck.send({ type: "unsubscribe" });
    await waitUntil(() => slowLine !== undefined, 15_000, "the socket that does not read detected");
    assert.equal(slowLine!.reason, "slow_consumer");
    const buffered = slowLine!.buffered as number;
    assert.ok(buffered > CAP, "closed only past the cap");
    // Refused before writing: at most the cap plus the one snapshot allowed over it.
    assert.ok(buffered <= CAP + full + 1024, `held ${buffered}, cap ${CAP}, snapshot ${full}`);
    await waitUntil(() => stuck.closed !== undefined, 10_000, "the close");
    assert.equal(stuck.closed, 1013);
    await waitUntil(() => gw.gateway.v2.stream.size === 0, 5000, "the socket freed");
    assert.ok(gw.lines.some((l) => l.event === "v2_disconnect" && l.reason === "slow_consumer"));
    assert.equal(
      await metric(gw, 'outlook_presence_unsent_closes_total{protocol="v2",reason="slow_consumer"}'),
      1,
    );
  });

  test("all sockets together: over PRESENCE_MAX_BUFFERED_TOTAL_BYTES the largest holders are closed", async (t) => {
    const TOTAL = 4 * 1024 * 1024;
    // A per-socket cap no socket reaches here: only the total can stop them.
    const gw = await setup(t, {
      PRESENCE_WS_MAX_BUFFER_BYTES: String(256 * 1024 * 1024),
      PRESENCE_MAX_BUFFERED_TOTAL_BYTES: String(TOTAL),
    });
    const stuck = await Promise.all(Array.from({ length: 6 }, () => stuckSocket(t, gw)));
    let exceeded: Line | undefined;
    gw.onLine((l) => {
      if (l.event !== "unsent_total_exceeded" || exceeded) return;
      exceeded = l;
      for (const s of stuck) s.socket.resume();
    });
    for (let round = 0; round < 40 && !exceeded; round++) {
      for (const s of stuck) if (s.ws.readyState === WebSocket.OPEN) s.send({ type: "unsubscribe" });
      await new Promise((r) => setImmediate(r));
    }
    await waitUntil(() => exceeded !== undefined, 15_000, "the total to be exceeded");
    assert.ok((exceeded!.left as number) <= TOTAL * 0.9, `left ${exceeded!.left}`);
    assert.ok((exceeded!.closedV2 as number) >= 1);
    // Everything the gateway holds unsent now is within the total.
    const unsent = gw.gateway.sockets.unsent.unsent();
    assert.ok(unsent.v2 + unsent.compat <= TOTAL, JSON.stringify(unsent));
    await waitUntil(() => stuck.some((s) => s.closed !== undefined), 10_000, "a close");
    const codes = stuck.flatMap((s) => (s.closed !== undefined ? [s.closed] : []));
    // 1013 arrives once the reader has drained what was queued before it; one that cannot within
    // the second the gateway grants sees the cut (1006).
    assert.ok(
      codes.includes(1013) && codes.every((c) => c === 1013 || c === 1006),
      `close codes ${codes.join(",")}`,
    );
    assert.ok(gw.lines.some((l) => l.event === "v2_disconnect" && l.reason === "unsent_total"));
    assert.ok(
      (await metric(gw, 'outlook_presence_unsent_closes_total{protocol="v2",reason="unsent_total"}')) >= 1,
    );
  });
});

test("the unfiltered snapshot is framed once per snapshot version and shared by every socket", async (t) => {
  const gw = await setup(t, {});
  const stream = gw.gateway.v2.stream as unknown as { snapshotFrame(c: { filter?: unknown }): Buffer };
  const a = stream.snapshotFrame({});
  // Queued on 200 sockets, one copy each was 200 snapshots of memory (RSS 998 MB at 30,000 users).
  assert.equal(stream.snapshotFrame({}), a, "the same bytes, not a copy");
  const filtered = stream.snapshotFrame({
    filter: { emails: new Set(["x@example.invalid"]), ids: new Set() },
  });
  assert.notEqual(filtered, a);
});

/** A stand-in for a pool's `ws` socket: what it holds unsent is set by the test. */
function fakeSocket(remote: string): BudgetedSocket & { bufferedAmount: number } {
  const ws = {
    lane: "v2" as const,
    remote,
    OPEN: 1,
    readyState: 1,
    bufferedAmount: 0,
    closeReason: undefined as string | undefined,
    _socket: {
      destroyed: false,
      writable: true,
      write(chunk: Buffer) {
        ws.bufferedAmount += chunk.length;
      },
    },
  };
  return ws;
}

describe("UnsentBytes: the catch-up deadline", () => {
  test("a socket that does not take its snapshot in time is closed; one that drains is kept", () => {
    let now = 0;
    const closed: [string, UnsentCloseReason][] = [];
    const counted: string[] = [];
    const slow = fakeSocket("slow");
    const fine = fakeSocket("fine");
    const budget = new UnsentBytes({
      sockets: () => [slow, fine],
      close: (s, reason) => {
        s.closeReason = reason;
        closed.push([s.remote, reason]);
      },
      perSocket: 1000,
      total: 1_000_000,
      log: createLogger("silent", new SecretScrubber()),
      telemetry: { ...NO_TELEMETRY, unsentClosed: (p, r) => counted.push(`${p}/${r}`) },
      now: () => now,
      catchUpGraceMs: 10_000,
      catchUpMsPerMiB: 4000,
    });
    for (const s of [slow, fine]) {
      assert.equal(budget.write(s, Buffer.alloc(5000), true), true, "a catch-up may go over the cap");
    }
    now = 9_000;
    budget.sweep();
    assert.deepEqual(closed, []);
    fine.bufferedAmount = 500; // it read its snapshot
    now = 10_100;
    budget.sweep();
    assert.deepEqual(closed, [["slow", "slow_catch_up"]]);
    assert.deepEqual(counted, ["v2/slow_catch_up"]);
    // The one that drained gets live writes, but no second catch-up while over the cap again.
    assert.equal(budget.write(fine, Buffer.alloc(800)), true);
    assert.equal(budget.write(fine, Buffer.alloc(10), true), false);
    assert.deepEqual(closed.at(-1), ["fine", "slow_consumer"]);
  });
});

describe("UnsentBytes: the total", () => {
  test("a catch-up queued as the same Buffer on many sockets counts once; over the total the largest holders go", () => {
    const closed: string[] = [];
    const lines: Line[] = [];
    const sockets = ["a", "b", "c", "d"].map(fakeSocket);
    const budget = new UnsentBytes({
      sockets: () => sockets,
      close: (s, reason) => {
        s.closeReason = reason;
        closed.push(s.remote);
      },
      perSocket: 1000,
      total: 10_000,
      log: createLogger("warn", new SecretScrubber(), {
        write: (s: string) => void lines.push(JSON.parse(s) as Line),
      }),
    });
    const snapshot = Buffer.alloc(6000);
    for (const s of sockets) assert.equal(budget.write(s, snapshot, true, true), true);
    assert.deepEqual(budget.unsent(), { compat: 0, v2: 6000 }, "four sockets, one snapshot in memory");
    assert.deepEqual(closed, []);
    // Private bytes on top: 6000 shared + 3 × 1500 = 10,500 > 10,000.
    for (const [i, s] of sockets.slice(0, 3).entries())
      assert.equal(budget.write(s, Buffer.alloc(1400 + 50 * i)), true);
    assert.deepEqual(closed, ["c"], "the largest holder, until the rest hold at most 90%");
    const line = lines.find((l) => l.event === "unsent_total_exceeded")!;
    assert.equal(line.closedV2, 1);
    assert.ok((line.left as number) <= 9000, `left ${line.left}`);
  });
});
