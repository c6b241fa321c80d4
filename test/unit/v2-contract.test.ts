import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { OPENAPI } from "../../src/http/v2/openapi.js";
import type { ProviderStatus } from "../../src/presence/status.js";
import {
  CONTRACT,
  PresenceQuery,
  parseClientMessage,
  type PresenceStatus,
  type ServerMessage,
} from "../../src/http/v2/protocol.js";
import { documentValidator, validate } from "../helpers/v2-schema.js";

// The derived status type is exactly the core's (a compile error otherwise).
const sameStatus: [PresenceStatus, ProviderStatus] extends [ProviderStatus, PresenceStatus] ? true : never =
  true;
void sameStatus;

const ID = "abcdefghijklmnopqrstuvwxyz";
const EPOCH = "q3Zt0cM1xK8a";
const user = {
  user_id: ID,
  username: "alice",
  email: "a@x",
  status: "online",
  manual: false,
  last_activity_at: 5,
};
const good: ServerMessage[] = [
  { type: "changes", epoch: EPOCH, seq: 7, changes: [{ user_id: ID, email: "a@x", status: "dnd", at: 1 }] },
  { type: "snapshot", epoch: EPOCH, seq: 0, users: [{ ...user, status: "online" }] },
  { type: "ready", epoch: EPOCH, seq: 7, resumed: false },
  { type: "error", code: "unknown_type", message: "expected subscribe or unsubscribe" },
];

test("the published document compiles strictly under ajv's 2020-12 validator, every component included", () => {
  const names = [...Object.keys(CONTRACT.response), ...Object.keys(CONTRACT.request)] as const;
  assert.deepEqual(Object.keys(OPENAPI.components.schemas).sort(), [...names].sort());
  for (const name of names) validate(name as Parameters<typeof validate>[0], {});
  // Strict mode is on: a misspelt keyword in a schema fails instead of being ignored.
  const doc = JSON.parse(JSON.stringify(OPENAPI)) as typeof OPENAPI;
  (doc.components.schemas.Status as Record<string, unknown>).minLenght = 1;
  assert.throws(() => documentValidator(doc)("Status", "online"), /unknown keyword: "minLenght"/);
});

test("real server messages satisfy the document; deliberately wrong ones do not", () => {
  for (const m of good) assert.deepEqual(validate("ServerMessage", m), [], m.type);
  const wrong: [string, unknown][] = [
    ["unknown status", { ...good[0]!, changes: [{ user_id: ID, email: "a@x", status: "busy", at: 1 }] }],
    ["extra field", { ...good[2]!, extra: 1 }],
    ["no epoch", { type: "ready", seq: 7, resumed: true }],
    ["negative seq", { ...good[2]!, seq: -1 }],
    ["fractional seq", { ...good[2]!, seq: 1.5 }],
    ["epoch with a colon", { ...good[2]!, epoch: "a:b" }],
    ["seq as a string", { ...good[2]!, seq: "7" }],
    ["bad user id", { ...good[1]!, users: [{ ...user, user_id: "short" }] }],
    ["user without manual", { ...good[1]!, users: [{ ...user, manual: undefined }] }],
    ["unknown type", { type: "hello", epoch: EPOCH, seq: 1 }],
    ["not an object", [good[2]]],
  ];
  for (const [what, m] of wrong) assert.notDeepEqual(validate("ServerMessage", m), [], what);
  assert.deepEqual(validate("PresenceResponse", { epoch: EPOCH, seq: 3, users: [user] }), []);
  assert.notDeepEqual(validate("PresenceResponse", { seq: 3, users: [user] }), []);
  assert.deepEqual(validate("Error", { error: { code: "unauthorized", message: "m" } }), []);
  assert.notDeepEqual(validate("Error", { error: { code: "unauthorized" } }), []);
});

