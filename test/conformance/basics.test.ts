/** Conformance: ping, users/me, the client config, and the error bodies for 401, 403 and 404. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { appErr, jsonOf, useTarget, type Profile } from "./suite.js";

const target = useTarget();

test("GET system/ping answers 200 {status:OK} without a session", async () => {
  const res = await target().api("system/ping", { token: null });
  assert.equal(res.status, 200);
  const body = await jsonOf<Record<string, unknown>>(res);
  assert.equal(body.status, "OK");
});

test("GET system/ping?get_server_status=true adds database_status and filestore_status", async () => {
  const res = await target().api("system/ping?get_server_status=true", { token: null });
  const body = await jsonOf<Record<string, unknown>>(res);
  assert.equal(body.database_status, "OK");
  assert.equal(body.filestore_status, "OK");
});

test("every answer carries X-Version-Id (version.build.hash.enterprise) and X-Request-Id", async () => {
  const res = await target().api("system/ping", { token: null });
  assert.match(res.headers.get("x-version-id") ?? "", /^\d+\.\d+\.\d+\./);
  assert.match(res.headers.get("x-request-id") ?? "", /^[a-z0-9]{26}$/);
});

test("GET users/me with the admin token answers its own user, with roles", async () => {
  const t = target();
  const me = await jsonOf<Profile>(await t.api("users/me"));
  assert.equal(me.id, t.tokenUserId);
  assert.match(me.roles, /\bsystem_admin\b/);
});

test("GET users/me with a non-admin bot token answers a bot without system_admin", async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const me = await jsonOf<Profile>(await t.api("users/me", { token: t.plainToken }));
  assert.equal(me.is_bot, true);
  assert.doesNotMatch(me.roles, /\bsystem_admin\b/);
  assert.ok(me.email, "a token always sees its own email");
});

test("401: a wrong token gets api.context.session_expired.app_error", async () => {
  const e = await appErr(await target().api("users/me", { token: "wrongtoken0000000000000000" }), 401);
  assert.equal(e.id, "api.context.session_expired.app_error");
});

test("401: no token at all gets api.context.session_expired.app_error", async () => {
  const e = await appErr(await target().api("users/me", { token: null }), 401);
  assert.equal(e.id, "api.context.session_expired.app_error");
});

test("401 also for POST users/status/ids (what the poller calls) with a wrong token", async () => {
  const res = await target().api("users/status/ids", {
    method: "POST",
    body: JSON.stringify(["aaaaaaaaaaaaaaaaaaaaaaaaaa"]),
    token: "wrongtoken0000000000000000",
  });
  const e = await appErr(res, 401);
  assert.equal(e.id, "api.context.session_expired.app_error");
});

test("403: GET config with a non-admin token gets api.context.permissions.app_error", async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const e = await appErr(await t.api("config", { token: t.plainToken }), 403);
  assert.equal(e.id, "api.context.permissions.app_error");
});

test("404: an unknown API path gets api.context.404.app_error naming the path, without request_id", async () => {
  const res = await target().api("no/such/route");
  assert.equal(res.status, 404);
  const e = await jsonOf<Record<string, unknown>>(res);
  assert.equal(e.id, "api.context.404.app_error");
  assert.equal(e.status_code, 404);
  assert.match(String(e.detailed_error), /url='\/api\/v4\/no\/such\/route'/);
  assert.equal("request_id" in e, false);
});

test("404: GET users/{id} of an unknown id gets app.user.missing_account.const", async () => {
  const e = await appErr(await target().api("users/zzconformance0000000000000"), 404);
  assert.equal(e.id, "app.user.missing_account.const");
});

test("400: GET users/{id} of an alphanumeric id that is not 26 characters gets invalid_url_param", async () => {
  const e = await appErr(await target().api("users/abc"), 400);
  assert.equal(e.id, "api.context.invalid_url_param.app_error");
});

test("404: GET users/{id} with characters outside [A-Za-z0-9] matches no route", async () => {
  const res = await target().api("users/not-an-id");
  assert.equal(res.status, 404);
  assert.equal((await jsonOf<{ id: string }>(res)).id, "api.context.404.app_error");
});

test("GET config/client?format=old answers string values without a session", async () => {
  const res = await target().api("config/client?format=old", { token: null });
  const cfg = await jsonOf<Record<string, unknown>>(res);
  assert.match(String(cfg.Version), /^\d+\.\d+\.\d+/);
  for (const v of Object.values(cfg)) assert.equal(typeof v, "string");
});

test("GET config/client without format answers the old format too (200)", async () => {
  const res = await target().api("config/client", { token: null });
  const cfg = await jsonOf<Record<string, unknown>>(res);
  assert.equal(typeof cfg.EnableUserStatuses, "string");
});

test("the client config without a session has EnableUserStatuses but not ShowEmailAddress", async () => {
  const res = await target().api("config/client?format=old", { token: null });
  const cfg = await jsonOf<Record<string, unknown>>(res);
  assert.match(String(cfg.EnableUserStatuses), /^(true|false)$/);
  assert.equal(cfg.ShowEmailAddress, undefined);
});

test("the client config with a session has ShowEmailAddress", async () => {
  const cfg = await jsonOf<Record<string, unknown>>(await target().api("config/client?format=old"));
  assert.match(String(cfg.ShowEmailAddress), /^(true|false)$/);
});
