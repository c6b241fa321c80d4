/**
 * The API v2 contract, defined once: each message and body is a zod schema here, and everything
 * else is derived from it — the TypeScript types (z.infer) shared by the server (src/http/v2) and
 * the client (src/client), the runtime check of what clients send (parseClientMessage, the query
 * body), and the JSON Schemas of the OpenAPI document (openapi.ts, z.toJSONSchema).
 * docs/API-V2.md describes the protocol.
 */
import { z } from "zod/v4";
import { PROVIDER_STATUSES } from "../../presence/status.js";

export const V2_BASE = "/api/v2";

/**
 * The largest message a socket may send before it has authenticated (an auth message, with its
 * filter): larger ones close it with 1009 before they are read. About 2,000 emails fit; a longer
 * subscription is sent as a `subscribe` message once authenticated, where up to 4 MiB are taken.
 */
export const V2_MAX_AUTH_MESSAGE_BYTES = 64 * 1024;

/** At most this many emails plus user ids in one filter (query or subscription). */
export const MAX_FILTER_ITEMS = 50_000;

// ---- What the server sends ----

export const PresenceStatus = z
  .enum(PROVIDER_STATUSES)
  .describe("ooo and any newer Mattermost status are shown as away");
export type PresenceStatus = z.infer<typeof PresenceStatus>;

const userId = z.string().regex(/^[a-z0-9]{26}$/);
const seq = z.number().int().nonnegative();
const epoch = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/)
  .describe("the numbering history seq belongs to; a new one after a restart or a renumbering leader");
const msSinceEpoch = z.number().int().nonnegative();

/** One person, as GET /api/v2/presence and a `snapshot` message list them. */
export const PresenceUserJson = z.object({
  user_id: userId,
  username: z.string(),
  email: z.string(),
  status: PresenceStatus,
  manual: z.boolean().describe("set by the person (dnd, out of office), not by activity"),
  last_activity_at: msSinceEpoch.describe("Mattermost's last activity time, ms since epoch; 0 when unknown"),
});
export type PresenceUserJson = z.infer<typeof PresenceUserJson>;

/** GET /api/v2/presence, POST /api/v2/presence/query. */
export const PresenceResponse = z.object({
  epoch,
  seq: seq.describe("every change up to this one is reflected in users; stream from here with since"),
  users: z.array(PresenceUserJson),
});
export type PresenceResponse = z.infer<typeof PresenceResponse>;

/** The body of every HTTP error answer; `code` is one of http/errors.ts. */
export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
export type ErrorResponse = z.infer<typeof ErrorResponse>;

/** One status change in the stream. */
export const ChangeJson = z.object({
  user_id: userId,
  email: z.string(),
  status: PresenceStatus,
  at: msSinceEpoch.describe("when the gateway saw it, ms since epoch"),
});
export type ChangeJson = z.infer<typeof ChangeJson>;

/** One poll cycle's changes (or a part of a catch-up). */
export const ChangesMessage = z.object({
  type: z.literal("changes"),
  epoch,
  seq: seq.describe("seq of the last change of the batch; resume from here"),
  changes: z.array(ChangeJson),
});
export type ChangesMessage = z.infer<typeof ChangesMessage>;

export const SnapshotMessage = z.object({
  type: z.literal("snapshot"),
  epoch,
  seq,
  users: z.array(PresenceUserJson),
});
export type SnapshotMessage = z.infer<typeof SnapshotMessage>;

/** Sent once the catch-up (missed changes or a snapshot) is written: from here on, live. */
export const ReadyMessage = z.object({
  type: z.literal("ready"),
  epoch,
  seq,
  resumed: z.boolean().describe("false: a snapshot was sent instead of the missed changes"),
});
export type ReadyMessage = z.infer<typeof ReadyMessage>;

/** A client message the server refused; the socket stays open unless it is closed after. */
export const ErrorMessage = z.object({
  type: z.literal("error"),
  code: z.string(),
  message: z.string(),
});
export type ErrorMessage = z.infer<typeof ErrorMessage>;

