import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  NO_CURSOR,
  PresenceSnapshot,
  type Change,
  type DirectoryEntry,
} from "../../src/presence/snapshot.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";

function loaded(users: DirectoryEntry[], statuses: Record<number, string>): PresenceSnapshot {
  const s = new PresenceSnapshot(() => 1000);
  s.applyDirectory(users);
  s.applyStatuses(new Map(Object.entries(statuses).map(([n, st]) => [id(Number(n)), st])), true);
  return s;
}

const brief = (cs: readonly Change[]) => cs.map((c) => `${c.email}=${c.status}`);

test("not ready until a directory and a complete status read are applied", () => {
  const s = new PresenceSnapshot();
  assert.equal(s.ready, false);
  s.applyDirectory([user(1)]);
  assert.equal(s.ready, false);
  s.applyStatuses(new Map([[id(1), "online"]]), false);
  assert.equal(s.ready, false);
  s.applyStatuses(new Map([[id(1), "online"]]), true);
  assert.equal(s.ready, true);
});

test("first statuses are changes; same status again is not; a new status is", () => {
  const s = new PresenceSnapshot();
  s.applyDirectory([user(1), user(2)]);
  const first = s.applyStatuses(
    new Map([
      [id(1), "online"],
      [id(2), "dnd"],
    ]),
    true,
  );
  assert.deepEqual(brief(first), ["user1@example.com=online", "user2@example.com=dnd"]);
  assert.deepEqual(s.applyStatuses(new Map([[id(1), "online"]]), true), []);
  const next = s.applyStatuses(new Map([[id(1), "away"]]), true);
  assert.deepEqual(brief(next), ["user1@example.com=away"]);
  assert.ok(next[0]!.seq > first[1]!.seq, "sequence numbers only grow");
});

test("ooo and unknown statuses are shown as away", () => {
  const s = loaded([user(1), user(2)], { 1: "ooo", 2: "something-new" });
  assert.deepEqual(
    s.visible().map((u) => u.status),
    ["away", "away"],
  );
});

test("a deactivated or deleted user gets one offline change and leaves the visible list", () => {
  const s = loaded([user(1), user(2)], { 1: "online", 2: "online" });
  const changes = s.applyDirectory([user(1)]);
  assert.deepEqual(brief(changes), ["user2@example.com=offline"]);
  assert.deepEqual(
    s.visible().map((u) => u.id),
    [id(1)],
  );
  assert.deepEqual(s.applyDirectory([user(1)]), [], "only once");
});

test("a new user appears with their status once Mattermost has answered for them", () => {
  const s = loaded([user(1)], { 1: "online" });
  assert.deepEqual(s.applyDirectory([user(1), user(2)]), []);
  assert.equal(s.visible().length, 1, "held back until its status is known");
  const changes = s.applyStatuses(
    new Map([
      [id(1), "online"],
      [id(2), "offline"],
    ]),
    true,
  );
  assert.deepEqual(brief(changes), ["user2@example.com=offline"]);
  assert.equal(s.visible().length, 2);
});

test("the first load is returned but not emitted to listeners", () => {
  const s = new PresenceSnapshot();
  const got: number[] = [];
  s.onChanges((c) => got.push(c.length));
  s.applyDirectory([user(1), user(2)]);
  assert.equal(
    s.applyStatuses(
      new Map([
        [id(1), "online"],
        [id(2), "dnd"],
      ]),
      true,
    ).length,
    2,
  );
  assert.deepEqual(got, []);
  s.applyStatuses(new Map([[id(1), "away"]]), true);
  assert.deepEqual(got, [1]);
});

test("statuses for unknown ids are ignored", () => {
  const s = loaded([user(1)], { 1: "online" });
  assert.deepEqual(s.applyStatuses(new Map([[id(9), "dnd"]]), true), []);
  assert.equal(s.get(id(9)), undefined);
});

test("an email change moves the user: offline for the old address, status for the new", () => {
  const s = loaded([user(1)], { 1: "dnd" });
  const changes = s.applyDirectory([user(1, "new@example.com")]);
  assert.deepEqual(brief(changes), ["user1@example.com=offline", "new@example.com=dnd"]);
});

