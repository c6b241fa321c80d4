/**
 * Issue 13, item 1: secret decoding is bounded. Unbounded, 32 unauthenticated /api/v2/stream
 * sockets each sending one 4 MiB auth message of nested `%25` escapes held the event loop 53.6 s,
 * and a 15 KB encoded `?secret=` cost 4.5 ms per request even when the answer was 429.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import WebSocket from "ws";
import type * as ClientModule from "../../src/client/index.js";
import {
  MAX_PRESENTED_SECRET_CHARS,
  goQueryUnescape,
  presentedSecretLimit,
  secretMatches,
} from "../../src/http/auth.js";
import { V2_MAX_AUTH_MESSAGE_BYTES } from "../../src/http/v2/protocol.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { startInProcess, waitUntil } from "../helpers/in-process.js";
import { StreamConn } from "../helpers/v2-stream.js";

const TOKEN = `sec-decode-token-${process.pid}`;
const SECRET = `sec-decode-secret-${process.pid}-abcdefgh`;

/** `value` URL-encoded `rounds` times more: what a hostile client nests to make decoding work. */
function nested(value: string, rounds: number): string {
  let v = value;
  for (let i = 0; i < rounds; i++) v = encodeURIComponent(v);
  return v;
}

/**
 * About `chars` characters of escapes nested 8 deep (`%2525252525252541` is an `A` after 8 rounds,
 * 2 characters shorter after each): the most decoding work a value of that length can ask for.
 */
function escapes(chars: number): string {
  const unit = `%${"25".repeat(7)}41`;
  return unit.repeat(Math.floor(chars / unit.length));
}

function countingDecoder(): { decode: (s: string) => string | null; calls: () => number } {
  let calls = 0;
  return {
    decode: (s) => {
      calls++;
      return goQueryUnescape(s);
    },
    calls: () => calls,
  };
}

describe("secretMatches bounds its work", () => {
  test("a 1 MB presented value is refused without a single decoding round", () => {
    const counter = countingDecoder();
    assert.equal(secretMatches([SECRET], escapes(300), counter.decode), false);
    assert.equal(counter.calls(), 8, "a short value is decoded, 8 rounds deep at most");
    const after = counter.calls();
    assert.equal(secretMatches([SECRET], escapes(1024 * 1024), counter.decode), false);
    assert.equal(counter.calls() - after, 0);
  });

  test("a 15 KB encoded ?secret= (the public-path case) is refused without decoding", () => {
    const counter = countingDecoder();
    assert.equal(secretMatches([SECRET], escapes(15_000), counter.decode), false);
    assert.equal(counter.calls(), 0);
    // Nothing is lost by the cap: an ASCII secret of this length encoded 8 more times (each
    // character as %XX, then each % as %25) stays under it.
    const deepest = nested(
      SECRET.replace(/./g, (c) => `%${c.charCodeAt(0).toString(16)}`),
      7,
    );
    assert.ok(deepest.length <= MAX_PRESENTED_SECRET_CHARS, `${deepest.length}`);
    assert.equal(secretMatches([SECRET], deepest), true);
  });

  test("within the cap, the old plugin's leniency stays: decoded (and counted) until it matches", () => {
    const counter = countingDecoder();
    assert.equal(secretMatches([SECRET], nested("a/b c", 2), counter.decode), false);
    assert.ok(counter.calls() >= 1, "the seam sees every decoding round");
    const before = counter.calls();
    assert.equal(secretMatches(["a/b c"], nested("a/b c", 2), counter.decode), true);
    assert.equal(counter.calls() - before, 2);
  });

  test("decoding rounds are bounded: at most 8 per check, whatever the nesting", () => {
    const counter = countingDecoder();
    assert.equal(secretMatches([SECRET], nested("%", 40), counter.decode), false);
    assert.ok(counter.calls() <= 8, `${counter.calls()} rounds`);
  });

  test("a long configured secret raises the cap so that it still matches, encoded once", () => {
    const long = "a/".repeat(300);
    assert.equal(presentedSecretLimit([long]), 1800);
    assert.ok(encodeURIComponent(long).length > MAX_PRESENTED_SECRET_CHARS);
    assert.equal(secretMatches([long], encodeURIComponent(long)), true);
    assert.equal(presentedSecretLimit([SECRET]), MAX_PRESENTED_SECRET_CHARS);
  });
});

