import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay } from "../../src/mattermost/backoff.js";
import { parseRetryAfter } from "../../src/mattermost/errors.js";
import { chunk, mapLimit } from "../../src/util/batches.js";

test("backoff doubles per failure between half and all of the ceiling, capped", () => {
  assert.equal(
    backoffDelay(1, 1000, 60000, () => 0),
    500,
  );
  assert.equal(
    backoffDelay(1, 1000, 60000, () => 1),
    1000,
  );
  assert.equal(
    backoffDelay(3, 1000, 60000, () => 1),
    4000,
  );
  assert.equal(
    backoffDelay(50, 1000, 60000, () => 1),
    60000,
  );
  assert.equal(
    backoffDelay(50, 1000, 60000, () => 0),
    30000,
  );
});

test("Retry-After in seconds or as a date", () => {
  assert.equal(parseRetryAfter("3", 1), 3000);
  assert.equal(parseRetryAfter(null, 1234), 1234);
  assert.equal(parseRetryAfter("garbage", 1234), 1234);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", 0, now), 5000);
});

test("chunk splits into requests of at most n ids", () => {
  assert.deepEqual(chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.equal(chunk(Array.from({ length: 50_000 }), 200).length, 250);
});

test("mapLimit never exceeds the limit and keeps result order", async () => {
  let inFlight = 0;
  let max = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (n) => {
    inFlight++;
    max = Math.max(max, inFlight);
    await new Promise((r) => setTimeout(r, n));
    inFlight--;
    return n * 10;
  });
  assert.equal(max, 2);
  assert.deepEqual(out, [50, 10, 40, 20, 30, 0]);
  await assert.rejects(
    mapLimit([1, 2], 2, async (n) => {
      if (n === 2) throw new Error("boom");
      return n;
    }),
    /boom/,
  );
});
