import WebSocket from "ws";
import type { ChangeJson, ServerMessage } from "../../src/http/v2/protocol.js";
import { validate } from "./v2-schema.js";

/**
 * A raw /api/v2/stream client for tests: records every message, checks each against the
 * ServerMessage schema of the published OpenAPI document, and waits for conditions. A message
 * that violates the schema fails every later wait (until, nth).
 */
export class StreamConn {
  readonly messages: ServerMessage[] = [];
  readonly violations: string[] = [];
  closed: { code: number; reason: string } | undefined;
  private listeners: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      const text = data.toString();
      let msg: ServerMessage;
      try {
        if (isBinary) throw new Error("binary");
        msg = JSON.parse(text) as ServerMessage;
      } catch {
        this.violations.push(`not JSON: ${text.slice(0, 100)}`);
        return;
      }
      const errors = validate("ServerMessage", msg);
      if (errors.length > 0) this.violations.push(`${errors.join("; ")} in ${text.slice(0, 200)}`);
      this.messages.push(msg);
      this.notify();
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.notify();
    });
    ws.on("error", () => undefined);
  }

  /** Opens the socket; `secret` goes in the Authorization header unless undefined. */
  static async open(
    base: string,
    opts: { secret?: string; since?: number | string; query?: string } = {},
  ): Promise<StreamConn> {
    const params = [opts.since !== undefined ? `since=${opts.since}` : "", opts.query ?? ""]
      .filter(Boolean)
      .join("&");
    const url = `${base.replace(/^http/, "ws")}/api/v2/stream${params ? `?${params}` : ""}`;
    const ws = new WebSocket(url, {
      headers: opts.secret !== undefined ? { Authorization: `Bearer ${opts.secret}` } : {},
    });
    const conn = new StreamConn(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    return conn;
  }

  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** Every change received, in order, with the seq of the message that carried it. */
  changes(): (ChangeJson & { msgSeq: number })[] {
    return this.messages.flatMap((m) =>
      m.type === "changes" ? m.changes.map((c) => ({ ...c, msgSeq: m.seq })) : [],
    );
  }

  until(pred: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    const violated = (): Error | undefined =>
      this.violations.length > 0
        ? new Error(`message not in the published schema: ${this.violations[0]}`)
        : undefined;
    if (violated()) return Promise.reject(violated());
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const bad = violated();
        if (bad) {
          clearTimeout(timer);
          this.listeners = this.listeners.filter((l) => l !== check);
          return reject(bad);
        }
        if (!pred()) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(
          new Error(
            `timed out waiting for ${what}; last: ${JSON.stringify(this.messages.slice(-2)).slice(0, 500)}`,
          ),
        );
      }, timeoutMs);
      this.listeners.push(check);
    });
  }

  /** Resolves with the nth (0-based) message of a type once it arrived. */
  async nth<T extends ServerMessage["type"]>(
    type: T,
    n = 0,
    timeoutMs = 10_000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    const of = () => this.messages.filter((m) => m.type === type);
    await this.until(() => of().length > n, timeoutMs, `${type} #${n}`);
    return of()[n] as Extract<ServerMessage, { type: T }>;
  }

  /** Never throws (after hooks close every socket before stopping the gateway). */
  async close(): Promise<void> {
    if (this.closed) return;
    const done = this.until(() => this.closed !== undefined, 3000, "close").catch(() => this.ws.terminate());
    this.ws.close();
    await done;
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}
