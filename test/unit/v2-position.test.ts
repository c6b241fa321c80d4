import assert from "node:assert/strict";
import { test } from "node:test";
import { ChangeLog } from "../../src/presence/change-log.js";
import { decideResume, formatPosition, newEpoch, parsePosition } from "../../src/presence/position.js";
import { PresenceSnapshot, type Change } from "../../src/presence/snapshot.js";

const change = (seq: number): Change => ({
  seq,
  userId: `u${seq}`,
  email: `u${seq}@example.com`,
  status: "online",
  at: seq,
});
const seqs = (cs: readonly Change[] | undefined) => cs?.map((c) => c.seq);

/** A log holding changes 1..10 of epoch "e1". */
function logOf(epoch: string) {
  const changes = new ChangeLog(100);
  changes.append(Array.from({ length: 10 }, (_, i) => change(i + 1)));
  return { epoch, changes };
}

test("since parses as <epoch>:<seq> or a bare seq; anything else is refused", () => {
  assert.deepEqual(parsePosition("AbC_-9:42"), { epoch: "AbC_-9", seq: 42 });
  assert.deepEqual(parsePosition("42"), { epoch: undefined, seq: 42 });
  assert.deepEqual(parsePosition("007"), { epoch: undefined, seq: 7 }, "old clients' form still parses");
  for (const bad of ["", "abc", "e:", ":5", "a:b:5", "e:-1", "e:1.5", "e:1234567890123456", "é:1"]) {
    assert.equal(parsePosition(bad), undefined, bad);
  }
  const epoch = newEpoch();
  assert.match(epoch, /^[A-Za-z0-9_-]+$/);
  assert.notEqual(epoch, newEpoch());
  assert.deepEqual(parsePosition(formatPosition({ epoch, seq: 9 })), { epoch, seq: 9 });
});

test("a position of the current epoch resumes exactly from the log", () => {
  const current = { epoch: "e1", seq: 10 };
  assert.deepEqual(seqs(decideResume({ epoch: "e1", seq: 7 }, current, logOf("e1"))), [8, 9, 10]);
  assert.deepEqual(decideResume({ epoch: "e1", seq: 10 }, current, logOf("e1")), []);
  assert.equal(decideResume({ epoch: "e1", seq: 11 }, current, logOf("e1")), undefined, "the future");
});

test("another epoch, a bare seq, or a log of another epoch: a snapshot", () => {
  const current = { epoch: "e2", seq: 10 };
  // A restarted process numbers 1..10 again: the old process's 7 is not the new one's 7.
  assert.equal(decideResume({ epoch: "e1", seq: 7 }, current, logOf("e2")), undefined);
  assert.equal(decideResume({ epoch: "e1", seq: 10 }, current, logOf("e2")), undefined);
  assert.equal(decideResume({ epoch: undefined, seq: 7 }, current, logOf("e2")), undefined);
  assert.equal(decideResume({ epoch: undefined, seq: 10 }, current, logOf("e2")), undefined);
  assert.equal(decideResume(undefined, current, logOf("e2")), undefined);
  // The log still holds the previous epoch's numbers (no batch since the epoch changed).
  assert.equal(decideResume({ epoch: "e2", seq: 7 }, current, logOf("e1")), undefined);
  assert.deepEqual(decideResume({ epoch: "e2", seq: 10 }, current, logOf("e1")), [], "exactly current");
});

test("a snapshot's epoch: new per process, adopted from a replicated state, new on startEpoch", () => {
  const a = new PresenceSnapshot();
  const b = new PresenceSnapshot();
  assert.notEqual(a.epoch, b.epoch, "two processes, two histories");
  const state = { ...a.exportState(), users: [] };
  assert.equal(state.epoch, a.epoch);
  b.replaceState(state);
  assert.equal(b.epoch, a.epoch, "a replica numbers in its leader's history");
  const versionBefore = b.version;
  b.startEpoch();
  assert.notEqual(b.epoch, a.epoch);
  assert.ok(b.version > versionBefore, "cached bodies carry the epoch: the version moves");
  const { epoch: _dropped, ...old } = state;
  b.replaceState(old);
  assert.notEqual(b.epoch, a.epoch, "a state from before epochs proves no continuity");
});