describe("/api/v2/stream takes only a small message before authentication", () => {
  test("a 1 MiB auth message is refused with 1009 before it is read; a small hostile one costs a bounded check; /healthz answers", async (t) => {
    const sim = new MattermostSimulator({ token: TOKEN, users: 30, seed: 5 });
    await sim.start(0, "127.0.0.1");
    t.after(() => sim.stop());
    const gw = await startInProcess(sim, TOKEN, SECRET, { LOG_LEVEL: "info" });
    t.after(() => gw.stop());
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
    const v2Url = `${gw.url.replace("http", "ws")}/api/v2/stream`;

    const closeCode = async (payload: string): Promise<number> => {
      const ws = new WebSocket(v2Url);
      ws.on("error", () => undefined);
      t.after(() => ws.terminate());
      await new Promise((resolve) => ws.once("open", resolve));
      const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
      ws.send(payload);
      return closed;
    };
    const hostile = (bytes: number): string => JSON.stringify({ type: "auth", secret: escapes(bytes - 40) });

    const codes = await Promise.all([1, 2, 3, 4].map(() => closeCode(hostile(1024 * 1024))));
    assert.deepEqual(codes, [1009, 1009, 1009, 1009], "refused by size, not decoded and then refused");
    // Just under the pre-auth limit: read, checked (bounded), refused as a wrong secret.
    assert.equal(await closeCode(hostile(V2_MAX_AUTH_MESSAGE_BYTES - 100)), 4401);
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200);
    await waitUntil(() => gw.gateway.v2.stream.size === 0, 5000, "every hostile socket freed");
    assert.equal(gw.gateway.v2.stream.pendingAuth, 0);

    // Once authenticated, a socket may send up to 4 MiB: a 1 MiB subscription is read and answered.
    const conn = await StreamConn.open(gw.url, { secret: SECRET });
    t.after(() => conn.close());
    await conn.nth("ready");
    const filler = Array.from({ length: 30_000 }, (_, i) => `nobody-${i}@example.invalid`);
    const someone = sim.listUsers().find((u) => u.email && u.delete_at === 0 && !u.is_bot)!;
    conn.send({ type: "subscribe", emails: [...filler, someone.email] });
    const snap = await conn.nth("snapshot", 1);
    assert.deepEqual(
      snap.users.map((u) => u.email),
      [someone.email],
    );
    assert.equal(conn.closed, undefined);
  });

  test("the client library sends a subscription too long for the auth message after authenticating", async (t) => {
    const Client = (await import("mattermost-outlook-presence/client")) as typeof ClientModule;
    const sim = new MattermostSimulator({ token: TOKEN, users: 30, seed: 6 });
    await sim.start(0, "127.0.0.1");
    t.after(() => sim.stop());
    const gw = await startInProcess(sim, TOKEN, SECRET, { LOG_LEVEL: "info" });
    t.after(() => gw.stop());
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
    const wanted = sim
      .listUsers()
      .filter((u) => u.email && u.delete_at === 0)
      .slice(0, 3)
      .map((u) => u.email);
    const emails = [...Array.from({ length: 4000 }, (_, i) => `nobody-${i}@example.invalid`), ...wanted];
    assert.ok(JSON.stringify({ emails }).length > V2_MAX_AUTH_MESSAGE_BYTES, "too long for an auth message");
    const client = new Client.PresenceClient({ url: gw.url, secret: SECRET, emails });
    const snapshots: number[] = [];
    client.on("snapshot", (m) => snapshots.push(m.users.length));
    t.after(() => client.stop());
    client.start();
    await waitUntil(() => client.isLive, 10_000, "live");
    assert.deepEqual([...client.users.values()].map((u) => u.email).sort(), [...wanted].sort());
    assert.deepEqual(snapshots, [wanted.length], "one snapshot: the one asked for");
  });
});
