/**
 * The HTTP server closes connections that stay quiet (a peer that connects and never sends a
 * byte would otherwise hold a file descriptor forever), but never an upgraded WebSocket.
 */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";
import { createHttpServer } from "../../src/http/router.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";
import { waitUntil } from "../helpers/in-process.js";

const IDLE_MS = 300;

async function listen(): Promise<{ server: Server; port: number; wss: WebSocketServer }> {
  const wss = new WebSocketServer({ noServer: true });
  const server = createHttpServer(
    createLogger("silent", new SecretScrubber()),
    NO_TELEMETRY,
    [
      {
        routes: [{ path: "/ok", methods: ["GET"], auth: "none", handle: (_req, res) => res.end("ok") }],
        upgrades: [
          {
            path: "/ws",
            auth: "none",
            handle: (req, socket, head) => wss.handleUpgrade(req, socket, head, () => undefined),
          },
        ],
      },
    ],
    { idleTimeoutMs: IDLE_MS },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port, wss };
}

test("a connection that sends nothing is closed after the idle timeout; a WebSocket is not", async (t) => {
  const { server, port, wss } = await listen();
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections();
    server.close();
  });
  const silent = connect(port, "127.0.0.1");
  let silentClosed = false;
  silent.on("close", () => (silentClosed = true));
  silent.on("error", () => undefined);
  t.after(() => silent.destroy());

  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  t.after(() => ws.terminate());
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));

  await waitUntil(() => silentClosed, 10_000, "the silent connection closed by the server");
  // A quiet connection opened after the WebSocket is closed for it: the WebSocket, as quiet and
  // older, would have been closed by then too.
  const later = connect(port, "127.0.0.1");
  let laterClosed = false;
  later.on("close", () => (laterClosed = true));
  later.on("error", () => undefined);
  t.after(() => later.destroy());
  await waitUntil(() => laterClosed, 10_000, "a later silent connection closed by the server");
  assert.equal(ws.readyState, WebSocket.OPEN, "the quiet WebSocket is still open");
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/ok`)).text(), "ok", "the server still answers");
});
