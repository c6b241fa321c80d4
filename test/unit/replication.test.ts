import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { PresenceSnapshot, type Change, type ChangeMeta } from "../../src/presence/snapshot.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";

const view = (s: PresenceSnapshot) => s.visible().map((u) => `${u.email}=${u.status}`);

function leaderWith(n: number): PresenceSnapshot {
  const s = new PresenceSnapshot();
  s.applyDirectory(Array.from({ length: n }, (_, i) => user(i)));
  s.applyStatuses(new Map(Array.from({ length: n }, (_, i) => [id(i), "online"])), true);
  return s;
}

test("exportState → replaceState rebuilds the same snapshot, silently the first time", () => {
  const leader = leaderWith(5);
  const follower = new PresenceSnapshot();
  const got: Change[][] = [];
  follower.onChanges((c) => got.push([...c]));
  follower.replaceState(leader.exportState());
  assert.equal(follower.ready, true);
  assert.deepEqual(view(follower), view(leader));
  assert.equal(follower.lastSeq, leader.lastSeq);
  assert.deepEqual(got, [], "a first load is not a change");
});

test("applyReplicated replays the leader's batches with the leader's sequence numbers", () => {
  const leader = leaderWith(5);
  const follower = new PresenceSnapshot();
  follower.replaceState(leader.exportState());
  const batches: Change[][] = [];
  leader.onChanges((c) => batches.push([...c]));
  const seen: Change[] = [];
  follower.onChanges((c) => seen.push(...c));
  leader.applyStatuses(
    new Map([
      [id(1), "dnd"],
      [id(3), "away"],
    ]),
    true,
  );
  leader.applyStatuses(new Map([[id(1), "offline"]]), true);
  for (const b of batches) assert.equal(follower.applyReplicated(b), true);
  assert.deepEqual(view(follower), view(leader));
  assert.deepEqual(seen, batches.flat());
});

test("applyReplicated refuses a batch after a gap, so the caller reloads", () => {
  const leader = leaderWith(3);
  const follower = new PresenceSnapshot();
  follower.replaceState(leader.exportState());
  const batches: Change[][] = [];
  leader.onChanges((c) => batches.push([...c]));
  leader.applyStatuses(new Map([[id(0), "dnd"]]), true);
  leader.applyStatuses(new Map([[id(1), "dnd"]]), true);
  assert.equal(follower.applyReplicated(batches[1]!), false);
  assert.deepEqual(view(follower), view(leaderWith(3)), "nothing applied");
});

test("replaceState after a gap emits the difference in a fork of its own, then adopts the leader's position", () => {
  const leader = leaderWith(4);
  const follower = new PresenceSnapshot();
  follower.replaceState(leader.exportState());
  const seen: { changes: Change[]; meta: ChangeMeta; epoch: string }[] = [];
  follower.onChanges((changes, meta) => seen.push({ changes: [...changes], meta, epoch: follower.epoch }));
  leader.applyStatuses(new Map([[id(0), "dnd"]]), true);
  leader.applyStatuses(new Map([[id(0), "away"]]), true);
  leader.applyDirectory([user(0), user(1), user(2)]); // user 3 leaves
  follower.replaceState(leader.exportState());
  assert.deepEqual(view(follower), view(leader));
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.meta.resync, true);
  assert.deepEqual(
    seen[0]!.changes.map((c) => `${c.email}=${c.status}`),
    ["user0@example.com=away", "user3@example.com=offline"],
  );
  // The leader gave its own changes the numbers up to its seq in its epoch: the difference must
  // not reuse any of them, so it is numbered 1..n in an epoch no other replica has.
  assert.notEqual(seen[0]!.epoch, leader.epoch);
  assert.deepEqual(
    seen[0]!.changes.map((c) => c.seq),
    [1, 2],
  );
  assert.equal(follower.lastSeq, leader.lastSeq);
  assert.equal(follower.epoch, leader.epoch, "then the leader's position, which names the same state");
});