test("users without an email are never visible and never produce changes", () => {
  const s = loaded([user(1, ""), user(2)], { 1: "online", 2: "online" });
  assert.deepEqual(
    s.visible().map((u) => u.id),
    [id(2)],
  );
  assert.deepEqual(s.applyStatuses(new Map([[id(1), "away"]]), true), []);
});

test("change listeners receive each batch once", () => {
  const s = loaded([user(1)], { 1: "online" });
  const got: string[][] = [];
  s.onChanges((c) => got.push(brief(c)));
  s.applyStatuses(new Map([[id(1), "away"]]), true);
  s.applyStatuses(new Map([[id(1), "away"]]), true);
  assert.deepEqual(got, [["user1@example.com=away"]]);
});

test("property: replaying the emitted changes onto a provider's view equals the snapshot", () => {
  const statusArb = fc.constantFrom("online", "away", "dnd", "offline", "ooo");
  const step = fc.oneof(
    fc.record({ kind: fc.constant("dir" as const), members: fc.uniqueArray(fc.integer({ min: 0, max: 9 })) }),
    fc.record({
      kind: fc.constant("status" as const),
      st: fc.array(fc.tuple(fc.integer({ min: 0, max: 9 }), statusArb)),
    }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
      const s = new PresenceSnapshot();
      const view = new Map<string, string>();
      s.onChanges((cs) => cs.forEach((c) => view.set(c.email, c.status)));
      let paged = false;
      for (const st of steps) {
        if (st.kind === "dir") s.applyDirectory(st.members.sort((a, b) => a - b).map((n) => user(n)));
        else s.applyStatuses(new Map(st.st.map(([n, v]) => [id(n), v])), true);
        // A provider pages /status as soon as the gateway is ready, then follows the changes.
        if (s.ready && !paged) {
          paged = true;
          for (const u of s.visible()) view.set(u.email, u.status!);
        }
      }
      fc.pre(paged);
      const expected = new Map(s.visible().map((u) => [u.email, u.status as string]));
      for (const [email, status] of view) {
        if (!expected.has(email))
          assert.equal(status, "offline", `${email} left but the view says ${status}`);
        else assert.equal(status, expected.get(email));
      }
      for (const email of expected.keys()) assert.ok(view.has(email), `${email} never announced`);
    }),
  );
});

test("visible changes are read by each reader from its own cursor, taking nothing from the others", () => {
  const s = loaded([user(0), user(1), user(2)], { 0: "online", 1: "online", 2: "online" });
  const a = s.visibleChangesSince(NO_CURSOR);
  assert.equal(a.all, true, "a new reader starts from everything");
  let b = s.visibleChangesSince(NO_CURSOR);
  s.applyStatuses(new Map([[id(2), "dnd"]]), true);
  const a2 = s.visibleChangesSince(a.cursor);
  assert.deepEqual([a2.all, [...a2.indices]], [false, [2]]);
  assert.deepEqual([...s.visibleChangesSince(a2.cursor).indices], [], "nothing new for the first reader");
  s.applyStatuses(new Map([[id(0), "away"]]), true);
  b = s.visibleChangesSince(b.cursor);
  assert.deepEqual([b.all, [...b.indices]], [false, [2, 0]], "the second reader still sees both");
  s.applyStatuses(new Map([[id(1), "offline"]]), true); // status only: no layout change
  s.applyDirectory([user(0), user(2)]);
  const after = s.visibleChangesSince(b.cursor);
  assert.equal(after.all, true, "the list moved: every index may differ");
  assert.deepEqual([...s.visibleChangesSince(after.cursor).indices], []);
});

test("a reader that falls more than a list's worth of changes behind rebuilds everything", () => {
  const s = loaded([user(0)], { 0: "online" });
  const start = s.visibleChangesSince(NO_CURSOR);
  let recent = start;
  for (let i = 0; i < 3000; i++) {
    recent = s.visibleChangesSince(recent.cursor);
    s.applyStatuses(new Map([[id(0), i % 2 ? "online" : "away"]]), true);
  }
  assert.equal(s.visibleChangesSince(start.cursor).all, true);
  const last = s.visibleChangesSince(recent.cursor);
  assert.deepEqual([last.all, [...last.indices]], [false, [0]], "a reader that kept up keeps its place");
});
