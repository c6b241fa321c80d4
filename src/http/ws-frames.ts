import type { Socket } from "node:net";
import type { WebSocket } from "ws";

/**
 * One unmasked, final text frame holding `payload`, built once and written as-is to every
 * socket: the fan-out never re-frames or re-serializes per socket.
 */
export function textFrame(payload: string | Buffer): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload) : payload;
  // RFC 6455 §5.2: FIN + opcode 1 (text); server frames are not masked.
  let header: Buffer;
  if (data.length < 126) {
    header = Buffer.from([0x81, data.length]);
  } else if (data.length < 0x10000) {
    header = Buffer.from([0x81, 126, data.length >> 8, data.length & 0xff]);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(data.length), 2);
  }
  return Buffer.concat([header, data]);
}

/**
 * Writes pre-built frames straight to the socket under a `ws` connection, in one write
 * (one syscall for a whole poll cycle's changes). Safe because permessage-deflate is off, so
 * `ws` itself never holds frames back that ours could overtake. `_socket` (and `_receiver` below)
 * are `ws` internals: `ws` is pinned to one minor and test/unit/ws-internals.test.ts checks them.
 */
export function writeFrames(ws: WebSocket, frames: Buffer): boolean {
  const socket = (ws as unknown as { _socket: Socket | null })._socket;
  if (!socket || socket.destroyed || !socket.writable) return false;
  socket.write(frames);
  return true;
}

/**
 * Changes the largest message `ws` accepts from this socket from now on (a bigger one closes it
 * with 1009 as soon as its frame header arrives, before the payload is buffered). `ws` takes
 * maxPayload only per server, and a v2 socket may send 4 MiB once authenticated but only a small
 * auth message before; the receiver checks its `_maxPayload` on every frame, so raising it
 * after authentication applies to the next message.
 */
export function setMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload: number } })._receiver;
  if (receiver) receiver._maxPayload = bytes;
}
