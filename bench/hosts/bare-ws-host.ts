/**
 * The fan-out ceiling: a bare `ws` server (node:http + WebSocketServer, nothing else) that
 * broadcasts pre-built data on command:
 *   {cmd:"broadcast", count, mode:"send"}  `ws.send(payload)` per message per socket (idiomatic ws)
 *   {cmd:"broadcast", count, mode:"raw"}   the `count` frames pre-built into one buffer, written
 *                                           to each socket's net.Socket once
 * and answers `{type:"sent", t}` with `t` (ms, CLOCK_MONOTONIC) taken just before the first write.
 * `{cmd:"mem"}` answers the memory after a full GC. Payloads have the gateway's size and shape.
 */
import { createServer } from "node:http";
import type { Socket } from "node:net";
import { WebSocketServer } from "ws";

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

process.on("message", (m: { cmd: string; count?: number; mode?: string }) => {
  if (m.cmd === "broadcast") {
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
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    send({ type: "mem", ...process.memoryUsage(), sockets: wss.clients.size, gc: gc !== undefined });
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
