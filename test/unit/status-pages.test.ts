import assert from "node:assert/strict";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { StatusPages } from "../../src/http/status-pages.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { encodeStatus, goJsonString } from "../../src/presence/wire.js";
import { directoryUser, userId as id } from "../helpers/directory.js";

function snapshotOf(n: number): PresenceSnapshot {
  const s = new PresenceSnapshot();
  s.applyDirectory(Array.from({ length: n }, (_, i) => directoryUser(i, `u${i}@x.io`)));
  s.applyStatuses(new Map(Array.from({ length: n }, (_, i) => [id(i), "online"])), true);
  return s;
}

const parse = (b: Buffer) => JSON.parse(b.toString()) as { user_id: string; email: string; status: string }[];

test("pages cover every visible user once, in order, then []", () => {
  const pages = new StatusPages(snapshotOf(250), 100);
  const all = [0, 1, 2].flatMap((p) => parse(pages.get(p).body));
  assert.equal(all.length, 250);
  assert.deepEqual(
    all.map((u) => u.user_id),
    Array.from({ length: 250 }, (_, i) => id(i)),
  );
  assert.equal(pages.get(3).body.toString(), "[]");
  assert.equal(pages.get(1e20).body.toString(), "[]");
});

test("a page is the same bytes until the snapshot changes it, then only that page changes", () => {
  const s = snapshotOf(250);
  const pages = new StatusPages(s, 100);
  const p0 = pages.get(0);
  const p2 = pages.get(2);
  assert.equal(pages.get(0), p0, "served from the same object");
  s.applyStatuses(new Map([[id(210), "dnd"]]), true);
  assert.equal(pages.get(0), p0);
  const p2b = pages.get(2);
  assert.notEqual(p2b.etag, p2.etag);
  assert.equal(parse(p2b.body)[10]!.status, "dnd");
});

test("two caches on one snapshot (a worker's and an admin view's) each see every change", () => {
  const s = snapshotOf(250);
  const first = new StatusPages(s, 100);
  const second = new StatusPages(s, 100);
  first.get(2);
  second.get(2);
  s.applyStatuses(new Map([[id(210), "dnd"]]), true);
  // The first reader looks before the second: it must not use the change up.
  assert.equal(parse(first.get(2).body)[10]!.status, "dnd");
  assert.equal(parse(second.get(2).body)[10]!.status, "dnd");
  s.applyStatuses(new Map([[id(5), "away"]]), true);
  assert.equal(parse(second.get(0).body)[5]!.status, "away");
  assert.equal(parse(first.get(0).body)[5]!.status, "away");
});

test("a directory change rebuilds the pages", () => {
  const s = snapshotOf(3);
  const pages = new StatusPages(s, 2);
  const before = pages.get(0).etag;
  s.applyDirectory([{ id: id(1), username: "user0001", email: "u1@x.io", isBot: false }]);
  assert.notEqual(pages.get(0).etag, before);
  assert.equal(parse(pages.get(0).body).length, 1);
});

test("gzip is the same content, built once", () => {
  const pages = new StatusPages(snapshotOf(10), 100);
  const p = pages.get(0);
  const gz = pages.gzip(p);
  assert.deepEqual(gunzipSync(gz), p.body);
  assert.equal(pages.gzip(p), gz);
});

test("serialization matches Go's encoding/json, field order and HTML escaping included", () => {
  assert.equal(
    encodeStatus("abc", "a<b>&c@x.io", "dnd"),
    '{"user_id":"abc","email":"a\\u003cb\\u003e\\u0026c@x.io","status":"dnd"}',
  );
  assert.equal(goJsonString("\u2028"), '"\\u2028"');
  assert.equal(goJsonString('q"\\'), '"q\\"\\\\"');
});
