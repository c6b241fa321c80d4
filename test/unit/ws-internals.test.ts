import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Socket, type AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { setMaxPayload, textFrame, writeFrames } from "../../src/http/ws-frames.js";

/*
 * The raw frame writer (src/http/ws-frames.ts) and the unsent-bytes cap lean on `ws` internals
 * that no semver promise covers. `ws` is pinned to one minor (package.json "~8.23.0"); these
 * checks say which internal moved if an upgrade breaks one of them, against a real server and
 * client on loopback.
 */

const ROOT = new URL("../../../", import.meta.url);

function moved(internal: string, detail: string): string {
  return (
    `ws internal ${internal} ${detail}: src/http/ws-frames.ts relies on it; ` +
    "re-check the raw frame writer (writeFrames, setMaxPayload, the unsent-bytes cap) before upgrading ws"
  );
}

let wss: WebSocketServer;
let url: string;
/** Clients opened by the tests, terminated at the end. */
const clients: WebSocket[] = [];

before(async () => {
  // As the gateway runs it: no permessage-deflate (see writeFrames).
  wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 1024 });
  await once(wss, "listening");
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
});

after(async () => {
  for (const c of clients) c.terminate();
  for (const s of wss.clients) s.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
});

/** A connected client and the server's side of it. */
async function pair(): Promise<{ client: WebSocket; server: WebSocket }> {
  const accepted = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(url, { perMessageDeflate: false });
  clients.push(client);
  const [[server]] = await Promise.all([accepted, once(client, "open")]);
  // ws reports a protocol error (such as Message Too Big) here before closing; tests await it.
  server.on("error", () => undefined);
  return { client, server };
}

/** The next `n` messages the client receives, as text, or a rejection if it closes first. */
function nextMessages(client: WebSocket, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const got: string[] = [];
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      assert.equal(isBinary, false, "a text frame");
      got.push(data.toString());
      if (got.length === n) {
        client.off("message", onMessage);
        client.off("close", onClose);
        resolve(got);
      }
    };
    const onClose = (code: number): void =>
      reject(new Error(`client closed with ${code} after ${got.length} messages`));
    client.on("message", onMessage);
    client.on("close", onClose);
  });
}

test("the installed ws is the minor package.json pins", () => {
  const pkg = JSON.parse(readFileSync(new URL("package.json", ROOT), "utf8")) as {
    dependencies: Record<string, string>;
  };
  const range = pkg.dependencies.ws ?? "";
  const pinned = /^~(\d+)\.(\d+)\.\d+$/.exec(range);
  assert.ok(
    pinned,
    `package.json pins ws as "${range}": keep it to one minor ("~x.y.z"), since the raw frame writer reaches into ws internals`,
  );
  const installed = (createRequire(import.meta.url)("ws/package.json") as { version: string }).version;
  const [major, minor] = installed.split(".");
  assert.equal(
    `${major}.${minor}`,
    `${pinned[1]}.${pinned[2]}`,
    `ws ${installed} is installed but package.json pins ${range}: run this file before changing either`,
  );
});

test("_socket is the net.Socket a raw frame written to it reaches the client through, intact and in order", async () => {
  const { client, server } = await pair();
  const socket = (server as unknown as { _socket?: unknown })._socket;
  assert.ok(socket instanceof Socket, moved("`_socket`", "is no longer the connection's net.Socket"));

  // The three length encodings of RFC 6455 §5.2, in one write, as a poll cycle's batch is sent.
  const payloads = ["short", "m".repeat(300), "l".repeat(70_000)];
  const received = nextMessages(client, payloads.length);
  assert.equal(
    writeFrames(server, Buffer.concat(payloads.map((p) => textFrame(p)))),
    true,
    moved("`_socket`", "was not writable on an open connection"),
  );
  assert.deepEqual(
    await received,
    payloads,
    moved("`_socket`", "did not carry the raw frames to the client"),
  );

  // ws's own frames and ours share the socket in the order they were written.
  const mixed = nextMessages(client, 3);
  server.send("from ws");
  assert.equal(writeFrames(server, textFrame("raw")), true, moved("`_socket`", "was not writable"));
  server.send("ws again");
  assert.deepEqual(
    await mixed,
    ["from ws", "raw", "ws again"],
    moved("`_sender`", "held a frame back that a raw one overtook"),
  );
});

test("bufferedAmount counts what was written raw to _socket and not yet sent", async () => {
  const { client, server } = await pair();
  // The client stops reading, so the kernel buffers fill and the rest waits in the socket.
  (client as unknown as { _socket: Socket })._socket.pause();
  const big = textFrame(Buffer.alloc(16 * 1024 * 1024, 0x61));
  assert.equal(writeFrames(server, big), true, moved("`_socket`", "was not writable"));
  const socket = (server as unknown as { _socket: Socket })._socket;
  assert.ok(socket.writableLength > 0, "16 MiB to a client that does not read leaves some unsent");
  assert.ok(
    server.bufferedAmount >= socket.writableLength,
    moved(
      "`bufferedAmount`",
      `(${server.bufferedAmount}) no longer counts the raw writes to _socket (${socket.writableLength} unsent)`,
    ),
  );
});

test("_receiver._maxPayload is the per-socket limit setMaxPayload raises and lowers (1009 above it)", async () => {
  const { client, server } = await pair();
  const receiver = (server as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  assert.ok(receiver, moved("`_receiver`", "is gone"));
  assert.equal(
    receiver._maxPayload,
    1024,
    moved("`_receiver._maxPayload`", "no longer holds the server's maxPayload"),
  );

  // Raised: a message over the server's limit is accepted (a v2 socket once authenticated).
  setMaxPayload(server, 4096);
  const big = "b".repeat(2000);
  const got = once(server, "message") as Promise<[Buffer]>;
  client.send(big);
  const [data] = await got.catch((err: Error) =>
    assert.fail(
      moved("`_receiver._maxPayload`", `raised did not let a larger message through (${err.message})`),
    ),
  );
  assert.equal(
    data.toString(),
    big,
    moved("`_receiver._maxPayload`", "raised did not let a larger message through"),
  );

  // Lowered: a message over it closes the socket with 1009 (Message Too Big).
  setMaxPayload(server, 16);
  const closed = once(client, "close") as Promise<[number]>;
  const refused = once(server, "error") as Promise<[Error & { code?: string }]>;
  client.send("x".repeat(17));
  const [[code], [err]] = await Promise.all([closed, refused]);
  assert.equal(err.code, "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH");
  assert.equal(
    code,
    1009,
    moved("`_receiver._maxPayload`", "lowered did not close an oversized message with 1009"),
  );
});

test("a ping written raw is answered, and ws reports the pong", async () => {
  const { server } = await pair();
  const pong = once(server, "pong");
  assert.equal(writeFrames(server, Buffer.from([0x89, 0x00])), true, moved("`_socket`", "was not writable"));
  await pong;
});
