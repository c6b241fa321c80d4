/**
 * Conformance: Mattermost's WebSocket as the gateway uses it (hints to re-read the directory and
 * the plugin's settings): authentication by header, hello, and the broadcast events.
 */
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { WebSocket } from "ws";
import { PLUGIN_ID } from "../../src/mattermost/plugin-settings.js";
import { useTarget } from "./suite.js";
import { tag } from "./target.js";

const target = useTarget();

interface WsEvent {
  event?: string;
  data?: Record<string, unknown>;
  seq?: number;
  status?: string;
}

interface Listener {
  events: WsEvent[];
  /** Resolves with the first event (already received or to come) that matches; rejects after 15 s. */
  next(pred: (e: WsEvent) => boolean, what: string): Promise<WsEvent>;
}

async function listen(c: TestContext, token: string): Promise<Listener> {
  const url = `${target().url.replace(/^http/, "ws")}/api/v4/websocket`;
  const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
  const events: WsEvent[] = [];
  const waiters = new Set<() => void>();
  ws.on("message", (d) => {
    events.push(JSON.parse(d.toString()) as WsEvent);
    for (const w of [...waiters]) w();
  });
  c.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const next = (pred: (e: WsEvent) => boolean, what: string): Promise<WsEvent> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = events.find(pred);
        if (!hit) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no ${what} within 15 s; got ${events.map((e) => e.event ?? e.status).join(", ")}`));
      }, 15_000);
      waiters.add(check);
      check();
    });
  return { events, next };
}

test("a WebSocket authenticated by the Authorization header gets hello first, seq 0", async (c) => {
  const l = await listen(c, target().token);
  const hello = await l.next((e) => e.event === "hello", "hello");
  assert.equal(l.events[0], hello);
  assert.equal(hello.seq, 0);
  assert.equal(typeof hello.data?.server_version, "string");
});

test("a WebSocket with a wrong token gets no hello", async (c) => {
  const l = await listen(c, "wrongtoken0000000000000000");
  // Mattermost keeps the socket open for an authentication_challenge; a ping answer proves the
  // server has read what it will read before we look.
  const ws = new WebSocket(`${target().url.replace(/^http/, "ws")}/api/v4/websocket`, {
    headers: { Authorization: `Bearer ${target().token}` },
  });
  c.after(() => ws.terminate());
  await new Promise((r) => ws.once("message", r));
  assert.equal(
    l.events.find((e) => e.event === "hello"),
    undefined,
  );
});

test("creating a user broadcasts new_user {user_id} to the admin token's socket", async (c) => {
  const t = target();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  const u = await t.admin.createUser();
  const ev = await l.next((e) => e.event === "new_user" && e.data?.user_id === u.id, "new_user");
  assert.equal(ev.data?.user_id, u.id);
});

test("creating a user broadcasts new_user to a non-admin token's socket too", async (c) => {
  const t = target();
  if (!t.plainToken) return c.skip("no CONFORMANCE_BOT_TOKEN");
  const l = await listen(c, t.plainToken);
  await l.next((e) => e.event === "hello", "hello");
  const u = await t.admin.createUser();
  await l.next((e) => e.event === "new_user" && e.data?.user_id === u.id, "new_user");
});

test("changing a user's profile broadcasts user_updated {user}", async (c) => {
  const t = target();
  const u = await t.admin.createUser();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  await t.admin.touch(u);
  const ev = await l.next(
    (e) => e.event === "user_updated" && (e.data?.user as { id?: string } | undefined)?.id === u.id,
    "user_updated",
  );
  assert.equal((ev.data?.user as { id: string }).id, u.id);
});

test("deactivating a user broadcasts user_activation_status_change", async (c) => {
  const t = target();
  const u = await t.admin.createUser();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  await t.admin.deactivate(u);
  await l.next((e) => e.event === "user_activation_status_change", "user_activation_status_change");
});

test("deactivating a user broadcasts user_updated with its delete_at set", async (c) => {
  const t = target();
  const u = await t.admin.createUser();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  await t.admin.deactivate(u);
  const ev = await l.next(
    (e) => e.event === "user_updated" && (e.data?.user as { id?: string } | undefined)?.id === u.id,
    "user_updated",
  );
  assert.ok((ev.data?.user as { delete_at: number }).delete_at > 0);
});

test("saving the config (plugin settings) broadcasts config_changed to the admin token's socket", async (c) => {
  const t = target();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  const undo = await t.admin.patch({ plugin: { id: PLUGIN_ID, settings: { Secret: `s${tag()}` } } });
  c.after(() => t.admin.patch(undo));
  await l.next((e) => e.event === "config_changed", "config_changed");
});

test("a status change through the API sends no broadcast event to another token's socket", async (c) => {
  const t = target();
  const u = await t.admin.createUser();
  const l = await listen(c, t.token);
  await l.next((e) => e.event === "hello", "hello");
  await t.admin.setStatus(u.id, "dnd");
  // A later broadcast that surely arrives marks the point by which a status event would have come.
  const marker = await t.admin.createUser();
  await l.next((e) => e.event === "new_user" && e.data?.user_id === marker.id, "new_user");
  const leaked = l.events.filter(
    (e) => e.event === "status_change" && (e.data as { user_id?: string } | undefined)?.user_id === u.id,
  );
  assert.deepEqual(leaked, []);
});
