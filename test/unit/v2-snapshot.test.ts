import assert from "node:assert/strict";
import { test } from "node:test";
import { PresenceSnapshot, type Change, type StatusDetail } from "../../src/presence/snapshot.js";
import { PresenceView, filterFromQuery, makeFilter, FilterError } from "../../src/http/v2/view.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";

const detail = (status: string, manual: boolean, lastActivityAt: number) => ({
  status,
  manual,
  lastActivityAt,
});

function loaded(): { s: PresenceSnapshot; batches: Change[][] } {
  const s = new PresenceSnapshot(() => 1000);
  const batches: Change[][] = [];
  s.onChanges((c) => batches.push([...c]));
  s.applyDirectory([user(1), user(2), user(3)]);
  s.applyStatuses(
    new Map<string, string | StatusDetail>([
      [id(1), detail("online", false, 500)],
      [id(2), detail("dnd", true, 400)],
      [id(3), "away"],
    ]),
    true,
  );
  return { s, batches };
}

test("manual and last_activity_at are stored but a change of them alone is no Change", () => {
  const { s, batches } = loaded();
  assert.equal(s.get(id(1))!.lastActivityAt, 500);
  assert.equal(s.get(id(2))!.manual, true);
  const seq = s.lastSeq;
  const version = s.version;
  const changes = s.applyStatuses(new Map([[id(1), detail("online", false, 900)]]), true);
  assert.deepEqual(changes, []);
  assert.deepEqual(batches, [], "nothing emitted: compat sockets see nothing");
  assert.equal(s.lastSeq, seq);
  assert.equal(s.get(id(1))!.lastActivityAt, 900);
  assert.ok(s.version > version, "readers caching v2 answers see the new detail");
  const next = s.applyStatuses(new Map([[id(1), detail("away", false, 900)]]), true);
  assert.deepEqual(
    next.map((c) => [c.email, c.status]),
    [["user1@example.com", "away"]],
  );
  assert.equal(batches.length, 1);
});

test("the view lists visible users with v2 fields, cached per version, filtered by email or id", () => {
  const { s } = loaded();
  const view = new PresenceView(s);
  const all = JSON.parse(view.body(undefined).json) as { seq: number; users: Record<string, unknown>[] };
  assert.equal(all.seq, s.lastSeq);
  assert.deepEqual(all.users[0], {
    user_id: id(1),
    username: "user0001",
    email: "user1@example.com",
    status: "online",
    manual: false,
    last_activity_at: 500,
  });
  assert.deepEqual(all.users[2], {
    user_id: id(3),
    username: "user0003",
    email: "user3@example.com",
    status: "away",
    manual: false,
    last_activity_at: 0,
  });
  assert.equal(view.body(undefined).json, view.body(undefined).json);
  const f = filterFromQuery(new URLSearchParams(`emails=USER2@example.com,nobody@x&user_ids=${id(3)}`));
  const some = JSON.parse(view.body(f).json) as { users: { user_id: string }[] };
  assert.deepEqual(
    some.users.map((u) => u.user_id),
    [id(2), id(3)],
  );
  const snap = JSON.parse(view.body(f, '"type":"snapshot",').json) as { type: string };
  assert.equal(snap.type, "snapshot");
  assert.equal(filterFromQuery(new URLSearchParams("")), undefined, "no filter: everyone");
  assert.equal(JSON.parse(view.body(makeFilter([], undefined)).json).users.length, 0, "empty filter: nobody");
  const many = Array.from({ length: 50_001 }, (_, i) => `${i}@x`).join(",");
  assert.throws(() => filterFromQuery(new URLSearchParams(`emails=${many}`)), FilterError);
  const half = Array.from({ length: 25_001 }, (_, i) => `${i}@x`).join(",");
  assert.throws(
    () => filterFromQuery(new URLSearchParams(`emails=${half}&user_ids=${half}`)),
    /at most 50000 emails and user_ids together/,
  );
  assert.throws(() => filterFromQuery(new URLSearchParams(`user_ids=${"x".repeat(65)}`)), FilterError);
});
