import type { ServerMessage } from "../../src/http/v2/protocol.js";
import { StreamConn } from "../helpers/v2-stream.js";
import {
  finalView,
  lastPosition,
  orderViolations,
  positionConflicts,
  viewDiff,
  type StreamRecord,
} from "../helpers/v2-positions.js";

/**
 * An unfiltered API v2 client that records every message and, like the shipped client, resumes
 * with `since=<epoch>:<seq>` after any disconnect (each connection is one record, with the
 * position it resumed from). `moveTo` reconnects it to another replica the same way.
 */
export class V2Watcher {
  readonly records: (StreamRecord & { messages: ServerMessage[]; url: string })[] = [];
  private conn: StreamConn | undefined;
  private stopped = false;
  private reconnecting: Promise<void> | undefined;

  constructor(
    private url: string,
    private readonly secret: string,
    readonly name: string,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  /** Every message of every connection, in order. */
  messages(): ServerMessage[] {
    return this.records.flatMap((r) => r.messages);
  }

  view(): Map<string, string> {
    return finalView(this.messages());
  }

  /** Live: the current connection is open and caught up (its `ready` came). */
  get live(): boolean {
    return (
      this.conn !== undefined &&
      this.conn.closed === undefined &&
      this.conn.messages.some((m) => m.type === "ready")
    );
  }

  /** Closes the socket and resumes on `url` from the position held. */
  async moveTo(url: string): Promise<void> {
    this.url = url;
    const old = this.conn;
    this.conn = undefined;
    await old?.close();
    await this.connect();
  }

  /** Reconnects to the same replica, resuming (a socket that died without a word). */
  async reconnect(): Promise<void> {
    await this.moveTo(this.url);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.conn?.close();
  }

  private async connect(): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      const start = lastPosition(this.messages());
      try {
        const conn = await StreamConn.open(this.url, {
          secret: this.secret,
          since: start ? `${start.epoch}:${start.seq}` : undefined,
        });
        const record = { start, messages: conn.messages, url: this.url };
        this.records.push(record);
        this.conn = conn;
        conn.ws.on("close", () => {
          if (this.conn === conn && !this.stopped) this.reconnectSoon();
        });
        return;
      } catch {
        // not ready (503), or unreachable: retry, bounded by the test's own timeouts
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * attempt)));
      }
    }
  }

  private reconnectSoon(): void {
    this.conn = undefined;
    this.reconnecting ??= new Promise<void>((r) => setTimeout(r, 200))
      .then(() => this.connect())
      .finally(() => (this.reconnecting = undefined));
  }
}

/** What the API v2 clients of a scenario received, and what went wrong. */
export interface V2Tally {
  /** `changes` messages and the changes in them, over every client. */
  messages: number;
  changes: number;
  /** Users whose final status differs from Mattermost's, summed over clients. */
  lost: number;
  /** Changes a client got at a position of an epoch it had already passed. */
  duplicated: number;
  conflicts: string[];
  violations: string[];
  /** Connections made after the first (each a resume with since). */
  resumes: number;
  /** Of those, the ones the gateway resumed exactly (the others got a snapshot). */
  exact: number;
}

export function tally(watchers: readonly V2Watcher[], want: ReadonlyMap<string, string>): V2Tally {
  const records = watchers.flatMap((w) => w.records);
  const violations = watchers.flatMap((w) =>
    w.records.flatMap((r, i) => orderViolations(r).map((v) => `${w.name} connection ${i + 1}: ${v}`)),
  );
  let messages = 0;
  let changes = 0;
  for (const r of records)
    for (const m of r.messages)
      if (m.type === "changes") {
        messages++;
        changes += m.changes.length;
      }
  return {
    messages,
    changes,
    lost: watchers.reduce((n, w) => n + viewDiff(w.view(), want).length, 0),
    duplicated: violations.filter((v) => v.includes("already seen")).length,
    conflicts: positionConflicts(records),
    violations,
    resumes: records.length - watchers.length,
    exact: records.filter((r) => r.start && r.messages.some((m) => m.type === "ready" && m.resumed)).length,
  };
}
