import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { test } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { STATUSES, startInProcess, waitUntil, type Line } from "../helpers/in-process.js";
import { StreamConn } from "../helpers/v2-stream.js";

const TOKEN = `v2-slow-token-${process.pid}`;
const SECRET = `v2-slow-secret-${process.pid}`;

test("a v2 stream client that never reads is closed with 1013 past the buffer cap; a reading one keeps up", async (t) => {
  const CAP = 64 * 1024;
  const sim = new MattermostSimulator({ token: TOKEN, users: 2000, seed: 9 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await startInProcess(sim, TOKEN, SECRET, {
    PRESENCE_WS_MAX_BUFFER_BYTES: String(CAP),
    PRESENCE_POLL_INTERVAL_MS: "3600000", // cycles are driven by the test
    PRESENCE_DIRECTORY_REFRESH_MS: "3600000",
    LOG_LEVEL: "info",
  });
  t.after(() => gw.stop());
  await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");

  const healthy = await StreamConn.open(gw.url, { secret: SECRET });
  t.after(() => healthy.close());
  const stuck = await StreamConn.open(gw.url, { secret: SECRET });
  t.after(() => stuck.ws.terminate());
  await healthy.nth("ready");
  await stuck.nth("ready");
  const socket = (stuck.ws as unknown as { _socket: Socket })._socket;
  socket.pause(); // reads nothing from now on: the kernel buffers fill, then the gateway's

  let slowLine: Line | undefined;
  gw.onLine((l) => {
    if (l.event !== "v2_slow_consumer" || slowLine) return;
    slowLine = l;
    socket.resume(); // read again, so that the close frame queued behind the backlog arrives
  });
  const users = sim.listUsers().filter((u) => u.delete_at === 0 && !u.is_bot);
  for (let round = 1; !slowLine && round <= 300; round++) {
    for (const u of users) sim.setStatus(u.id, STATUSES[round % STATUSES.length]!);
    assert.equal(await gw.gateway.sync.runOnce(), true);
  }
  assert.ok(slowLine, "the socket that does not read was detected");
  assert.ok((slowLine.buffered as number) > CAP, "closed only past the cap");
  await stuck.until(() => stuck.closed !== undefined, 10_000, "the stuck socket to close");
  assert.equal(stuck.closed!.code, 1013);
  await waitUntil(() => gw.gateway.v2.stream.size === 1, 5000, "the stuck socket freed");

  // The reader kept its socket and saw every change.
  assert.equal(healthy.ws.readyState, WebSocket.OPEN);
  await healthy.until(
    () => {
      const last = healthy.messages.at(-1);
      return last?.type === "changes" && last.seq === gw.gateway.snapshot.lastSeq;
    },
    10_000,
    "the reader to catch up",
  );
  const ready = healthy.messages.find((m) => m.type === "ready")!;
  assert.equal(healthy.changes().length, gw.gateway.snapshot.lastSeq - ready.seq);
  assert.deepEqual(healthy.violations, []);
});
