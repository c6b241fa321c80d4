/**
 * Load generator: `count` WebSocket clients from one source address, as light as possible so the
 * figures measure the server: a hand-rolled RFC 6455 client on raw TCP that only counts text frames
 * (no parsing, no per-message allocation) and answers pings.
 *
 * Args: <url-with-path> <count> <localAddress>. After connecting all sockets it sends
 * `{type:"ready", connected, failed}`. Commands:
 *   {cmd:"arm", expect}  reset counters; once every socket has `expect` new text frames, reply
 *                        `{type:"done", first, last}`: per socket, when (ms, CLOCK_MONOTONIC) its
 *                        first and its expect-th frame arrived
 *   {cmd:"collect"}      reply `{type:"partial", ...}` with what arrived so far (after a timeout)
 *   {cmd:"count"}        reply `{type:"count", sockets, closed, min, max, total, firstOpenAt, lastTextAt}`:
 *                        text frames per socket since it connected (min/max over the connected
 *                        sockets, total over all), when the first socket's upgrade was answered and
 *                        when the last text frame arrived (ms, CLOCK_MONOTONIC; 0: none yet).
 *                        Resets nothing (the per-socket counts are those `arm` last reset, if it ran).
 */
import { connect, type Socket } from "node:net";

const [rawUrl, rawCount, localAddress] = process.argv.slice(2);
const url = new URL(rawUrl!);
const count = Number(rawCount);
const CONNECT_CONCURRENCY = 256;
const send = (m: Record<string, unknown>): void => void process.send!(m);
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const PONG_EMPTY = Buffer.from([0x8a, 0x80, 0, 0, 0, 0]);

interface Conn {
  socket: Socket;
  frames: number;
}
/** Indexed by connection number; holes where a connection failed. */
const conns: (Conn | undefined)[] = [];
let attached = 0;
let closed = 0;
let expect = 0;
let armed = false;
let doneCount = 0;
let first = new Float64Array(0);
let last = new Float64Array(0);
let firstOpenAt = 0;
let lastTextAt = 0;

function attach(index: number, socket: Socket, rest: Buffer): void {
  const conn: Conn = { socket, frames: 0 };
  conns[index] = conn;
  if (attached++ === 0) firstOpenAt = nowMs();
  // Parser state: header bytes collected so far, payload bytes still to skip.
  const hdr = new Uint8Array(10);
  let hdrLen = 0;
  let skip = 0;
  let opcode = 0;
  let control: number[] | undefined;
  const frameDone = (t: number): void => {
    if (opcode === 1) {
      conn.frames++;
      lastTextAt = t;
      if (armed) {
        if (conn.frames === 1) first[index] = t;
        if (conn.frames === expect) {
          last[index] = t;
          if (++doneCount === attached) finish();
        }
      }
    } else if (opcode === 9) {
      const data = Buffer.from(control ?? []);
      socket.write(
        data.length === 0
          ? PONG_EMPTY
          : Buffer.concat([Buffer.from([0x8a, 0x80 | data.length, 0, 0, 0, 0]), data]),
      );
    } else if (opcode === 8) {
      socket.destroy();
    }
    control = undefined;
  };
  const onData = (chunk: Buffer): void => {
    let t = -1;
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const take = Math.min(skip, chunk.length - i);
        if (control) for (let j = 0; j < take; j++) control.push(chunk[i + j]!);
        skip -= take;
        i += take;
        if (skip === 0) frameDone(t < 0 ? (t = nowMs()) : t);
        continue;
      }
      hdr[hdrLen++] = chunk[i++]!;
      if (hdrLen < 2) continue;
      const len7 = hdr[1]! & 0x7f;
      const need = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
      if (hdrLen < need) continue;
      opcode = hdr[0]! & 0x0f;
      const len =
        len7 === 126
          ? (hdr[2]! << 8) | hdr[3]!
          : len7 === 127
            ? Number(Buffer.from(hdr).readBigUInt64BE(2))
            : len7;
      hdrLen = 0;
      control = opcode >= 8 ? [] : undefined;
      if (len === 0) frameDone(t < 0 ? (t = nowMs()) : t);
      else skip = len;
    }
  };
  socket.on("data", onData);
  socket.on("close", () => closed++);
  if (rest.length > 0) onData(rest);
}

function finish(): void {
  armed = false;
  send({ type: "done", first, last });
}

function open(index: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port), localAddress });
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const fail = (): void => {
      socket.destroy();
      resolve(false);
    };
    const timer = setTimeout(fail, 30_000);
    socket.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    socket.once("connect", () =>
      socket.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    const onHead = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onHead);
      clearTimeout(timer);
      if (!buf.subarray(0, 12).toString().startsWith("HTTP/1.1 101")) return fail();
      attach(index, socket, buf.subarray(end + 4));
      resolve(true);
    };
    socket.on("data", onHead);
  });
}

let next = 0;
let connected = 0;
let failed = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const i = next++;
    if (await open(i)) connected++;
    else failed++;
  }
}
await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, count) }, worker));

process.on("message", (m: { cmd: string; expect?: number }) => {
  if (m.cmd === "arm") {
    expect = m.expect ?? 1;
    for (const c of conns) if (c) c.frames = 0;
    // Entries stay 0 for failed connections (and, in a partial answer, unfinished ones).
    first = new Float64Array(count);
    last = new Float64Array(count);
    doneCount = 0;
    armed = true;
    send({ type: "armed" });
  } else if (m.cmd === "collect") {
    armed = false;
    send({ type: "partial", first, last, done: doneCount, closed });
  } else if (m.cmd === "count") {
    let min = Infinity;
    let max = 0;
    let total = 0;
    let sockets = 0;
    for (const c of conns) {
      if (!c) continue;
      sockets++;
      total += c.frames;
      if (c.frames < min) min = c.frames;
      if (c.frames > max) max = c.frames;
    }
    send({ type: "count", sockets, closed, min: sockets > 0 ? min : 0, max, total, firstOpenAt, lastTextAt });
  }
});
process.on("disconnect", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
send({ type: "ready", connected, failed });
