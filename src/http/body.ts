import type { IncomingMessage, ServerResponse } from "node:http";
import { sendError } from "./errors.js";

/**
 * After a 413, the rest of an oversized body is read and dropped, up to this many bytes, and the
 * connection stays usable: closing a socket that still holds unread data makes the kernel send a
 * reset, which can reach the client before it has read the 413 (it then sees only "connection
 * reset"; the v2 test caught this under load). Past this the socket is cut anyway, so an endless
 * body costs a bounded amount.
 */
const DRAIN_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Reads and drops a request body that is answered without it (refused before reading), up to
 * DRAIN_MAX_BYTES; past that the socket is cut, so a client cannot hold a refused request open
 * by sending forever.
 */
export function discardBody(req: IncomingMessage): void {
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size > DRAIN_MAX_BYTES) req.destroy();
  });
  req.on("error", () => undefined);
}

/**
 * Reads a JSON request body of at most `maxBytes`. Too large (declared or sent): 413 at once, the
 * rest of the body drained (see DRAIN_MAX_BYTES); not JSON: 400 `invalid_body` saying
 * `expected`. Otherwise `onJson` gets the parsed value (and answers). Errors on the request stream
 * are ignored: the client is gone.
 */
export function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  maxBytes: number,
  expected: string,
  onJson: (body: unknown) => void,
): void {
  let chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  const refuse = (): void => {
    tooLarge = true;
    chunks = [];
    sendError(res, "body_too_large", `at most ${maxBytes} bytes`);
  };
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (tooLarge) {
      if (size > maxBytes + DRAIN_MAX_BYTES) req.destroy();
      return;
    }
    if (size > maxBytes) return refuse();
    chunks.push(c);
  });
  req.on("error", () => undefined);
  // Refused after the listener is on, so the body is drained rather than left unread.
  if (Number(req.headers["content-length"]) > maxBytes) refuse();
  req.on("end", () => {
    if (tooLarge || res.headersSent) return;
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return sendError(res, "invalid_body", expected);
    }
    onJson(body);
  });
}
