import assert from "node:assert/strict";
import WebSocket from "ws";

export const BASE = "/plugins/com.mattermost.outlook-presence/api/v1";
/** One compat message, byte for byte: these keys in this order, Go's trailing newline. */
const MESSAGE_RE =
  /^\{"user_id":"[a-z0-9]{26}","email":"(?:[^"\\]|\\.)*","status":"(online|away|dnd|offline)"\}\n$/;

export interface WireMessage {
  user_id: string;
  email: string;
  status: string;
}

/**
 * Acts as the Windows provider does: pages /status until [] into an email → status store, then
 * holds /ws and applies every message. Any message that is not exactly one
 * {"user_id","email","status"} object is recorded as a violation.
 */
export class FakeProvider {
  readonly store = new Map<string, string>();
  readonly messages: WireMessage[] = [];
  readonly violations: string[] = [];
  ws: WebSocket | undefined;
  private listeners: (() => void)[] = [];

  /** `forwardedFor`: the desktop's address as a trusted proxy (loopback, by default) reports it. */
  constructor(
    readonly url: string,
    readonly secret: string,
    private readonly opts: { forwardedFor?: string } = {},
  ) {}

  private get headers(): Record<string, string> {
    return this.opts.forwardedFor ? { "X-Forwarded-For": this.opts.forwardedFor } : {};
  }

  async loadStatus(): Promise<number> {
    let pages = 0;
    for (let page = 0; ; page++) {
      const res = await fetch(
        `${this.url}${BASE}/status?secret=${encodeURIComponent(this.secret)}&page=${page}`,
        { headers: this.headers },
      );
      assert.equal(res.status, 200, `GET /status page ${page}: ${res.status}`);
      assert.equal(res.headers.get("content-type"), "application/json");
      const items = (await res.json()) as WireMessage[];
      pages++;
      if (items.length === 0) return pages;
      for (const u of items) {
        assert.deepEqual(Object.keys(u), ["user_id", "email", "status"]);
        this.store.set(u.email, u.status);
      }
    }
  }

  async connect(): Promise<void> {
    const ws = new WebSocket(
      `${this.url.replace("http", "ws")}${BASE}/ws?secret=${encodeURIComponent(this.secret)}`,
      { headers: this.headers },
    );
    this.ws = ws;
    ws.on("message", (data, isBinary) => {
      const text = data.toString();
      if (isBinary || !MESSAGE_RE.test(text)) {
        this.violations.push(text);
        return;
      }
      const msg = JSON.parse(text) as WireMessage;
      this.messages.push(msg);
      this.store.set(msg.email, msg.status);
      for (const l of this.listeners) l();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
  }

  /** Resolves when `pred` holds on the store, checked after each message. */
  until(pred: (p: FakeProvider) => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    if (pred(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred(this)) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      this.listeners.push(check);
    });
  }

  close(): void {
    this.ws?.terminate();
  }
}