test("the zod contract and the published JSON Schema agree on what clients may send", () => {
  const samples: [string, unknown][] = [
    ["PresenceQuery", {}],
    ["PresenceQuery", { emails: ["a@x"], user_ids: [ID] }],
    ["PresenceQuery", { emails: "a@x" }],
    ["PresenceQuery", { emails: [1] }],
    ["PresenceQuery", { other: 1 }],
    ["PresenceQuery", { emails: ["x".repeat(321)] }],
    ["PresenceQuery", { user_ids: ["x".repeat(65)] }],
    ["PresenceQuery", []],
    ["ClientMessage", { type: "auth", secret: "s" }],
    ["ClientMessage", { type: "auth", secret: "s", emails: [], user_ids: [] }],
    ["ClientMessage", { type: "auth" }],
    ["ClientMessage", { type: "auth", secret: 1 }],
    ["ClientMessage", { type: "subscribe", emails: ["a@x"] }],
    ["ClientMessage", { type: "subscribe", emails: "a@x" }],
    ["ClientMessage", { type: "subscribe", user_ids: [null] }],
    ["ClientMessage", { type: "subscribe", later: true }],
    ["ClientMessage", { type: "unsubscribe" }],
    ["ClientMessage", { type: "hello" }],
    ["ClientMessage", {}],
  ];
  const zod = { PresenceQuery, ClientMessage: CONTRACT.request.ClientMessage };
  for (const [name, value] of samples) {
    const byZod = zod[name as keyof typeof zod].safeParse(value).success;
    const bySchema = validate(name as "PresenceQuery" | "ClientMessage", value).length === 0;
    assert.equal(bySchema, byZod, `${name} ${JSON.stringify(value)}`);
  }
});

test("parseClientMessage: before auth only an auth message, after it subscribe and unsubscribe", () => {
  const parse = (v: unknown, authenticated: boolean) =>
    parseClientMessage(typeof v === "string" || v === null ? v : JSON.stringify(v), authenticated);
  for (const raw of [null, "not json", "[1]", "3", '"auth"', "null"]) {
    for (const authenticated of [false, true]) {
      assert.equal(
        parse(raw, authenticated).ok ? "ok" : (parse(raw, authenticated) as { code: string }).code,
        "bad_message",
      );
    }
  }
  assert.deepEqual(parse({ type: "auth", secret: "s", emails: ["A@x"] }, false), {
    ok: true,
    msg: { type: "auth", secret: "s", emails: ["A@x"] },
    secret: "s",
  });
  assert.equal(parse({ type: "auth", secret: 1 }, false).ok, false);
  assert.equal((parse({ type: "auth", secret: 1 }, false) as { code: string }).code, "unauthorized");
  assert.equal((parse({ type: "subscribe" }, false) as { code: string }).code, "unauthorized");
  // A bad filter on an auth message: the secret comes back so it is judged first.
  const bad = parse({ type: "auth", secret: "s", emails: "a@x" }, false);
  assert.deepEqual(bad, {
    ok: false,
    code: "invalid_subscription",
    message: "emails: must be an array of strings",
    secret: "s",
  });
  const many = Array.from({ length: 25_001 }, (_, i) => `${i}`);
  assert.deepEqual(parse({ type: "subscribe", emails: many, user_ids: many }, true), {
    ok: false,
    code: "invalid_subscription",
    message: "message: at most 50000 emails and user_ids together",
  });
  assert.equal(
    (parse({ type: "subscribe", user_ids: [7] }, true) as { message: string }).message,
    "user_ids.0: must be a string",
  );
  assert.deepEqual(parse({ type: "subscribe", emails: ["a@x"], later: 1 }, true), {
    ok: true,
    msg: { type: "subscribe", emails: ["a@x"] },
  });
  assert.deepEqual(parse({ type: "unsubscribe" }, true), { ok: true, msg: { type: "unsubscribe" } });
  for (const other of [{ type: "auth", secret: "s" }, { type: "hello" }, {}]) {
    assert.equal((parse(other, true) as { code: string }).code, "unknown_type", JSON.stringify(other));
  }
});

test("property: for any client-ish value, zod and the published schema give the same verdict", () => {
  const value = fc.oneof(
    fc.string({ maxLength: 3 }),
    fc.string({ minLength: 60, maxLength: 70 }),
    fc.integer(),
    fc.constant(null),
    fc.boolean(),
  );
  const list = fc.oneof(fc.array(fc.oneof(fc.emailAddress(), value), { maxLength: 4 }), value);
  const message = fc.record(
    {
      type: fc.constantFrom("auth", "subscribe", "unsubscribe", "hello", 3),
      secret: fc.oneof(fc.string(), fc.integer()),
      emails: list,
      user_ids: list,
      other: value,
    },
    { requiredKeys: [] },
  );
  const query = fc.record({ emails: list, user_ids: list, other: value }, { requiredKeys: [] });
  fc.assert(
    fc.property(message, (m) => {
      const byZod = CONTRACT.request.ClientMessage.safeParse(m).success;
      assert.equal(validate("ClientMessage", m).length === 0, byZod, JSON.stringify(m));
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(query, (q) => {
      const byZod = PresenceQuery.safeParse(q).success;
      assert.equal(validate("PresenceQuery", q).length === 0, byZod, JSON.stringify(q));
    }),
    { numRuns: 500 },
  );
});
