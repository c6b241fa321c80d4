import assert from "node:assert/strict";
import { test } from "node:test";
import { HISTORY_BUCKETS, HISTORY_BUCKET_MS, MinuteHistory } from "../../src/http/admin-history.js";

const MIN = HISTORY_BUCKET_MS;
/** A whole minute well after the epoch, so "an hour ago" is still a positive time. */
const T0 = 1_000_000 * MIN;

test("changes add up per minute and the last provider sample of a minute wins", () => {
  let now = T0 + 5_000;
  const h = new MinuteHistory(() => now);
  h.addChanges(3);
  h.sampleProviders(10);
  now = T0 + 59_999;
  h.addChanges(2);
  h.sampleProviders(12);
  now = T0 + MIN; // the next minute
  h.addChanges(1);
  const s = h.series();
  assert.equal(s.bucketMs, MIN);
  assert.equal(s.changes.length, HISTORY_BUCKETS);
  assert.equal(s.providers.length, HISTORY_BUCKETS);
  assert.equal(s.start, T0 + MIN - (HISTORY_BUCKETS - 1) * MIN, "oldest first, ending at the current minute");
  assert.deepEqual(s.changes.slice(-2), [5, 1]);
  assert.deepEqual(s.providers.slice(-2), [12, null], "nothing sampled yet this minute");
  assert.deepEqual(s.changes.slice(0, -2), new Array<number>(HISTORY_BUCKETS - 2).fill(0));
  assert.ok(
    s.providers.slice(0, -2).every((p) => p === null),
    "before the process ran: unknown",
  );
});

test("a minute an hour old leaves the window and its slot starts from zero when reused", () => {
  let now = T0;
  const h = new MinuteHistory(() => now);
  h.addChanges(7);
  h.sampleProviders(4);
  now = T0 + (HISTORY_BUCKETS - 1) * MIN; // T0's minute is now the oldest shown
  assert.equal(h.series().changes[0], 7);
  assert.equal(h.series().providers[0], 4);
  now = T0 + HISTORY_BUCKETS * MIN; // same slot as T0, an hour later
  assert.deepEqual(h.series().changes, new Array<number>(HISTORY_BUCKETS).fill(0), "T0 has left");
  assert.ok(h.series().providers.every((p) => p === null));
  h.addChanges(1);
  const s = h.series();
  assert.equal(s.changes[HISTORY_BUCKETS - 1], 1, "not 8: the slot was cleared before reuse");
  assert.equal(s.providers[HISTORY_BUCKETS - 1], null, "T0's provider sample did not carry over");
});

test("minutes skipped while idle read as empty, not as the slot's older contents", () => {
  let now = T0;
  const h = new MinuteHistory(() => now);
  for (let m = 0; m < HISTORY_BUCKETS; m++) {
    now = T0 + m * MIN;
    h.addChanges(m + 1);
    h.sampleProviders(100 + m);
  }
  now = T0 + (HISTORY_BUCKETS + 9) * MIN; // ten minutes later, nothing recorded meanwhile
  const s = h.series();
  // The window now covers minutes 10..69: 10..59 were recorded, 60..69 were not.
  assert.deepEqual(
    s.changes,
    Array.from({ length: HISTORY_BUCKETS }, (_, i) => (i < 50 ? i + 11 : 0)),
  );
  assert.deepEqual(
    s.providers,
    Array.from({ length: HISTORY_BUCKETS }, (_, i) => (i < 50 ? 110 + i : null)),
  );
});
