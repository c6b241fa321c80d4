import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import type { PresenceResponse } from "../../src/http/v2/protocol.js";
import { MattermostSimulator, type SimUser } from "../../src/simulator/index.js";
import { startInProcess, waitUntil, type InProcessGateway } from "../helpers/in-process.js";
import { markerChange } from "../helpers/markers.js";
import { FakeProvider } from "../helpers/provider.js";
import { documentValidator, validate } from "../helpers/v2-schema.js";

const TOKEN = `v2-api-token-${process.pid}`;
const SECRET = `v2-api-secret-${process.pid}-x`;
const auth = { Authorization: `Bearer ${SECRET}` };

describe("API v2 HTTP: /api/v2/presence, /query and the OpenAPI document", () => {
  let sim: MattermostSimulator;
  let gw: InProcessGateway;
  let people: SimUser[];
  const get = (path: string, headers: Record<string, string> = auth) =>
    fetch(`${gw.url}${path}`, { headers });
  const query = (body: string, headers: Record<string, string> = auth) =>
    fetch(`${gw.url}/api/v2/presence/query`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body,
    });
  const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 300, seed: 5 });
    await sim.start(0, "127.0.0.1");
    gw = await startInProcess(sim, TOKEN, SECRET, { PRESENCE_POLL_INTERVAL_MS: "250", LOG_LEVEL: "info" });
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
    people = sim.listUsers().filter((u) => u.delete_at === 0 && !u.is_bot && u.email);
  });

  after(async () => {
    await gw?.stop();
    await sim?.stop();
  });

  test("GET /api/v2/presence: everyone with an email, in the documented shape, with Mattermost's details", async () => {
    const res = await get("/api/v2/presence");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    const body = (await res.json()) as PresenceResponse;
    assert.deepEqual(validate("PresenceResponse", body), []);
    assert.equal(body.seq, gw.gateway.snapshot.lastSeq);
    const active = sim.listUsers().filter((u) => u.delete_at === 0 && u.email);
    assert.equal(body.users.length, active.length);
    for (const u of body.users.slice(0, 50)) {
      const rec = (await await fetch(`${sim.url}/api/v4/users/${u.user_id}/status`, {
        headers: { Authorization: `Bearer ${TOKEN}` },
      }).then((r) => r.json())) as { manual: boolean; last_activity_at: number; status: string };
      assert.equal(u.manual, rec.manual, `${u.email} manual`);
      assert.equal(u.last_activity_at, rec.last_activity_at, `${u.email} last_activity_at`);
    }
    assert.ok(
      body.users.some((u) => u.manual),
      "some statuses are manual (dnd)",
    );
    assert.ok(body.users.some((u) => u.last_activity_at > 0));
  });

  test("auth: Bearer only; a missing or wrong secret is 401 with a stable code", async () => {
    const none = await get("/api/v2/presence", {});
    assert.equal(none.status, 401);
    assert.equal(await errorCode(none), "unauthorized");
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal((await get("/api/v2/presence", { Authorization: "Bearer nope" })).status, 401);
    assert.equal((await get(`/api/v2/presence?secret=${SECRET}`, {})).status, 401, "no secret in URLs");
  });

  test("filters: ?emails= and ?user_ids= (comma separated), and POST /query for long lists", async () => {
    const [a, b, c] = people as [SimUser, SimUser, SimUser];
    const res = await get(
      `/api/v2/presence?emails=${encodeURIComponent(`${a.email.toUpperCase()},nobody@x.y`)}&user_ids=${b.id}`,
    );
    const body = (await res.json()) as PresenceResponse;
    assert.deepEqual(validate("PresenceResponse", body), []);
    assert.deepEqual(body.users.map((u) => u.user_id).sort(), [a.id, b.id].sort());

    const long = {
      emails: [...people.map((u) => u.email), ...Array.from({ length: 2000 }, (_, i) => `x${i}@nowhere`)],
    };
    const q = await query(JSON.stringify(long));
    assert.equal(q.status, 200);
    const qBody = (await q.json()) as PresenceResponse;
    assert.equal(qBody.users.length, people.length);
    const byIds = (await (await query(JSON.stringify({ user_ids: [c.id] }))).json()) as PresenceResponse;
    assert.deepEqual(
      byIds.users.map((u) => u.user_id),
      [c.id],
    );

    assert.equal(await errorCode(await query("{")), "invalid_body");
    assert.equal(await errorCode(await query(JSON.stringify({ emails: "a@b" }))), "invalid_body");
    assert.equal(await errorCode(await query(JSON.stringify({ other: 1 }))), "invalid_body");
    const big = await query(JSON.stringify({ emails: ["x".repeat(300)] }).padEnd(5 * 1024 * 1024, " "));
    assert.equal(big.status, 413);
    assert.equal((await query("{}", {})).status, 401);
  });

  test("an oversized body, declared or streamed, gets 413 and is drained, not cut off mid-upload", async () => {
    // Cutting the socket while the client is still sending makes the kernel reset the connection,
    // and the client may then lose the 413 it had not read yet ("fetch failed"): the server must
    // read the whole body (up to its drain cap) before any close.
    const serverSockets: Socket[] = [];
    const onConnection = (socket: Socket) => serverSockets.push(socket);
    gw.gateway.server.on("connection", onConnection);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const post = (chunks: readonly Buffer[], headers: Record<string, string> = {}) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(
            `${gw.url}/api/v2/presence/query`,
            { method: "POST", agent, headers: { ...auth, ...headers } },
            (res) => {
              let body = "";
              res.on("data", (d: Buffer) => (body += d.toString()));
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on("error", reject);
          for (const c of chunks) req.write(c);
          req.end();
        });
      const chunks = Array<Buffer>(80).fill(Buffer.alloc(64 * 1024, " ")); // 5 MiB, the limit is 4
      const declared = await post(chunks, { "Content-Length": String(5 * 1024 * 1024) });
      assert.equal(declared.status, 413);
      assert.match(declared.body, /"body_too_large"/);
      const streamed = await post(chunks); // chunked: found to be too large while reading
      assert.equal(streamed.status, 413);
      const next = await post([Buffer.from(JSON.stringify({ user_ids: [people[0]!.id] }))]);
      assert.equal(next.status, 200, "the gateway answers the next request");
    } finally {
      agent.destroy();
      gw.gateway.server.off("connection", onConnection);
    }
    await waitUntil(() => serverSockets.every((s) => s.destroyed), 5000, "server sockets closed");
    const read = serverSockets.reduce((sum, s) => sum + s.bytesRead, 0);
    assert.ok(read >= 2 * 5 * 1024 * 1024, `the server read ${read} bytes of two 5 MiB bodies`);
  });

  test("a refused request's body is drained only so far: a client sending forever is cut off", async () => {
    let status = 0;
    let sent = 0;
    let ended = false;
    const req = request(`${gw.url}/api/v2/presence/query`, { method: "POST" }); // no secret: 401
    req.on("response", (res) => {
      status = res.statusCode ?? 0;
      res.resume();
    });
    req.on("error", () => (ended = true));
    req.on("close", () => (ended = true));
    const chunk = Buffer.alloc(256 * 1024, " ");
    // At most 64 MiB: the gateway cuts it at 8 MiB past the answer.
    while (!ended && sent < 64 * 1024 * 1024) {
      sent += chunk.length;
      if (!req.write(chunk)) await new Promise((r) => setTimeout(r, 5));
      if (!req.writableNeedDrain) await new Promise((r) => setImmediate(r));
    }
    req.destroy();
    assert.equal(status, 401);
    assert.ok(ended && sent < 32 * 1024 * 1024, `cut off after ${sent} bytes`);
  });

  test("ETag and 304; a new last_activity_at alone changes the answer but sends providers nothing", async () => {
    const first = await get("/api/v2/presence");
    const etag = first.headers.get("etag");
    assert.ok(etag);
    const body = (await first.json()) as PresenceResponse;
    const again = await get("/api/v2/presence", { ...auth, "If-None-Match": etag });
    assert.equal(again.status, 304);
    const filtered = await get(`/api/v2/presence?user_ids=${people[0]!.id}`);
    assert.notEqual(filtered.headers.get("etag"), etag, "a filter has its own ETag");

    const provider = new FakeProvider(gw.url, SECRET);
    await provider.loadStatus(); // as a provider starts: so its socket needs no resync
    await provider.connect();
    try {
      // An online user seen active again: same status, newer last_activity_at.
      const u = body.users.find((x) => x.status === "online")!;
      await new Promise((r) => setTimeout(r, 5)); // a different millisecond for last_activity_at
      sim.setStatus(u.user_id, "online");
      const seq = gw.gateway.snapshot.lastSeq;
      await waitUntil(
        async () => (await get("/api/v2/presence", { ...auth, "If-None-Match": etag })).status === 200,
        5000,
        "the ETag to change",
      );
      const next = (await (await get(`/api/v2/presence?user_ids=${u.user_id}`)).json()) as PresenceResponse;
      assert.ok(next.users[0]!.last_activity_at > u.last_activity_at);
      assert.equal(gw.gateway.snapshot.lastSeq, seq, "no Change was made");
      assert.equal(next.seq, seq);
      // A later change reached the socket: a message for `u` would have come before it.
      const other = body.users.find((x) => x.user_id !== u.user_id)!;
      await markerChange(sim, provider, { id: other.user_id, email: other.email });
      assert.deepEqual(
        provider.messages.filter((m) => m.user_id === u.user_id),
        [],
        "the compat socket got nothing for it",
      );
    } finally {
      provider.close();
    }
  });

  test("gzip when asked", async () => {
    const res = await fetch(`${gw.url}/api/v2/presence`, { headers: { ...auth, "Accept-Encoding": "gzip" } });
    assert.equal(res.status, 200);
    // fetch decodes gzip itself; the header says it was sent compressed.
    assert.equal(res.headers.get("content-encoding"), "gzip");
    const body = (await res.json()) as PresenceResponse;
    assert.ok(body.users.length > 0);
  });

  test("GET /api/v2/openapi.json: an OpenAPI 3.1 document whose schemas the answers above satisfy", async () => {
    const res = await fetch(`${gw.url}/api/v2/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    };
    assert.equal(doc.openapi, "3.1.0");
    assert.deepEqual(Object.keys(doc.paths).sort(), [
      "/api/v2/openapi.json",
      "/api/v2/presence",
      "/api/v2/presence/query",
      "/api/v2/stream",
    ]);
    for (const name of ["PresenceResponse", "ServerMessage", "ClientMessage", "Error"]) {
      assert.ok(doc.components.schemas[name], name);
    }
    // Real answers against the document as served (not the source object), with ajv.
    const published = documentValidator(doc);
    const err = await (await get("/api/v2/presence", {})).json();
    assert.deepEqual(published("Error", err), []);
    const body = (await (await get("/api/v2/presence")).json()) as PresenceResponse;
    assert.deepEqual(published("PresenceResponse", body), []);
    // The validator is not vacuous: the same answer, deliberately wrong, fails.
    assert.notDeepEqual(published("PresenceResponse", { ...body, seq: -1 }), []);
    assert.notDeepEqual(
      published("PresenceResponse", { ...body, users: [{ ...body.users[0], status: "busy" }] }),
      [],
    );
    assert.notDeepEqual(published("Error", { error: { code: 401 } }), []);
    assert.notDeepEqual(
      published("ServerMessage", { type: "changes", epoch: body.epoch, seq: 1, changes: [], extra: 1 }),
      [],
    );
  });
});
