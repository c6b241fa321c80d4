/** Conformance: POST users/status/ids (what the gateway polls) and status changes made through the API. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  allUsers,
  appErr,
  jsonOf,
  statusIds,
  statusOf,
  unknownId,
  useTarget,
  type StatusItem,
} from "./suite.js";
import type { TestUser } from "./target.js";

const target = useTarget(async (t) => {
  fresh = await t.admin.createUser();
  for (let i = 0; i < 3; i++) await t.admin.createUser();
  someIds = (await allUsers(t, "active=true")).map((u) => u.id);
});

let fresh: TestUser;
let someIds: string[];

test("status/ids accepts 200 ids and answers one status per id", async () => {
  const ids = [...someIds, ...Array.from({ length: 200 }, (_, i) => unknownId(i))].slice(0, 200);
  const list = await jsonOf<StatusItem[]>(await statusIds(target(), ids));
  assert.equal(list.length, 200);
  assert.deepEqual(new Set(list.map((s) => s.user_id)), new Set(ids));
});

test("status/ids is not capped at 200: 1,000 ids are answered", async () => {
  const ids = Array.from({ length: 1000 }, (_, i) => unknownId(i));
  const list = await jsonOf<StatusItem[]>(await statusIds(target(), ids));
  assert.equal(list.length, 1000);
});

test("status/ids with [] answers 400 api.context.invalid_body_param.app_error", async () => {
  const e = await appErr(await statusIds(target(), []), 400);
  assert.equal(e.id, "api.context.invalid_body_param.app_error");
});

test("status/ids with an id that is not 26 characters answers 400 invalid_body_param", async () => {
  const e = await appErr(await statusIds(target(), [someIds[0], "short"]), 400);
  assert.equal(e.id, "api.context.invalid_body_param.app_error");
});

test("status/ids with a body that is not a JSON array of strings answers 400 api.payload.parse.error", async () => {
  const e = await appErr(await statusIds(target(), { ids: [] }), 400);
  assert.equal(e.id, "api.payload.parse.error");
});

test("status/ids answers an unknown (well-formed) id as offline, manual false, last_activity_at 0", async () => {
  const s = await statusOf(target(), unknownId(7));
  assert.deepEqual(
    { user_id: s.user_id, status: s.status, manual: s.manual, last_activity_at: s.last_activity_at },
    { user_id: unknownId(7), status: "offline", manual: false, last_activity_at: 0 },
  );
});

test("a user who never had a status record is answered offline", async () => {
  const s = await statusOf(target(), fresh.id);
  assert.equal(s.status, "offline");
  assert.equal(s.manual, false);
});

test("status/ids answers duplicates once", async () => {
  const list = await jsonOf<StatusItem[]>(await statusIds(target(), [fresh.id, fresh.id, fresh.id]));
  assert.equal(list.length, 1);
});

test("status/ids may answer in another order than asked (clients must match by user_id)", async () => {
  const t = target();
  const ids = someIds.slice(0, 50);
  // One answer in the asked order would not prove it is kept: ask several times, all must match by set.
  let sameOrder = 0;
  for (let i = 0; i < 5; i++) {
    const list = await jsonOf<StatusItem[]>(await statusIds(t, ids));
    assert.deepEqual(new Set(list.map((s) => s.user_id)), new Set(ids));
    if (list.every((s, j) => s.user_id === ids[j])) sameOrder++;
  }
  assert.ok(sameOrder < 5, "answered in the asked order every time");
});

test("status/ids answers the same with a non-admin token (any session may call it)", async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  await t.admin.setStatus(fresh.id, "away");
  const list = await jsonOf<StatusItem[]>(await statusIds(t, [fresh.id], t.plainToken));
  assert.equal(list[0]?.status, "away");
});

for (const [status, manual] of [
  ["online", false],
  ["away", true],
  ["dnd", true],
  ["offline", true],
] as const) {
  test(`PUT users/{id}/status ${status} is answered back by status/ids as ${status}, manual ${manual}`, async () => {
    const t = target();
    const u = await t.admin.createUser();
    await t.admin.setStatus(u.id, status);
    const s = await statusOf(t, u.id);
    assert.equal(s.status, status);
    assert.equal(s.manual, manual);
  });
}

test("a user who turns the auto-responder on is answered ooo", async () => {
  const t = target();
  const u = await t.admin.createUser();
  await t.admin.setOutOfOffice(u);
  assert.equal((await statusOf(t, u.id)).status, "ooo");
});

test("online and offline set through the API both set last_activity_at to about now", async () => {
  const t = target();
  const u = await t.admin.createUser();
  const before = Date.now();
  await t.admin.setStatus(u.id, "online");
  const on = await statusOf(t, u.id);
  assert.ok(on.last_activity_at >= before - 5000, `last_activity_at ${on.last_activity_at} >= ${before}`);
  await t.admin.setStatus(u.id, "offline");
  const off = await statusOf(t, u.id);
  assert.equal(off.status, "offline");
  assert.ok(off.last_activity_at >= before - 5000, `last_activity_at ${off.last_activity_at} >= ${before}`);
});

test("dnd with dnd_end_time is answered dnd, its end time (seconds) truncated to the minute", async () => {
  const t = target();
  const u = await t.admin.createUser();
  const end = Math.floor(Date.now() / 1000) + 3600;
  await t.admin.setStatus(u.id, "dnd", end + (end % 60 === 0 ? 7 : 0));
  const s = await statusOf(t, u.id);
  assert.equal(s.status, "dnd");
  assert.equal(s.dnd_end_time, end - (end % 60));
});

test("a deactivated user's status stays readable through status/ids", async () => {
  const t = target();
  const u = await t.admin.createUser();
  await t.admin.setStatus(u.id, "dnd");
  await t.admin.deactivate(u);
  const s = await statusOf(t, u.id);
  assert.equal(s.user_id, u.id);
  assert.ok(["dnd", "offline"].includes(s.status), s.status);
});

test("with EnableUserStatuses off, status/ids answers []", async (c) => {
  const t = target();
  const undo = await t.admin.patch({ EnableUserStatuses: false });
  c.after(() => t.admin.patch(undo));
  const list = await jsonOf<StatusItem[]>(await statusIds(t, someIds.slice(0, 10)));
  assert.deepEqual(list, []);
});

test('the client config (no session) says EnableUserStatuses "false" when it is off', async (c) => {
  const t = target();
  const undo = await t.admin.patch({ EnableUserStatuses: false });
  c.after(() => t.admin.patch(undo));
  const cfg = await jsonOf<Record<string, string>>(await t.api("config/client?format=old", { token: null }));
  assert.equal(cfg.EnableUserStatuses, "false");
});

test('the client config (no session) says EnableUserStatuses "true" when it is on', async (c) => {
  const t = target();
  const undo = await t.admin.patch({ EnableUserStatuses: true });
  c.after(() => t.admin.patch(undo));
  const cfg = await jsonOf<Record<string, string>>(await t.api("config/client?format=old", { token: null }));
  assert.equal(cfg.EnableUserStatuses, "true");
});
