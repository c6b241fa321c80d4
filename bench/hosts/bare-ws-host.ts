/**
 * The fan-out ceiling: a bare `ws` server (node:http + WebSocketServer, nothing else) that
 * broadcasts pre-built data on command:
 *   {cmd:"broadcast", count, mode:"send"}  `ws.send(payload)` per message per socket (idiomatic ws)
 *   {cmd:"broadcast", count, mode:"raw"}   the `count` frames pre-built into one buffer, written
 *                                           to each socket's net.Socket once
 * and answers `{type:"sent", t}` with `t` (ms, CLOCK_MONOTONIC) taken just before the first write.
 * `{cmd:"mem", warm?}` answers the memory after full GCs (bench/lib/mem-sample.ts). Payloads have the gateway's size and shape.
 *
 * The ping baseline, `{cmd:"ping", round, windowMs?, timeoutMs?}`, answers `{type:"ping", ...}` with
 * the same record as gateway-host's command of that name: with `round`, the hub's ping round as it
 * was before it was sliced (every socket in one synchronous pass: terminated if it did not answer
 * the previous ping, else `ws.ping()`), timed and with the event-loop delay over it (1 ms
 * resolution) until every socket has answered; without, an idle window of `windowMs`. Pong and
 * close listeners are added to the sockets by the first ping command (so `fanout` and `memory`
 * measure the server without them).
 */
import { createServer } from "node:http";
import type { Socket } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { memSample } from "../lib/mem-sample.js";
import { PingProbe, nowMs, type PingWindow } from "../lib/ping-window.js";

const send = (m: Record<string, unknown>): void => void process.send!(m);
const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true, maxPayload: 4096 });
wss.on("connection", (ws) => ws.on("error", () => undefined));

function payload(i: number): Buffer {
  const id = `u${String(i).padStart(25, "0")}`;
  return Buffer.from(
    `{"user_id":"${id}","email":"user.${String(i).padStart(5, "0")}@example.com","status":"away"}\n`,
  );
}

function frame(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x81, data.length]), data]); // payloads are < 126 bytes
}

/** An IPC command (see the header). */
interface Command {
  cmd: string;
  /** mem: grow the new space first (see memSample). */
  warm?: boolean;
  count?: number;
  mode?: string;
  round?: boolean;
  windowMs?: number;
  timeoutMs?: number;
}

// The ping baseline; the window is measured by PingProbe, as in gateway-host.ts.
const probe = new PingProbe();
/** Per socket: answered the last ping (the old hub's `alive`). */
const peers = new WeakMap<WebSocket, { alive: boolean }>();
let closed = 0;
let deadPeers = 0;

/** The hub's ping round before it was sliced: one synchronous pass, `ws.ping()` per socket. */
function pingAll(): void {
  for (const ws of wss.clients) {
    const peer = peers.get(ws);
    if (!peer || ws.readyState !== ws.OPEN) continue;
    if (!peer.alive) {
      deadPeers++;
      ws.terminate();
      continue;
    }
    peer.alive = false;
    ws.ping();
  }
}

function pingWindow(m: Command): Promise<PingWindow> {
  for (const ws of wss.clients) {
    if (peers.has(ws)) continue;
    const peer = { alive: true };
    peers.set(ws, peer);
    ws.on("pong", () => {
      peer.alive = true;
      probe.pong();
    });
    ws.on("close", () => closed++);
  }
  return probe.window(m, {
    sockets: [...wss.clients].filter((ws) => ws.readyState === ws.OPEN).length,
    round(t0) {
      pingAll();
      const passMs = nowMs() - t0;
      return { firstSliceMs: passMs, roundMs: passMs, slices: 1 };
    },
    after: () => ({ socketsAfter: wss.clients.size, closed, deadPeers }),
  });
}

process.on("message", (m: Command) => {
  if (m.cmd === "ping") {
    void pingWindow(m).then((w) => send({ type: "ping", ...w }));
  } else if (m.cmd === "broadcast") {
    const count = m.count ?? 1;
    const payloads = Array.from({ length: count }, (_, i) => payload(i));
    if (m.mode === "raw") {
      const frames = Buffer.concat(payloads.map(frame));
      const t = Number(process.hrtime.bigint()) / 1e6;
      for (const ws of wss.clients) {
        const socket = (ws as unknown as { _socket: Socket })._socket;
        if (ws.readyState === ws.OPEN) socket.write(frames);
      }
      send({ type: "sent", t });
    } else {
      const t = Number(process.hrtime.bigint()) / 1e6;
      for (const ws of wss.clients) for (const p of payloads) ws.send(p, { binary: false });
      send({ type: "sent", t });
    }
  } else if (m.cmd === "mem") {
    void memSample(m.warm === true).then((mem) => send({ type: "mem", ...mem, sockets: wss.clients.size }));
  }
});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address() as { port: number };
  send({ type: "ready", url: `http://127.0.0.1:${addr.port}` });
});
const stop = (): void => {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("disconnect", stop);
