/** Conformance: the directory (GET users?active=true), its paging, order, bots, deactivation, emails. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { allUsers, jsonOf, useTarget, type Profile } from "./suite.js";
import type { TestUser } from "./target.js";

const target = useTarget(async (t) => {
  human = await t.admin.createUser();
  bot = await t.admin.createUser({ bot: true });
  const active = (await allUsers(t, "active=true")).length;
  // Bots are cheap to create (no password hashing) and count like anyone in the directory.
  for (let i = active; i < NEED_ACTIVE; i++) await t.admin.createUser({ bot: true });
});

/** More active users than one capped page holds, so the cap and the paging are observable. */
const NEED_ACTIVE = 205;
let human: TestUser;
let bot: TestUser;

const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

test("users?active=true&per_page=500 answers at most 200 users (per_page is capped)", async () => {
  const res = await target().api("users?active=true&page=0&per_page=500");
  assert.equal((await jsonOf<Profile[]>(res)).length, 200);
});

test("users?active=true without per_page answers 60 users", async () => {
  const res = await target().api("users?active=true&page=0");
  assert.equal((await jsonOf<Profile[]>(res)).length, 60);
});

test("users?active=true&per_page=abc falls back to 60 (unparsable numbers take the default)", async () => {
  const res = await target().api("users?active=true&page=0&per_page=abc");
  assert.equal((await jsonOf<Profile[]>(res)).length, 60);
});

test("users?active=true&per_page=0 answers [] (0 is a valid page size)", async () => {
  const res = await target().api("users?active=true&page=0&per_page=0");
  assert.deepEqual(await jsonOf<Profile[]>(res), []);
});

test("pages of 50 are disjoint and together equal one read of 200-user pages", async () => {
  const t = target();
  const small = await allUsers(t, "active=true", 50);
  const big = await allUsers(t, "active=true", 200);
  assert.deepEqual(
    small.map((u) => u.id),
    big.map((u) => u.id),
  );
  assert.equal(new Set(small.map((u) => u.id)).size, small.length);
});

test("a page past the end answers []", async () => {
  const res = await target().api("users?active=true&page=1000&per_page=200");
  assert.deepEqual(await jsonOf<Profile[]>(res), []);
});

test("the directory is ordered by username", async () => {
  const users = await allUsers(target(), "active=true");
  const names = users.map((u) => u.username);
  assert.deepEqual(names, [...names].sort(byteOrder));
});

test("bots are listed by users?active=true, with is_bot true", async () => {
  const users = await allUsers(target(), "active=true");
  const b = users.find((u) => u.id === bot.id);
  assert.ok(b, "the bot is listed");
  assert.equal(b.is_bot, true);
  const h = users.find((u) => u.id === human.id);
  assert.ok(h);
  assert.equal(h.is_bot, undefined, "a human's profile has no is_bot (omitempty)");
});

test("emails come back lower-case (Mattermost stores them so)", async () => {
  const users = await allUsers(target(), "active=true");
  const u = users.find((x) => x.id === human.id);
  assert.equal(u?.email, human.email.toLowerCase());
  assert.equal(u?.email, `${human.username}@example.com`);
});

test("a deactivated user leaves users?active=true and appears in users?inactive=true with delete_at set", async () => {
  const t = target();
  const u = await t.admin.createUser();
  await t.admin.deactivate(u);
  const active = await allUsers(t, "active=true");
  assert.equal(
    active.find((x) => x.id === u.id),
    undefined,
  );
  const inactive = await allUsers(t, "inactive=true");
  const gone = inactive.find((x) => x.id === u.id);
  assert.ok(gone, "listed as inactive");
  assert.ok(gone.delete_at > 0);
});

test("a reactivated user is back in users?active=true with delete_at 0", async () => {
  const t = target();
  const u = await t.admin.createUser();
  await t.admin.deactivate(u);
  await t.admin.reactivate(u);
  const back = (await allUsers(t, "active=true")).find((x) => x.id === u.id);
  assert.equal(back?.delete_at, 0);
});

test("a deactivated bot leaves users?active=true", async () => {
  const t = target();
  const b = await t.admin.createUser({ bot: true });
  await t.admin.deactivate(b);
  assert.equal(
    (await allUsers(t, "active=true")).find((x) => x.id === b.id),
    undefined,
  );
});

test("users/stats total_users_count equals the number of active users listed, bots included", async () => {
  const t = target();
  const stats = await jsonOf<{ total_users_count: number }>(await t.api("users/stats"));
  assert.equal(stats.total_users_count, (await allUsers(t, "active=true")).length);
});

test("an admin token sees every email with ShowEmailAddress off", async (c) => {
  const t = target();
  const undo = await t.admin.patch({ ShowEmailAddress: false });
  c.after(() => t.admin.patch(undo));
  const u = (await allUsers(t, "active=true")).find((x) => x.id === human.id);
  assert.equal(u?.email, human.email.toLowerCase());
});

test("a non-admin token sees others' emails with ShowEmailAddress on", async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const undo = await t.admin.patch({ ShowEmailAddress: true });
  c.after(() => t.admin.patch(undo));
  const u = (await allUsers(t, "active=true", 200, t.plainToken)).find((x) => x.id === human.id);
  assert.equal(u?.email, human.email.toLowerCase());
});

test('a non-admin token sees email "" for others with ShowEmailAddress off', async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const undo = await t.admin.patch({ ShowEmailAddress: false });
  c.after(() => t.admin.patch(undo));
  const u = (await allUsers(t, "active=true", 200, t.plainToken)).find((x) => x.id === human.id);
  assert.ok(u, "still listed");
  assert.equal(u.email, "");
});

test('with ShowEmailAddress off a non-admin token sees its own email in users/me, "" in the list', async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const undo = await t.admin.patch({ ShowEmailAddress: false });
  c.after(() => t.admin.patch(undo));
  const me = await jsonOf<Profile>(await t.api("users/me", { token: t.plainToken }));
  const listed = (await allUsers(t, "active=true", 200, t.plainToken)).find((x) => x.id === me.id);
  assert.ok(me.email);
  assert.equal(listed?.email, "");
});
