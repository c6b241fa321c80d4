import { WebSocket } from "ws";
import type { Logger } from "../log.js";
import { backoffDelay } from "./backoff.js";

/**
 * Largest event message accepted (ws's default is 100 MiB). Mattermost's biggest, a `posted` event
 * with a 16,383-character post and its metadata, is well under 1 MiB; past this `ws` closes the
 * socket with 1009 from the frame header, before the payload is read, and it reconnects.
 */
export const MAX_EVENT_BYTES = 4 * 1024 * 1024;

/** Broadcast events after which the directory may have changed. */
export const DIRECTORY_EVENTS = new Set(["new_user", "user_updated", "user_activation_status_change"]);

export interface EventStreamOptions {
  url: string;
  token: () => string;
  log: Logger;
  /** Called on a directory event, and after every (re)connect since events may have been missed. */
  onHint: (reason: string) => void;
  /** Mattermost's configuration was saved (the old plugin's settings may have changed). */
  onConfigChanged?: () => void;
  maxBackoffMs: number;
}

/**
 * Mattermost's own WebSocket, used only for hints: the periodic full refresh stays the source of
 * truth, so a lost event costs at most one refresh interval. Built on `ws` rather than
 * Client4's WebSocketClient, which needs browser globals (WebSocket, CloseEvent) Node 20 lacks.
 */
export class MattermostEvents {
  private ws: WebSocket | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: EventStreamOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.removeAllListeners();
    this.ws?.on("error", () => undefined);
    this.ws?.terminate();
    this.ws = undefined;
  }

  private connect(): void {
    const url = this.opts.url.replace(/^http/, "ws") + "/api/v4/websocket";
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${this.opts.token()}` },
      handshakeTimeout: 10_000,
      maxPayload: MAX_EVENT_BYTES,
    });
    this.ws = ws;
    ws.on("open", () => {
      this.opts.log.debug({ event: "mm_ws_open" }, "listening to Mattermost events");
    });
    ws.on("message", (data) => {
      let msg: { event?: unknown };
      try {
        msg = JSON.parse(data.toString()) as { event?: unknown };
      } catch {
        return;
      }
      if (msg.event === "hello") {
        // Connected and authenticated. Anything may have happened while we were away.
        if (this.failures > 0) this.opts.onHint("events reconnected");
        this.failures = 0;
      } else if (typeof msg.event === "string" && DIRECTORY_EVENTS.has(msg.event)) {
        this.opts.onHint(msg.event);
      } else if (msg.event === "config_changed") {
        this.opts.onConfigChanged?.();
      }
    });
    ws.on("error", (err) => {
      if (this.failures === 0) {
        this.opts.log.warn(
          { event: "mm_ws_error", err: err.message },
          "Mattermost event stream failed; retrying",
        );
      }
    });
    ws.on("close", () => {
      if (this.stopped) return;
      this.failures++;
      this.timer = setTimeout(
        () => this.connect(),
        backoffDelay(this.failures, 1000, this.opts.maxBackoffMs),
      );
      this.timer.unref();
    });
  }
}
