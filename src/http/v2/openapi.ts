import { VERSION } from "../../version.js";

/**
 * The OpenAPI 3.1 document of API v2, served at GET /api/v2/openapi.json. Its
 * `components.schemas` are JSON Schema 2020-12 and also describe every stream message
 * (`ServerMessage`, `ClientMessage`); tests validate real answers and messages against them.
 * Keep it in step with protocol.ts.
 */

const STATUS = { type: "string", enum: ["online", "away", "dnd", "offline"] } as const;
const SEQ = { type: "integer", minimum: 0 } as const;
const EPOCH = {
  type: "string",
  pattern: "^[A-Za-z0-9_-]{1,64}$",
  description: "the numbering history seq belongs to; a new one after a restart or a renumbering leader",
} as const;
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` }) as const;

export const SCHEMAS = {
  Status: { ...STATUS, description: "ooo and any newer Mattermost status are shown as away" },
  PresenceUser: {
    type: "object",
    required: ["user_id", "username", "email", "status", "manual", "last_activity_at"],
    additionalProperties: false,
    properties: {
      user_id: { type: "string", pattern: "^[a-z0-9]{26}$" },
      username: { type: "string" },
      email: { type: "string" },
      status: ref("Status"),
      manual: { type: "boolean", description: "set by the person (dnd, out of office), not by activity" },
      last_activity_at: { type: "integer", minimum: 0, description: "ms since epoch; 0 when unknown" },
    },
  },
  PresenceResponse: {
    type: "object",
    required: ["epoch", "seq", "users"],
    additionalProperties: false,
    properties: {
      epoch: EPOCH,
      seq: { ...SEQ, description: "every change up to this one is reflected; stream from here with since" },
      users: { type: "array", items: ref("PresenceUser") },
    },
  },
  PresenceQuery: {
    type: "object",
    additionalProperties: false,
    description: "both absent: everyone; otherwise the users matching either list (at most 50,000 items)",
    properties: {
      emails: { type: "array", items: { type: "string" } },
      user_ids: { type: "array", items: { type: "string" } },
    },
  },
  Error: {
    type: "object",
    required: ["error"],
    additionalProperties: false,
    properties: {
      error: {
        type: "object",
        required: ["code", "message"],
        additionalProperties: false,
        properties: { code: { type: "string" }, message: { type: "string" } },
      },
    },
  },
  Change: {
    type: "object",
    required: ["user_id", "email", "status", "at"],
    additionalProperties: false,
    properties: {
      user_id: { type: "string", pattern: "^[a-z0-9]{26}$" },
      email: { type: "string" },
      status: ref("Status"),
      at: { type: "integer", minimum: 0, description: "when the gateway saw it, ms since epoch" },
    },
  },
  ChangesMessage: {
    type: "object",
    required: ["type", "epoch", "seq", "changes"],
    additionalProperties: false,
    properties: {
      type: { const: "changes" },
      epoch: EPOCH,
      seq: { ...SEQ, description: "seq of the last change of the batch; resume from here" },
      changes: { type: "array", items: ref("Change") },
    },
  },
  SnapshotMessage: {
    type: "object",
    required: ["type", "epoch", "seq", "users"],
    additionalProperties: false,
    properties: {
      type: { const: "snapshot" },
      epoch: EPOCH,
      seq: SEQ,
      users: { type: "array", items: ref("PresenceUser") },
    },
  },
  ReadyMessage: {
    type: "object",
    required: ["type", "epoch", "seq", "resumed"],
    additionalProperties: false,
    properties: {
      type: { const: "ready" },
      epoch: EPOCH,
      seq: SEQ,
      resumed: { type: "boolean", description: "false: a snapshot was sent instead of the missed changes" },
    },
  },
  ErrorMessage: {
    type: "object",
    required: ["type", "code", "message"],
    additionalProperties: false,
    properties: { type: { const: "error" }, code: { type: "string" }, message: { type: "string" } },
  },
  ServerMessage: {
    oneOf: [ref("ChangesMessage"), ref("SnapshotMessage"), ref("ReadyMessage"), ref("ErrorMessage")],
  },
  AuthMessage: {
    type: "object",
    required: ["type", "secret"],
    additionalProperties: false,
    properties: {
      type: { const: "auth" },
      secret: { type: "string" },
      emails: { type: "array", items: { type: "string" } },
      user_ids: { type: "array", items: { type: "string" } },
    },
  },
  SubscribeMessage: {
    type: "object",
    required: ["type"],
    additionalProperties: false,
    properties: {
      type: { const: "subscribe" },
      emails: { type: "array", items: { type: "string" } },
      user_ids: { type: "array", items: { type: "string" } },
    },
  },
  UnsubscribeMessage: {
    type: "object",
    required: ["type"],
    additionalProperties: false,
    properties: { type: { const: "unsubscribe" } },
  },
  ClientMessage: {
    oneOf: [ref("AuthMessage"), ref("SubscribeMessage"), ref("UnsubscribeMessage")],
  },
} as const;

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: ref("Error") } },
});

const presenceOk = {
  description: "the users, in Mattermost's order (by username)",
  headers: { ETag: { schema: { type: "string" } } },
  content: { "application/json": { schema: ref("PresenceResponse") } },
};

const common = {
  "304": { description: "If-None-Match matched the ETag: nothing changed" },
  "401": errorResponse("missing or wrong secret (code unauthorized)"),
  "503": errorResponse(
    "not ready, as /readyz says: first snapshot not loaded, token rejected, secret not read yet, or a follower waiting for the leader (code not_ready)",
  ),
};

export const OPENAPI = {
  openapi: "3.1.0",
  jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
  info: {
    title: "mattermost-outlook-presence API v2",
    version: VERSION,
    description:
      "Presence of every active Mattermost user with an email, from memory. A snapshot with a sequence number, and a WebSocket stream of numbered change batches that resumes from any seq still retained. See docs/API-V2.md.",
  },
  servers: [{ url: "/" }],
  security: [{ bearer: [] }],
  paths: {
    "/api/v2/presence": {
      get: {
        operationId: "getPresence",
        summary: "Everyone's presence, or the users matching ?emails= / ?user_ids=",
        parameters: [
          {
            name: "emails",
            in: "query",
            required: false,
            description: "comma separated; compared lower-case",
            schema: { type: "string" },
          },
          {
            name: "user_ids",
            in: "query",
            required: false,
            description: "comma separated",
            schema: { type: "string" },
          },
        ],
        responses: {
          "200": presenceOk,
          ...common,
          "400": errorResponse("bad filter (code invalid_query)"),
        },
      },
    },
    "/api/v2/presence/query": {
      post: {
        operationId: "queryPresence",
        summary: "The presence of the users in a (long) list",
        requestBody: { required: true, content: { "application/json": { schema: ref("PresenceQuery") } } },
        responses: {
          "200": presenceOk,
          ...common,
          "400": errorResponse("not JSON or not a PresenceQuery (code invalid_body)"),
          "413": errorResponse("body over 4 MiB (code body_too_large)"),
        },
      },
    },
    "/api/v2/stream": {
      get: {
        operationId: "stream",
        summary: "WebSocket: numbered change batches, resumable with since",
        description:
          "Upgrade to a WebSocket. Authenticate with the Authorization header, or send an AuthMessage first (within 5 s). The server sends the changes after `since` (when still retained) or a SnapshotMessage, then a ReadyMessage, then one ChangesMessage per poll cycle. Client messages: ClientMessage. Close codes: 1001 shutting down, 1008 bad or too many client messages, 1013 too slow (reconnect with since), 4401 unauthorized or no auth message in time. The server pings; answer pongs (every WebSocket library does).",
        security: [{ bearer: [] }, {}],
        parameters: [
          {
            name: "since",
            in: "query",
            required: false,
            description:
              "`<epoch>:<seq>` of the last message you processed. A bare seq (clients older than epochs) is accepted and answered with a snapshot.",
            schema: { type: "string", pattern: "^([A-Za-z0-9_-]{1,64}:)?[0-9]{1,15}$" },
          },
          { name: "emails", in: "query", required: false, schema: { type: "string" } },
          { name: "user_ids", in: "query", required: false, schema: { type: "string" } },
        ],
        responses: {
          "101": {
            description: "switching protocols; messages are ServerMessage",
            content: { "application/json": { schema: ref("ServerMessage") } },
          },
          "400": errorResponse("bad since or filter (code invalid_query)"),
          "401": errorResponse("wrong secret in the Authorization header"),
          "503": errorResponse("not ready, or too many connections"),
        },
      },
    },
    "/api/v2/openapi.json": {
      get: {
        operationId: "openapi",
        summary: "This document",
        security: [],
        responses: { "200": { description: "OpenAPI 3.1", content: { "application/json": {} } } },
      },
    },
  },
  components: {
    securitySchemes: {
      bearer: { type: "http", scheme: "bearer", description: "the presence secret (PRESENCE_SECRET)" },
    },
    schemas: SCHEMAS,
  },
} as const;
