import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay } from "../../src/mattermost/backoff.js";
import { parseRetryAfter } from "../../src/mattermost/errors.js";

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
