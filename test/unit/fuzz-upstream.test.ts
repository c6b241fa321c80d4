/**
 * Upstream payloads, fuzzed (issue 5, point 5): whatever Mattermost (or a proxy in front of it)
 * answers, parsing either rejects it with an UpstreamError or yields data after which the
 * snapshot holds only valid users with one of the four statuses, and every change and wire
 * message is well formed.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { MattermostClient, isMattermostId, type DirectoryUser } from "../../src/mattermost/client.js";
import { UpstreamError } from "../../src/mattermost/errors.js";
import { PresenceSnapshot, type Change } from "../../src/presence/snapshot.js";
import { PROVIDER_STATUSES } from "../../src/presence/status.js";
import { encodeStatus } from "../../src/presence/wire.js";

const realFetch = globalThis.fetch;
let nextBody = "";
before(() => {
  globalThis.fetch = (async () =>
    new Response(nextBody, { status: 200, headers: { "Content-Type": "application/json" } })) as typeof fetch;
});
after(() => {
  globalThis.fetch = realFetch;
});

const client = new MattermostClient({ url: "http://mattermost.invalid", token: "t", timeoutMs: 1000 });
const STATUSES = new Set<string>(PROVIDER_STATUSES);
const ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789".split("");
const validId = fc
  .array(fc.constantFrom(...ID_CHARS), { minLength: 26, maxLength: 26 })
  .map((a) => a.join(""));
/** A small pool of ids so that directory and status answers overlap. */
const poolId = fc.integer({ min: 0, max: 11 }).map((i) => String(i).padStart(2, "0").repeat(13));
const anyId = fc.oneof(poolId, poolId, validId, fc.string(), fc.anything());

const userLike = fc.record(
  {
    id: anyId,
    username: fc.oneof(fc.string(), fc.constantFrom("__proto__", "constructor", ""), fc.anything()),
    email: fc.oneof(
      fc.emailAddress(),
      fc.string(),
      fc.constantFrom("", '"quoted"@x', "a\u2028b@x", "<script>@x", "x\n@y"),
      fc.anything(),
    ),
    is_bot: fc.oneof(fc.boolean(), fc.anything()),
    delete_at: fc.oneof(fc.constant(0), fc.integer()),
  },
  { requiredKeys: [] },
);
const statusLike = fc.record(
  {
    user_id: anyId,
    status: fc.oneof(
      fc.constantFrom("online", "away", "dnd", "offline", "ooo", "", "ONLINE", "__proto__"),
      fc.string(),
      fc.anything(),
    ),
    manual: fc.anything(),
    last_activity_at: fc.anything(),
  },
  { requiredKeys: [] },
);
/** Mostly plausible answers, sometimes anything at all, sometimes not JSON. */
const body = (item: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.array(item, { maxLength: 12 }).map((a) => JSON.stringify(a)) },
    { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string() },
    { weight: 1, arbitrary: fc.array(item, { maxLength: 6 }).map((a) => JSON.stringify(a).slice(0, -3)) },
  );

function checkSnapshot(s: PresenceSnapshot, changes: readonly Change[]): void {
  const ids = s.userIds();
  assert.equal(new Set(ids).size, ids.length, "no user twice");
  for (const id of ids) assert.ok(isMattermostId(id), `invalid id ${JSON.stringify(id)}`);
  const visible = s.visible();
  for (const u of visible) {
    assert.ok(isMattermostId(u.id));
    assert.ok(typeof u.email === "string" && u.email !== "", "visible users have an email");
    assert.ok(u.status !== undefined && STATUSES.has(u.status), `status ${String(u.status)}`);
    const wire = JSON.parse(encodeStatus(u.id, u.email, u.status)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(wire), ["user_id", "email", "status"]);
    assert.equal(wire.email, u.email);
  }
  const counts = s.countsByStatus();
  assert.equal(
    Object.values(counts).reduce((a, b) => a + b, 0),
    visible.length,
  );
  for (const c of changes) {
    assert.ok(isMattermostId(c.userId));
    assert.ok(typeof c.email === "string" && c.email !== "");
    assert.ok(STATUSES.has(c.status));
  }
}

async function parsed<T>(payload: string, read: () => Promise<T>): Promise<T | undefined> {
  nextBody = payload;
  try {
    return await read();
  } catch (err) {
    assert.ok(err instanceof UpstreamError, `not an UpstreamError: ${String(err)}`);
    assert.ok(["malformed", "too-large"].includes(err.kind), `refused as ${err.kind}`);
    return undefined;
  }
}

test("arbitrary directory and status answers: the snapshot only ever holds valid users and the four statuses", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(body(userLike), body(statusLike)), { minLength: 1, maxLength: 5 }),
      async (rounds) => {
        const snapshot = new PresenceSnapshot();
        const changes: Change[] = [];
        snapshot.onChanges((c) => changes.push(...c));
        for (const [dirBody, statusBody] of rounds) {
          const users = await parsed<DirectoryUser[]>(dirBody, () => client.getActiveUsers(0, 200));
          if (users) {
            for (const u of users) {
              assert.ok(isMattermostId(u.id));
              assert.equal(typeof u.email, "string");
              assert.equal(typeof u.username, "string");
            }
            snapshot.applyDirectory(users);
          }
          const ids = snapshot.userIds().slice(0, 200);
          const statuses = await parsed(statusBody, () =>
            client.getStatuses(ids.length ? ids : ["a".repeat(26)]),
          );
          if (statuses) snapshot.applyStatuses(new Map(statuses.map((s) => [s.userId, s.status])), true);
          checkSnapshot(snapshot, changes);
        }
      },
    ),
    { numRuns: 300 },
  );
});