test("property: a follower that replays batches, reloading on directory changes and gaps, ends equal to the leader", () => {
  const statusArb = fc.constantFrom("online", "away", "dnd", "offline");
  const step = fc.oneof(
    fc.record({
      kind: fc.constant("dir" as const),
      members: fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { minLength: 1 }),
    }),
    fc.record({
      kind: fc.constant("st" as const),
      st: fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), statusArb)),
    }),
    fc.record({ kind: fc.constant("drop" as const) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
      const leader = leaderWith(8);
      const follower = new PresenceSnapshot();
      follower.replaceState(leader.exportState());
      const provider = new Map(follower.visible().map((u) => [u.email, u.status as string]));
      follower.onChanges((cs) => cs.forEach((c) => provider.set(c.email, c.status)));
      let pending: { changes: Change[]; meta: ChangeMeta }[] = [];
      leader.onChanges((changes, meta) => pending.push({ changes: [...changes], meta }));
      let drop = false;
      for (const s of steps) {
        if (s.kind === "drop") drop = true;
        else if (s.kind === "dir") leader.applyDirectory(s.members.sort((a, b) => a - b).map((n) => user(n)));
        else leader.applyStatuses(new Map(s.st.map(([n, v]) => [id(n), v])), true);
        for (const b of pending) {
          if (drop) continue; // lost in transit
          if (b.meta.directoryChanged || !follower.applyReplicated(b.changes))
            follower.replaceState(leader.exportState());
        }
        pending = [];
      }
      follower.replaceState(leader.exportState()); // what a follower does when it notices the gap
      assert.deepEqual(view(follower), view(leader));
      const expected = new Map(leader.visible().map((u) => [u.email, u.status as string]));
      for (const [email, status] of provider) assert.equal(status, expected.get(email) ?? "offline", email);
    }),
  );
});

test("a deposed leader that numbered changes it never published adopts the new leader's numbering", () => {
  const shared = leaderWith(3);
  const deposed = new PresenceSnapshot();
  deposed.replaceState(shared.exportState());
  // It polled once more after losing Redis: seq moved on locally.
  deposed.applyStatuses(new Map([[id(0), "dnd"]]), true);
  assert.equal(deposed.lastSeq, shared.lastSeq + 1);
  const reverted = deposed.replaceState(shared.exportState());
  assert.equal(deposed.lastSeq, shared.lastSeq);
  assert.deepEqual(
    reverted.map((c) => `${c.email}=${c.status}`),
    ["user0@example.com=online"],
  );
  // The new leader's next batch applies on top.
  const batches: Change[][] = [];
  shared.onChanges((c) => batches.push([...c]));
  shared.applyStatuses(new Map([[id(0), "dnd"]]), true);
  assert.equal(deposed.applyReplicated(batches[0]!), true);
  assert.deepEqual(view(deposed), view(shared));
});

test("a deposed leader that was numbered ahead adopts the new leader's lower seq, and its version still grows", () => {
  const newLeader = leaderWith(3);
  const deposed = leaderWith(3);
  // The deposed leader numbered changes it never got to publish: its seq is ahead.
  deposed.applyStatuses(new Map([[id(0), "dnd"]]), true);
  deposed.applyStatuses(new Map([[id(1), "dnd"]]), true);
  deposed.applyStatuses(new Map([[id(2), "dnd"]]), true);
  newLeader.applyStatuses(new Map([[id(0), "away"]]), true);
  assert.ok(deposed.lastSeq > newLeader.lastSeq);
  const versions = [deposed.version];
  deposed.replaceState(newLeader.exportState());
  versions.push(deposed.version);
  assert.equal(deposed.lastSeq, newLeader.lastSeq);
  assert.deepEqual(view(deposed), view(newLeader));
  // Readers (the v2 view and its ETag) cache under the version: it must never come back.
  deposed.replaceState(newLeader.exportState());
  versions.push(deposed.version);
  assert.ok(versions[1]! > versions[0]! && versions[2]! > versions[1]!, `versions ${versions.join(", ")}`);
});