export const ServerMessage = z.discriminatedUnion("type", [
  ChangesMessage,
  SnapshotMessage,
  ReadyMessage,
  ErrorMessage,
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

// ---- What clients send ----

const TOO_MANY_ITEMS = `at most ${MAX_FILTER_ITEMS} emails and user_ids together`;
/** A filter's list; the messages say what to fix, the same over HTTP and on the stream. */
const filterList = (maxLength: number) =>
  z
    .array(z.string({ error: "must be a string" }).max(maxLength, `at most ${maxLength} characters each`), {
      error: "must be an array of strings",
    })
    .max(MAX_FILTER_ITEMS, TOO_MANY_ITEMS);
const filterFields = { emails: filterList(320).optional(), user_ids: filterList(64).optional() };
const withinFilterLimit = (q: { emails?: string[]; user_ids?: string[] }): boolean =>
  (q.emails?.length ?? 0) + (q.user_ids?.length ?? 0) <= MAX_FILTER_ITEMS;

/**
 * POST /api/v2/presence/query. Both absent: everyone; otherwise the users matching either list.
 * Unknown keys are refused (400), unlike in stream messages.
 */
export const PresenceQuery = z
  .strictObject(filterFields)
  .refine(withinFilterLimit, TOO_MANY_ITEMS)
  .describe(
    `both absent: everyone; otherwise the users matching either list (at most ${MAX_FILTER_ITEMS.toLocaleString("en")} items together)`,
  );
export type PresenceQuery = z.infer<typeof PresenceQuery>;

/**
 * The first message of a socket opened without an Authorization header. Other keys are ignored in
 * stream messages (as they always were), so the schemas do not close them.
 */
export const AuthMessage = z
  .object({ type: z.literal("auth"), secret: z.string(), ...filterFields })
  .refine(withinFilterLimit, TOO_MANY_ITEMS);
export type AuthMessage = z.infer<typeof AuthMessage>;

/** Replaces the subscription; answered by a `snapshot` of the people it covers. */
export const SubscribeMessage = z
  .object({ type: z.literal("subscribe"), ...filterFields })
  .refine(withinFilterLimit, TOO_MANY_ITEMS);
export type SubscribeMessage = z.infer<typeof SubscribeMessage>;

/** Back to everyone; answered by a full `snapshot`. */
export const UnsubscribeMessage = z.object({ type: z.literal("unsubscribe") });
export type UnsubscribeMessage = z.infer<typeof UnsubscribeMessage>;

export const ClientMessage = z.discriminatedUnion("type", [
  AuthMessage,
  SubscribeMessage,
  UnsubscribeMessage,
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** Every named schema, by its name in the OpenAPI document's components.schemas. */
export const CONTRACT = {
  response: {
    Status: PresenceStatus,
    PresenceUser: PresenceUserJson,
    PresenceResponse,
    Error: ErrorResponse,
    Change: ChangeJson,
    ChangesMessage,
    SnapshotMessage,
    ReadyMessage,
    ErrorMessage,
    ServerMessage,
  },
  /** Judged as input: optional fields may be absent, and stream messages may carry others. */
  request: { PresenceQuery, AuthMessage, SubscribeMessage, UnsubscribeMessage, ClientMessage },
} as const;

/** `emails.3: must be a string`; a problem with the whole value is named `root`. */
export function describeIssue(error: z.ZodError, root: string): string {
  const issue = error.issues[0];
  if (!issue) return `${root}: invalid`;
  const where = issue.path.map(String).join(".") || root;
  return `${where}: ${issue.message}`;
}

/**
 * A client message as the stream judges it, or why it is refused:
 * - `bad_message`: not a JSON object (binary, invalid JSON, an array…): close with 1008;
 * - `unauthorized` (before auth): not an auth message with a string secret: close with 4401;
 * - `unknown_type` (once authenticated): a type other than subscribe or unsubscribe;
 * - `invalid_subscription`: a bad filter.
 * Before auth, `secret` is the auth message's secret whenever it has a string one: the caller
 * checks it first, so a wrong secret closes the socket whatever the filter.
 */
export type ParsedClientMessage = (
  | { ok: true; msg: ClientMessage }
  | {
      ok: false;
      code: "bad_message" | "unauthorized" | "unknown_type" | "invalid_subscription";
      message: string;
    }
) & { secret?: string };

/**
 * Parses one text message (null: a binary one). Before authentication only `auth` is accepted;
 * after it only `subscribe` and `unsubscribe`.
 */
export function parseClientMessage(text: string | null, authenticated: boolean): ParsedClientMessage {
  let json: unknown;
  try {
    json = text === null ? undefined : JSON.parse(text);
  } catch {
    // answered below
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { ok: false, code: "bad_message", message: "messages are JSON objects" };
  }
  const { type, secret } = json as { type?: unknown; secret?: unknown };
  if (!authenticated) {
    if (type !== "auth" || typeof secret !== "string") {
      return { ok: false, code: "unauthorized", message: 'first send {"type":"auth"}' };
    }
    const parsed = AuthMessage.safeParse(json);
    if (parsed.success) return { ok: true, msg: parsed.data, secret };
    return {
      ok: false,
      code: "invalid_subscription",
      message: describeIssue(parsed.error, "message"),
      secret,
    };
  }
  const schema =
    type === "subscribe" ? SubscribeMessage : type === "unsubscribe" ? UnsubscribeMessage : undefined;
  if (!schema) return { ok: false, code: "unknown_type", message: "expected subscribe or unsubscribe" };
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, msg: parsed.data };
  return { ok: false, code: "invalid_subscription", message: describeIssue(parsed.error, "message") };
}

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
