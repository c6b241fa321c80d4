import type { SocketProtocol } from "./socket.js";

/**
 * Why a socket ended: its `reason` in the disconnect log line and in
 * `ws_connections_closed_total{protocol,reason}`. `client`: the peer closed (or the network did).
 */
export type CloseReason =
  | "client"
  | "shutdown"
  | "abuse"
  | "bad_message"
  | "unauthorized"
  | "auth_timeout"
  | "too_many_connections"
  | "slow_consumer"
  | "slow_catch_up"
  | "unsent_total"
  | "dead_peer";

interface Close {
  /** The WebSocket close code; undefined: the socket is cut without a closing handshake. */
  readonly code: number | undefined;
  /** The close frame's reason text, per protocol where they differ. */
  readonly text: string | Readonly<Record<SocketProtocol, string>>;
}

const SLOW: Close = { code: 1013, text: { compat: "too slow", v2: "too slow: reconnect with since" } };

/**
 * Every way the gateway ends a socket, with the code each protocol's clients see (the v2 codes
 * are documented in docs/API-V2.md and mirrored as V2_CLOSE and the client's STREAM_CLOSE; a test
 * keeps the three equal). The compat provider reconnects whatever the code.
 */
export const CLOSES: Readonly<Record<Exclude<CloseReason, "client">, Close>> = {
  /** The gateway is stopping: reconnect (elsewhere). */
  shutdown: { code: 1001, text: "server shutting down" },
  /** More client messages in one ping interval than any honest client sends. */
  abuse: { code: 1008, text: "too many client messages" },
  /** v2: a message that is not a JSON object. */
  bad_message: { code: 1008, text: "messages are JSON objects" },
  /** v2: a wrong secret or a first message that is not `auth` (the text says which). */
  unauthorized: { code: 4401, text: "wrong secret" },
  /** v2: no auth message within the auth timeout. */
  auth_timeout: { code: 4401, text: "no auth message in time" },
  /** v2: authenticated by message while PRESENCE_MAX_CONNECTIONS was reached. */
  too_many_connections: { code: 1013, text: "connection limit reached" },
  /** The unsent-bytes cap (see UnsentBytes): reconnect, and read. */
  slow_consumer: SLOW,
  slow_catch_up: SLOW,
  unsent_total: SLOW,
  /** No pong to the last ping: cut at once, a dead peer would not answer a close frame either. */
  dead_peer: { code: undefined, text: "" },
};

/** The close frame for `reason` on `protocol`. */
export function closeFrame(
  reason: Exclude<CloseReason, "client">,
  protocol: SocketProtocol,
): { code: number | undefined; text: string } {
  const { code, text } = CLOSES[reason];
  return { code, text: typeof text === "string" ? text : text[protocol] };
}
