import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import mattermostClient from "@mattermost/client";
import { WebSocket } from "ws";
import { runSimulate } from "../../src/simulator/cli.js";
import { MattermostSimulator, type SimulatorOptions, type SimUser } from "../../src/simulator/index.js";
import { waitUntil } from "../helpers/in-process.js";

const TOKEN = "simtesttoken0000000000000a";

interface Harness {
  sim: MattermostSimulator;
  url: string;
  api: (path: string, init?: RequestInit & { token?: string | null }) => Promise<Response>;
  statusIds: (ids: unknown, raw?: boolean) => Promise<Response>;
}

async function startSim(t: TestContext, opts: Partial<SimulatorOptions> = {}): Promise<Harness> {
  const sim = new MattermostSimulator({ token: TOKEN, ...opts });
  const url = await sim.start(0);
  t.after(() => sim.stop());
  const api = (path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> => {
    const { token = TOKEN, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (token !== null) headers.set("Authorization", `Bearer ${token}`);
    return fetch(`${url}/api/v4/${path}`, { ...rest, headers });
  };
  const statusIds = (ids: unknown, raw = false): Promise<Response> =>
    api("users/status/ids", { method: "POST", body: raw ? (ids as string) : JSON.stringify(ids) });
  return { sim, url, api, statusIds };
}

async function jsonOf<T = unknown>(res: Response): Promise<T> {
  assert.equal(res.headers.get("content-type"), "application/json");
  return (await res.json()) as T;
}

interface Profile {
  id: string;
  username: string;
  email: string;
  delete_at: number;
  is_bot: boolean;
  roles: string;
}
interface StatusItem {
  user_id: string;
  status: string;
  manual: boolean;
  last_activity_at: number;
  dnd_end_time: number;
}
interface AppErr {
  id: string;
  message: string;
  detailed_error: string;
  request_id: string;
  status_code: number;
}

async function allUsers(h: Harness, query: string, perPage = 200): Promise<Profile[]> {
  const out: Profile[] = [];
  for (let page = 0; ; page++) {
    const res = await h.api(`users?${query}&page=${page}&per_page=${perPage}`);
    assert.equal(res.status, 200);
    const batch = await jsonOf<Profile[]>(res);
    out.push(...batch);
    if (batch.length < perPage) return out;
  }
}

const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

// ---------------------------------------------------------------- basics

test("ping answers without a session, with Mattermost's headers", async (t) => {
  const h = await startSim(t, { version: "10.5.0" });
  const res = await h.api("system/ping?get_server_status=true", { token: null });
  assert.equal(res.status, 200);
  const body = await jsonOf<Record<string, string>>(res);
  assert.equal(body.status, "OK");
  assert.equal(body.ActiveSearchBackend, "database");
  assert.match(res.headers.get("x-version-id") ?? "", /^10\.5\.0\.\d+\.[0-9a-f]+\.false$/);
  assert.match(res.headers.get("x-request-id") ?? "", /^[a-z0-9]{26}$/);
});

test("401 with Mattermost's body for a missing or wrong token; Token form and setToken", async (t) => {
  const h = await startSim(t, { users: 3 });
  for (const token of [null, "wrong"]) {
    const res = await h.api("users/me", { token });
    assert.equal(res.status, 401);
    const body = await jsonOf<AppErr>(res);
    assert.equal(body.id, "api.context.session_expired.app_error");
    assert.equal(body.message, "Invalid or expired session, please login again.");
    assert.equal(body.detailed_error, "");
    assert.equal(body.status_code, 401);
    assert.equal(body.request_id, res.headers.get("x-request-id"));
    assert.ok(res.headers.get("x-version-id"));
  }
  const viaTokenHeader = await fetch(`${h.url}/api/v4/users/me`, {
    headers: { Authorization: `Token ${TOKEN}` },
  });
  assert.equal(viaTokenHeader.status, 200);

  h.sim.setToken("newtoken");
  assert.equal((await h.api("users/me")).status, 401);
  assert.equal((await h.api("users/me", { token: "newtoken" })).status, 200);
  assert.equal((await h.api("users/status/ids", { method: "POST", body: "[]" })).status, 401);
});

test("users/me is the token's bot, a system admin listed in the directory", async (t) => {
  const h = await startSim(t, { users: 5 });
  const me = await jsonOf<Profile>(await h.api("users/me"));
  assert.equal(me.is_bot, true);
  assert.equal(me.roles, "system_user system_admin");
  assert.equal(me.id, h.sim.botUser.id);
  assert.ok(h.sim.listUsers().some((u) => u.id === me.id));
  const listed = await allUsers(h, "active=true");
  assert.ok(listed.some((u) => u.id === me.id && u.is_bot));
  assert.equal(h.sim.listUsers().length, 6);
});

test("unknown route → 404, wrong method → 405, both Mattermost-style JSON", async (t) => {
  const h = await startSim(t);
  const nf = await h.api("nope/nothing");
  assert.equal(nf.status, 404);
  assert.equal((await jsonOf<AppErr>(nf)).id, "api.context.404.app_error");
  const na = await h.api("users/status/ids");
  assert.equal(na.status, 405);
  assert.equal((await jsonOf<AppErr>(na)).status_code, 405);
  const na2 = await h.api("users", { method: "POST", body: "{}" });
  assert.equal(na2.status, 405);
});

test("the official Client4 parses every answer (Content-Type exactly application/json)", async (t) => {
  const h = await startSim(t, { users: 30 });
  const client = new mattermostClient.Client4();
  client.setUrl(h.url);
  client.setToken(TOKEN);
  assert.equal((await client.ping(false)).status, "OK");
  assert.equal((await client.getMe()).id, h.sim.botUser.id);
  const users = await client.getProfiles(0, 200, { active: true });
  assert.equal(users.length, (await client.getTotalUsersStats()).total_users_count);
  const statuses = await client.getStatusesByIds(users.slice(0, 5).map((u) => u.id));
  assert.equal(statuses.length, 5);
  assert.equal((await client.getClientConfig()).EnableUserStatuses, "true");
  assert.match(client.serverVersion, /^10\.5\.0\./);
  client.setToken("wrong");
  await assert.rejects(client.getMe(), (err: { status_code?: number; server_error_id?: string }) => {
    assert.equal(err.status_code, 401);
    assert.equal(err.server_error_id, "api.context.session_expired.app_error");
    return true;
  });
});

// ---------------------------------------------------------------- directory

test("generated directory: valid unique ids, lower-case emails, some bots, deactivated and missing statuses; seeded", async (t) => {
  const a = new MattermostSimulator({ token: TOKEN, users: 400, seed: 42 });
  const b = new MattermostSimulator({ token: TOKEN, users: 400, seed: 42 });
  const c = new MattermostSimulator({ token: TOKEN, users: 400, seed: 43 });
  t.after(() => Promise.all([a.stop(), b.stop(), c.stop()]));
  const users = a.listUsers();
  assert.equal(users.length, 401);
  assert.deepEqual(
    users.map((u) => [u.id, u.username]),
    b.listUsers().map((u) => [u.id, u.username]),
  );
  assert.notDeepEqual(
    users.map((u) => u.id),
    c.listUsers().map((u) => u.id),
  );
  assert.equal(new Set(users.map((u) => u.id)).size, users.length);
  assert.equal(new Set(users.map((u) => u.username)).size, users.length);
  for (const u of users) {
    assert.match(u.id, /^[a-z0-9]{26}$/);
    assert.equal(u.email, u.email.toLowerCase());
    assert.ok(u.email.endsWith("@example.com"));
  }
  const generated = users.filter((u) => u.id !== a.botUser.id);
  const bots = generated.filter((u) => u.is_bot);
  const deactivated = generated.filter((u) => u.delete_at > 0);
  const noStatus = generated.filter((u) => a.getStatus(u.id) === undefined);
  assert.ok(bots.length >= 5 && bots.length <= 40, `bots: ${bots.length}`);
  assert.ok(bots.every((u) => u.username.startsWith("bot-")));
  assert.ok(deactivated.length >= 5 && deactivated.length <= 40, `deactivated: ${deactivated.length}`);
  assert.ok(noStatus.length >= 15 && noStatus.length <= 70, `no status: ${noStatus.length}`);
  assert.ok(generated.some((u) => u.username === "user.00001" || u.username === "bot-00001"));
  const statuses = new Set(generated.map((u) => a.getStatus(u.id)).filter(Boolean));
  for (const s of ["online", "away", "dnd", "offline"]) assert.ok(statuses.has(s as never), s);
});

test("GET /users: sorted by username, paged, per_page default 60 and cap 200, active/inactive filters", async (t) => {
  const h = await startSim(t, { users: 300, seed: 7 });
  const all = h.sim.listUsers();
  const activeIds = all.filter((u) => u.delete_at === 0).map((u) => u.id);
  const inactiveIds = all.filter((u) => u.delete_at > 0).map((u) => u.id);
  assert.ok(inactiveIds.length > 0);

  const active = await allUsers(h, "active=true");
  assert.deepEqual(active.map((u) => u.id).sort(), [...activeIds].sort());
  const names = active.map((u) => u.username);
  assert.deepEqual(names, [...names].sort(byteOrder));
  assert.ok(active.every((u) => u.delete_at === 0));

  // paging with a small page size gives the same sequence
  const small = await allUsers(h, "active=true", 17);
  assert.deepEqual(
    small.map((u) => u.id),
    active.map((u) => u.id),
  );

  const stats = await jsonOf<{ total_users_count: number }>(await h.api("users/stats"));
  assert.equal(stats.total_users_count, activeIds.length);

  const everyone = await allUsers(h, "x=1");
  assert.equal(everyone.length, all.length);
  const onlyInactive = await allUsers(h, "inactive=true");
  assert.deepEqual(onlyInactive.map((u) => u.id).sort(), [...inactiveIds].sort());

  const def = await jsonOf<Profile[]>(await h.api("users?active=true"));
  assert.equal(def.length, 60);
  assert.deepEqual(
    def.map((u) => u.id),
    active.slice(0, 60).map((u) => u.id),
  );
  const capped = await jsonOf<Profile[]>(await h.api("users?active=true&per_page=1000"));
  assert.equal(capped.length, 200);
  const page1 = await jsonOf<Profile[]>(await h.api("users?active=true&page=1&per_page=50"));
  assert.deepEqual(
    page1.map((u) => u.id),
    active.slice(50, 100).map((u) => u.id),
  );
  const past = await jsonOf<Profile[]>(await h.api("users?active=true&page=99&per_page=200"));
  assert.deepEqual(past, []);
  // Like Mattermost (strconv.Atoi, errors → default): a bad page is page 0, a bad per_page is 60.
  const bad = await jsonOf<Profile[]>(await h.api("users?active=true&page=abc&per_page=x"));
  assert.deepEqual(
    bad.map((u) => u.id),
    def.map((u) => u.id),
  );

  // the profile looks like Mattermost's
  const p = def[0] as unknown as Record<string, unknown>;
  for (const k of [
    "id",
    "create_at",
    "update_at",
    "delete_at",
    "username",
    "email",
    "roles",
    "locale",
    "timezone",
  ]) {
    assert.ok(k in p, k);
  }
  assert.ok(!("password" in p));
});

test("emails hidden → every other user's email is empty", async (t) => {
  const h = await startSim(t, { users: 20, emailsVisible: false, botIsAdmin: false });
  const users = await allUsers(h, "active=true");
  const others = users.filter((u) => u.id !== h.sim.botUser.id);
  assert.ok(others.length > 0);
  assert.ok(others.every((u) => u.email === ""));
  h.sim.setEmailsVisible(true);
  const again = await allUsers(h, "active=true");
  assert.ok(again.every((u) => u.email.endsWith("@example.com")));
  const cfg = await jsonOf<Record<string, string>>(await h.api("config/client?format=old"));
  assert.equal(cfg.ShowEmailAddress, "true");
});

// ---------------------------------------------------------------- statuses

test("status/ids refuses what Mattermost refuses", async (t) => {
  const h = await startSim(t, { users: 5 });
  const cases: [unknown, boolean, string][] = [
    [[], false, "api.context.invalid_body_param.app_error"],
    [null, false, "api.context.invalid_body_param.app_error"],
    [["short"], false, "api.context.invalid_body_param.app_error"],
    [[h.sim.botUser.id, "x".repeat(27)], false, "api.context.invalid_body_param.app_error"],
    [{ user_ids: [h.sim.botUser.id] }, false, "api.payload.parse.error"],
    [[1, 2], false, "api.payload.parse.error"],
    ["not json", true, "api.payload.parse.error"],
    ["", true, "api.payload.parse.error"],
  ];
  for (const [body, raw, id] of cases) {
    const res = await h.statusIds(body, raw);
    assert.equal(res.status, 400, JSON.stringify(body));
    const err = await jsonOf<AppErr>(res);
    assert.equal(err.id, id, JSON.stringify(body));
    assert.equal(err.status_code, 400);
  }
});

test("status/ids answers every id, unknown and record-less ones offline, in another order", async (t) => {
  const h = await startSim(t, { users: 120, seed: 3 });
  const users = h.sim.listUsers().filter((u) => u.id !== h.sim.botUser.id);
  const noRecord = users.find((u) => h.sim.getStatus(u.id) === undefined) as SimUser;
  assert.ok(noRecord, "the seed should give a user without a status record");
  const withRecord = users.filter((u) => h.sim.getStatus(u.id) !== undefined).slice(0, 60);
  h.sim.setStatus(withRecord[0]!.id, "ooo");
  const unknown = "zzzzzzzzzzzzzzzzzzzzzzzzzz";
  const ids = [...withRecord.map((u) => u.id), noRecord.id, unknown];

  const res = await h.statusIds(ids);
  assert.equal(res.status, 200);
  const items = await jsonOf<StatusItem[]>(res);
  assert.equal(items.length, ids.length);
  assert.deepEqual(items.map((i) => i.user_id).sort(), [...ids].sort());
  assert.notDeepEqual(
    items.map((i) => i.user_id),
    ids,
  );
  const byId = new Map(items.map((i) => [i.user_id, i]));
  assert.deepEqual(byId.get(noRecord.id), {
    user_id: noRecord.id,
    status: "offline",
    manual: false,
    last_activity_at: 0,
    dnd_end_time: 0,
  });
  assert.equal(byId.get(unknown)?.status, "offline");
  assert.equal(byId.get(withRecord[0]!.id)?.status, "ooo");
  for (const u of withRecord.slice(1)) assert.equal(byId.get(u.id)?.status, h.sim.getStatus(u.id));
  for (const i of items) assert.deepEqual(Object.keys(i).sort(), Object.keys(byId.get(noRecord.id)!).sort());

  // even two ids never come back in the request's order
  const two = [withRecord[1]!.id, withRecord[2]!.id];
  for (let k = 0; k < 5; k++) {
    const pair = await jsonOf<StatusItem[]>(await h.statusIds(two));
    assert.deepEqual(
      pair.map((i) => i.user_id),
      [two[1], two[0]],
    );
  }
});

test("EnableUserStatuses off → status/ids answers []", async (t) => {
  const h = await startSim(t, { users: 5, enableUserStatuses: false });
  const ids = h.sim.listUsers().map((u) => u.id);
  const res = await h.statusIds(ids);
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonOf(res), []);
  assert.equal((await h.statusIds([])).status, 400, "validation still runs first");
  const cfg = await jsonOf<Record<string, string>>(await h.api("config/client?format=old", { token: null }));
  assert.equal(cfg.EnableUserStatuses, "false");
  h.sim.setEnableUserStatuses(true);
  assert.equal((await jsonOf<unknown[]>(await h.statusIds(ids))).length, ids.length);
});

test("offline set like PUT users/{id}/status stamps last_activity_at; away keeps it (as Mattermost 11.4)", async (t) => {
  const h = await startSim(t, { users: 40 });
  // Generated records carry activity times from 2024.
  const withRecord = h.sim.listUsers().filter((u) => h.sim.getStatus(u.id) !== undefined);
  const [a, b] = withRecord as [SimUser, SimUser];
  const before = Date.now();
  const [oldA] = await jsonOf<StatusItem[]>(await h.statusIds([a.id]));
  assert.ok(oldA!.last_activity_at < before - 86_400_000);
  h.sim.setStatus(a.id, "offline");
  h.sim.setStatus(b.id, "away");
  const [newA] = await jsonOf<StatusItem[]>(await h.statusIds([a.id]));
  const [newB] = await jsonOf<StatusItem[]>(await h.statusIds([b.id]));
  assert.ok(newA!.last_activity_at >= before);
  assert.ok(newB!.last_activity_at < before - 86_400_000);
});

test("config/client answers the old format whatever format says (Mattermost 11 no longer answers 501)", async (t) => {
  const h = await startSim(t);
  for (const q of ["", "?format=new", "?format=old"]) {
    const res = await h.api(`config/client${q}`, { token: null });
    assert.equal(res.status, 200, q);
    assert.equal((await jsonOf<Record<string, string>>(res)).EnableUserStatuses, "true");
  }
});

// ---------------------------------------------------------------- faults

test("fault down: connections reset, WebSocket refused; cleared → back", async (t) => {
  const h = await startSim(t, { users: 2 });
  const ws = await openWs(h.url, { header: true });
  await ws.next(); // hello
  h.sim.setFault({ kind: "down" });
  await ws.closed;
  await assert.rejects(h.api("users/me"));
  await assert.rejects(h.api("system/ping"));
  await assert.rejects(openWs(h.url, { header: true }).then((c) => c.next()));
  h.sim.setFault(null);
  assert.equal((await h.api("users/me")).status, 200);
});

test("fault http-error: the status with a Mattermost-style JSON body", async (t) => {
  const h = await startSim(t);
  h.sim.setFault({ kind: "http-error", status: 503 });
  const res = await h.api("users?active=true");
  assert.equal(res.status, 503);
  const body = await jsonOf<AppErr>(res);
  assert.equal(body.status_code, 503);
  assert.equal(typeof body.id, "string");
  h.sim.setFault({ kind: "http-error", status: 500 });
  assert.equal((await h.statusIds([h.sim.botUser.id])).status, 500);
});

test("fault rate-limit: 429 text/plain with Retry-After and X-RateLimit-*", async (t) => {
  const h = await startSim(t);
  h.sim.setFault({ kind: "rate-limit", retryAfterSeconds: 7 });
  const res = await h.statusIds([h.sim.botUser.id]);
  assert.equal(res.status, 429);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  assert.equal(await res.text(), "limit exceeded\n");
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
  assert.ok(res.headers.get("x-ratelimit-limit"));
  assert.ok(res.headers.get("x-ratelimit-reset"));
});

test("fault slow: right answer after the delay; in-flight status/ids requests are counted", async (t) => {
  const h = await startSim(t, { users: 10 });
  const ids = h.sim.listUsers().map((u) => u.id);
  h.sim.setFault({ kind: "slow", delayMs: 150 });
  h.sim.resetStats();
  const t0 = Date.now();
  const answers = await Promise.all([h.statusIds(ids), h.statusIds(ids), h.statusIds(ids)]);
  assert.ok(Date.now() - t0 >= 140);
  for (const res of answers) assert.equal((await jsonOf<unknown[]>(res)).length, ids.length);
  assert.equal(h.sim.stats.statusIdsRequests, 3);
  assert.equal(h.sim.stats.statusIdsMaxInFlight, 3);
  assert.equal(h.sim.stats.statusIdsMaxIds, ids.length);
  h.sim.setFault(null);
  h.sim.resetStats();
  await h.statusIds(ids);
  await h.statusIds(ids);
  assert.equal(h.sim.stats.statusIdsMaxInFlight, 1);
  assert.equal(h.sim.stats.requests["status/ids"], 2);
  assert.ok((h.sim.stats.lastRequestAt["status/ids"] ?? 0) >= t0);
});

test("stop() does not wait for a slow answer, and start() works again after it", async (t) => {
  const sim = new MattermostSimulator({ token: TOKEN });
  t.after(() => sim.stop());
  const url = await sim.start(0);
  sim.setFault({ kind: "slow", delayMs: 60_000 });
  const pending = fetch(`${url}/api/v4/system/ping`);
  await waitUntil(() => (sim.stats.requests.ping ?? 0) > 0, 5000, "the request to arrive");
  const t0 = Date.now();
  await sim.stop();
  assert.ok(Date.now() - t0 < 1000);
  await assert.rejects(pending);
  assert.equal(sim.url, "");
  sim.setFault(null);
  const url2 = await sim.start(0);
  assert.equal((await fetch(`${url2}/api/v4/system/ping`)).status, 200);
});

test("fault malformed / truncated: 200 application/json that does not parse", async (t) => {
  const h = await startSim(t, { users: 30 });
  const real = await (await h.api("users?active=true")).text();
  h.sim.setFault({ kind: "malformed" });
  let res = await h.api("users?active=true");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  let text = await res.text();
  assert.throws(() => JSON.parse(text));

  h.sim.setFault({ kind: "truncated" });
  res = await h.api("users?active=true");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  text = await res.text();
  assert.equal(text, real.slice(0, Math.floor(Buffer.byteLength(real) / 2)));
  assert.throws(() => JSON.parse(text));
  // errors are not rewritten
  assert.equal((await h.api("users/me", { token: "bad" })).status, 401);
});

test("fault bad-status-value and a fault restricted by paths", async (t) => {
  const h = await startSim(t, { users: 10 });
  const ids = h.sim.listUsers().map((u) => u.id);
  h.sim.setFault({ kind: "bad-status-value", value: "busy" });
  const items = await jsonOf<StatusItem[]>(await h.statusIds(ids));
  assert.ok(items.every((i) => i.status === "busy"));

  h.sim.setFault({ kind: "http-error", status: 502, paths: ["status/ids"] });
  assert.equal((await h.statusIds(ids)).status, 502);
  assert.equal((await h.api("users?active=true")).status, 200);
  h.sim.setFault({ kind: "down", paths: ["users"] });
  await assert.rejects(h.api("users?active=true"));
  assert.equal((await h.statusIds(ids)).status, 200);
  assert.throws(() => h.sim.setFault({ kind: "malformed", paths: ["no/such/key"] }));
});

// ---------------------------------------------------------------- websocket

interface WsClient {
  ws: WebSocket;
  next: (timeoutMs?: number) => Promise<Record<string, unknown>>;
  closed: Promise<number>;
}

function openWs(url: string, opts: { header?: boolean; token?: string }): Promise<WsClient> {
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/api/v4/websocket`, {
    headers: opts.header ? { Authorization: `Bearer ${opts.token ?? TOKEN}` } : {},
  });
  const queue: Record<string, unknown>[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data)) as Record<string, unknown>;
    const w = waiters.shift();
    if (w) w(msg);
    else queue.push(msg);
  });
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
  const next = (timeoutMs = 2000): Promise<Record<string, unknown>> => {
    const m = queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no websocket message")), timeoutMs);
      const onClose = (): void => {
        clearTimeout(timer);
        reject(new Error("websocket closed"));
      };
      ws.once("close", onClose);
      waiters.push((msg) => {
        clearTimeout(timer);
        ws.off("close", onClose);
        resolve(msg);
      });
    });
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws, next, closed }));
    ws.once("error", reject);
  });
}

test("websocket: header auth, hello, new_user / user_updated / user_activation_status_change with seq", async (t) => {
  const h = await startSim(t, { users: 3 });
  const c = await openWs(h.url, { header: true });
  t.after(() => c.ws.terminate());
  const hello = await c.next();
  assert.equal(hello.event, "hello");
  assert.equal(hello.seq, 0);
  const helloData = hello.data as Record<string, string>;
  assert.ok(helloData.connection_id);
  assert.ok(helloData.server_version?.startsWith("10.5.0"));
  assert.ok(hello.broadcast);

  const u = h.sim.addUser({ username: "New.Person", email: "New.Person@Example.com", status: "online" });
  assert.equal(u.username, "new.person");
  assert.equal(u.email, "new.person@example.com");
  const nu = await c.next();
  assert.equal(nu.event, "new_user");
  assert.deepEqual(nu.data, { user_id: u.id });
  assert.equal(nu.seq, 1);
  assert.deepEqual(nu.broadcast, {
    omit_users: null,
    user_id: "",
    channel_id: "",
    team_id: "",
    connection_id: "",
    omit_connection_id: "",
  });

  h.sim.setStatus(u.id, "away"); // no event for status changes
  h.sim.deactivateUser(u.id);
  const upd = await c.next();
  assert.equal(upd.event, "user_updated");
  assert.equal(upd.seq, 2);
  const updUser = (upd.data as { user: Profile }).user;
  assert.equal(updUser.id, u.id);
  assert.ok(updUser.delete_at > 0);
  const act = await c.next();
  assert.equal(act.event, "user_activation_status_change");
  assert.deepEqual(act.data, {});
  assert.equal(act.seq, 3);
  assert.ok(h.sim.listUsers().find((x) => x.id === u.id)!.delete_at > 0);
  assert.ok(!(await allUsers(h, "active=true")).some((x) => x.id === u.id));
  assert.ok((await allUsers(h, "inactive=true")).some((x) => x.id === u.id));

  h.sim.reactivateUser(u.id);
  assert.equal((await c.next()).event, "user_updated");
  assert.equal((await c.next()).event, "user_activation_status_change");
  h.sim.updateUser(u.id, { email: "Other@Example.com" });
  const upd2 = await c.next();
  assert.equal((upd2.data as { user: Profile }).user.email, "other@example.com");

  h.sim.deleteUser(u.id);
  assert.equal(h.sim.getStatus(u.id), undefined);
  assert.ok(!h.sim.listUsers().some((x) => x.id === u.id));
  assert.equal((await h.api(`users/${u.id}`)).status, 404);
});

test("websocket: authentication_challenge, bad token closes, no auth closes after the timeout", async (t) => {
  const h = await startSim(t, { wsAuthTimeoutMs: 200 });
  const c = await openWs(h.url, {});
  t.after(() => c.ws.terminate());
  c.ws.send(JSON.stringify({ seq: 1, action: "authentication_challenge", data: { token: TOKEN } }));
  assert.deepEqual(await c.next(), { status: "OK", seq_reply: 1 });
  const hello = await c.next();
  assert.equal(hello.event, "hello");
  h.sim.addUser();
  assert.equal((await c.next()).event, "new_user");

  const bad = await openWs(h.url, {});
  bad.ws.send(JSON.stringify({ seq: 1, action: "authentication_challenge", data: { token: "nope" } }));
  await bad.closed;

  const badHeader = await openWs(h.url, { header: true, token: "nope" });
  await badHeader.closed; // never authenticated → closed after wsAuthTimeoutMs

  const silent = await openWs(h.url, {});
  const t0 = Date.now();
  await silent.closed;
  assert.ok(Date.now() - t0 >= 150);

  // the token changes: sockets authenticated with the old one are closed
  h.sim.setToken("rotated");
  await c.closed;
});

// ---------------------------------------------------------------- churn, single-user routes, CLI

test("churn changes active non-bot users among the four statuses and stops", async (t) => {
  const h = await startSim(t, { users: 50 });
  const changes: [SimUser, string | undefined, string][] = [];
  const stop = h.sim.startChurn({
    intervalMs: 20,
    changesPerTick: 3,
    onChange: (u, from, to) => changes.push([u, from, to]),
  });
  await waitUntil(() => changes.length >= 6, 5000, "six changes");
  stop();
  const n = changes.length;
  for (const [u, from, to] of changes) {
    assert.ok(!u.is_bot && u.delete_at === 0);
    assert.notEqual(from, to);
    assert.ok(["online", "away", "dnd", "offline"].includes(to));
  }
  const [lastU, , lastTo] = changes[changes.length - 1]!;
  assert.equal(h.sim.getStatus(lastU.id), lastTo);
  // A second churn on the same interval ticks twice: the stopped one would have ticked by then too.
  let later = 0;
  const stopLater = h.sim.startChurn({ intervalMs: 20, changesPerTick: 1, onChange: () => later++ });
  t.after(stopLater);
  await waitUntil(() => later >= 2, 5000, "two ticks of a second churn");
  stopLater();
  assert.equal(changes.length, n, "no change after stop()");
});

test("users/{id} and users/{id}/status", async (t) => {
  const h = await startSim(t, { users: 5 });
  const u = h.sim.listUsers().find((x) => x.id !== h.sim.botUser.id)!;
  h.sim.setStatus(u.id, "dnd");
  assert.equal((await jsonOf<Profile>(await h.api(`users/${u.id}`))).username, u.username);
  const s = await jsonOf<StatusItem>(await h.api(`users/${u.id}/status`));
  assert.equal(s.status, "dnd");
  assert.equal((await h.api("users/abc")).status, 400);
  assert.equal((await h.api(`users/${"q".repeat(26)}`)).status, 404);
});

test("PUT users/{id}/status: as Mattermost's updateUserStatus answers", async (t) => {
  const h = await startSim(t, { users: 5 });
  const u = h.sim.listUsers().find((x) => x.id !== h.sim.botUser.id)!;
  const put = (id: string, body: unknown) =>
    h.api(`users/${id}/status`, { method: "PUT", body: JSON.stringify(body) });

  const online = await jsonOf<StatusItem>(await put(u.id, { user_id: u.id, status: "online" }));
  assert.equal(online.status, "online");
  assert.equal(online.manual, false, "online is never manual");
  assert.equal(h.sim.getStatus(u.id), "online");
  const away = await jsonOf<StatusItem>(await put(u.id, { user_id: u.id, status: "away" }));
  assert.deepEqual([away.status, away.manual], ["away", true]);
  // dnd_end_time is Unix seconds, truncated to the minute.
  const dnd = await jsonOf<StatusItem>(
    await put(u.id, { user_id: u.id, status: "dnd", dnd_end_time: 1_900_000_059 }),
  );
  assert.deepEqual([dnd.status, dnd.manual, dnd.dnd_end_time], ["dnd", true, 1_900_000_020]);
  assert.equal((await jsonOf<StatusItem>(await h.api(`users/${u.id}/status`))).dnd_end_time, 1_900_000_020);

  const bad = async (res: Response, status: number, id: string) => {
    assert.equal(res.status, status);
    assert.equal((await jsonOf<AppErr>(res)).id, id);
  };
  await bad(
    await put(u.id, { user_id: u.id, status: "ooo" }),
    400,
    "api.context.invalid_body_param.app_error",
  );
  await bad(
    await put(u.id, { user_id: h.sim.botUser.id, status: "online" }),
    400,
    "api.context.invalid_body_param.app_error",
  );
  await bad(
    await put("abc", { user_id: "abc", status: "online" }),
    400,
    "api.context.invalid_url_param.app_error",
  );
  assert.equal((await h.api(`users/${u.id}/status`, { method: "PUT", token: null, body: "{}" })).status, 401);
  assert.equal(h.sim.getStatus(u.id), "dnd", "refused changes change nothing");

  // Without manage_system (edit_other_users) only the token's own user.
  h.sim.setBotIsAdmin(false);
  await bad(await put(u.id, { user_id: u.id, status: "online" }), 403, "api.context.permissions.app_error");
  const me = h.sim.botUser.id;
  assert.equal((await jsonOf<StatusItem>(await put(me, { user_id: me, status: "away" }))).status, "away");
  assert.equal((await h.api(`users/${u.id}/status`, { method: "POST" })).status, 405);
});

test("config returns the plugin settings given", async (t) => {
  const h = await startSim(t, {
    pluginSettings: { "com.mattermost.outlook-presence": { secret: "s3cret", pagesize: 100 } },
  });
  const cfg = await jsonOf<{ PluginSettings: { Plugins: Record<string, Record<string, unknown>> } }>(
    await h.api("config"),
  );
  assert.deepEqual(cfg.PluginSettings.Plugins["com.mattermost.outlook-presence"], {
    secret: "s3cret",
    pagesize: 100,
  });
  h.sim.setPluginSettings("com.mattermost.outlook-presence", undefined);
  const cfg2 = await jsonOf<{ PluginSettings: { Plugins: Record<string, unknown> } }>(await h.api("config"));
  assert.deepEqual(cfg2.PluginSettings.Plugins, {});
  assert.equal((await h.api("config", { token: null })).status, 401);
});

test("runSimulate: bad flags → 2 naming the flag, --help → 0, runs until stopped", async () => {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  assert.equal(await runSimulate(["--bogus"], io), 2);
  assert.ok(lines.some((l) => l.includes("--bogus")));
  lines.length = 0;
  assert.equal(await runSimulate(["--port", "abc"], io), 2);
  assert.ok(lines.some((l) => l.includes("--port")));
  lines.length = 0;
  assert.equal(await runSimulate(["--help"], io), 0);
  assert.ok(lines.join("\n").includes("--churn-ms"));

  lines.length = 0;
  const ac = new AbortController();
  const run = runSimulate(["--port", "0", "--users", "20", "--churn-ms", "50"], { ...io, signal: ac.signal });
  let url: string | undefined;
  let token: string | undefined;
  for (let i = 0; i < 100 && !(url && token); i++) {
    await new Promise((r) => setTimeout(r, 10));
    url = lines.map((l) => /MATTERMOST_URL=(\S+)/.exec(l)?.[1]).find(Boolean);
    token = lines.map((l) => /MATTERMOST_TOKEN=([a-z0-9]{26})$/.exec(l)?.[1]).find(Boolean);
  }
  assert.ok(url && token, lines.join("\n"));
  const res = await fetch(`${url}/api/v4/users?active=true`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  ac.abort();
  assert.equal(await run, 0);
  await assert.rejects(fetch(`${url}/api/v4/system/ping`));
});
