import { z } from "zod/v4";
import { VERSION } from "../../version.js";
import { CONTRACT } from "./protocol.js";

/**
 * The OpenAPI 3.1 document of API v2, served at GET /api/v2/openapi.json. Its
 * `components.schemas` are JSON Schema 2020-12 generated from the zod contract in protocol.ts
 * (nothing to keep in step by hand) and also describe every stream message (`ServerMessage`,
 * `ClientMessage`); tests validate real answers and messages against the served document.
 */

type JsonSchema = Record<string, unknown>;

/**
 * The contract's schemas by component name. What the server sends is described as output (every
 * field present, no others); what clients send as input (optional fields may be absent; stream
 * messages may carry other keys, a query body may not). Named schemas used inside others become
 * `$ref`s to their component.
 */
function contractSchemas(): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  const all = { ...CONTRACT.response, ...CONTRACT.request };
  for (const [id, schema] of Object.entries(all)) registry.add(schema, { id });
  const convert = (io: "input" | "output") =>
    z.toJSONSchema(registry, {
      target: "draft-2020-12",
      io,
      uri: (id) => `#/components/schemas/${id}`,
      unrepresentable: "throw",
      // A discriminated union's branches exclude each other (each has its own `type` const):
      // say so with oneOf, as the document always did, rather than zod's anyOf, and name the
      // tag with OpenAPI's discriminator so validators and generators pick the branch by it.
      override: ({ zodSchema, jsonSchema }) => {
        const def = zodSchema._zod.def;
        if (def.type === "union" && "discriminator" in def && jsonSchema.anyOf) {
          jsonSchema.type = "object"; // every branch is one; a discriminator needs it said
          jsonSchema.oneOf = jsonSchema.anyOf;
          delete jsonSchema.anyOf;
          jsonSchema.discriminator = { propertyName: String(def.discriminator) };
        }
      },
    }).schemas;
  const output = convert("output");
  const input = convert("input");
  const schemas: Record<string, JsonSchema> = {};
  for (const id of Object.keys(all)) {
    const converted = (id in CONTRACT.request ? input : output)[id];
    if (!converted) throw new Error(`no JSON Schema generated for ${id}`);
    // The document's jsonSchemaDialect names the dialect once; a component's `$id` would also
    // change the base its `$ref`s resolve against (they are document fragments).
    const { $schema: _dialect, $id: _id, ...rest } = converted as JsonSchema;
    schemas[id] = rest;
  }
  return schemas;
}

export const SCHEMAS = contractSchemas();
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` }) as const;

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
};
