import type { IncomingMessage, ServerResponse } from "node:http";
import { sendError } from "./errors.js";

/**
 * Reads a JSON request body of at most `maxBytes`. Too large: 413 and the connection is closed;
 * not JSON: 400 `invalid_body` saying `expected`. Otherwise `onJson` gets the parsed value (and
 * answers). Errors on the request stream are ignored: the client is gone.
 */
export function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  maxBytes: number,
  expected: string,
  onJson: (body: unknown) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    if (res.headersSent) return;
    size += c.length;
    if (size > maxBytes) {
      sendError(res, "body_too_large", `at most ${maxBytes} bytes`, { Connection: "close" });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on("error", () => undefined);
  req.on("end", () => {
    if (res.headersSent) return;
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return sendError(res, "invalid_body", expected);
    }
    onJson(body);
  });
}
