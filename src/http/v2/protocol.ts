/**
 * API v2 wire types, shared by the server (src/http/v2) and the client (src/client). Their JSON
 * Schemas are in openapi.ts; docs/API-V2.md describes the protocol.
 */
import type { ProviderStatus } from "../../presence/status.js";

export type PresenceStatus = ProviderStatus;

export const V2_BASE = "/api/v2";

/**
 * The largest message a socket may send before it has authenticated (an auth message, with its
 * filter): larger ones close it with 1009 before they are read. About 2,000 emails fit; a longer
 * subscription is sent as a `subscribe` message once authenticated, where up to 4 MiB are taken.
 */
export const V2_MAX_AUTH_MESSAGE_BYTES = 64 * 1024;

/** One person, as GET /api/v2/presence and a `snapshot` message list them. */
export interface PresenceUserJson {
  user_id: string;
  username: string;
  email: string;
  status: PresenceStatus;
  /** The status was set by the person (dnd, out of office) rather than by activity. */
  manual: boolean;
  /** Mattermost's last activity time, ms since epoch (0: unknown). */
  last_activity_at: number;
}

/** GET /api/v2/presence, POST /api/v2/presence/query. */
export interface PresenceResponse {
  /** The numbering history `seq` belongs to; resume with `since=<epoch>:<seq>`. */
  epoch: string;
  /** Every change up to this one is reflected in `users`; resume the stream from here. */
  seq: number;
  users: PresenceUserJson[];
}

/** POST /api/v2/presence/query. Both absent: everyone; otherwise users matching either list. */
export interface PresenceQuery {
  emails?: string[];
  user_ids?: string[];
}

/** One status change in the stream. */
export interface ChangeJson {
  user_id: string;
  email: string;
  status: PresenceStatus;
  /** When the gateway saw it, ms since epoch. */
  at: number;
}

/** Server → client. */
export interface ChangesMessage {
  type: "changes";
  epoch: string;
  /** The seq of the last change in this message. */
  seq: number;
  changes: ChangeJson[];
}

export interface SnapshotMessage {
  type: "snapshot";
  epoch: string;
  seq: number;
  users: PresenceUserJson[];
}

/** Sent once the catch-up (missed changes or a snapshot) is written: from here on, live. */
export interface ReadyMessage {
  type: "ready";
  epoch: string;
  seq: number;
  /** true: the `since` asked for was resumed exactly; false: a snapshot was sent instead. */
  resumed: boolean;
}

/** A client message the server refused; the socket stays open unless it is closed after. */
export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
}

export type ServerMessage = ChangesMessage | SnapshotMessage | ReadyMessage | ErrorMessage;

/** Client → server. */
export interface AuthMessage extends PresenceQuery {
  type: "auth";
  secret: string;
}

/** Replaces the subscription; answered by a `snapshot` of the people it covers. */
export interface SubscribeMessage extends PresenceQuery {
  type: "subscribe";
}

/** Back to everyone; answered by a full `snapshot`. */
export interface UnsubscribeMessage {
  type: "unsubscribe";
}

export type ClientMessage = AuthMessage | SubscribeMessage | UnsubscribeMessage;

/** Close codes of /api/v2/stream. */
export const V2_CLOSE = {
  /** The gateway is shutting down: reconnect (elsewhere) with since. */
  goingAway: 1001,
  /**
   * A message that is not a JSON object (binary, invalid JSON, an array…), or too many messages.
   * Once authenticated, an object with an unknown `type` does not close the socket: it is
   * answered with an `error` message, code unknown_type.
   */
  protocolError: 1008,
  /** The client did not read fast enough (buffer cap): reconnect with since. */
  tooSlow: 1013,
  /**
   * Wrong secret, a first message that is not `auth`, or no auth message in time: fix the
   * secret; do not retry blindly.
   */
  unauthorized: 4401,
} as const;
