import assert from "node:assert/strict";
import { test } from "node:test";
import { KeyedRateLimiter } from "../../src/http/rate-limit.js";

test("a burst is allowed, then the rate, per key", () => {
  let now = 0;
  const rl = new KeyedRateLimiter(2, 4, 100, () => now);
  const burst = Array.from({ length: 6 }, () => rl.take("a"));
  assert.deepEqual(burst, [true, true, true, true, false, false]);
  assert.equal(rl.take("b"), true, "other keys have their own bucket");
  now += 500; // half a second at 2/s: one token
  assert.equal(rl.take("a"), true);
  assert.equal(rl.take("a"), false);
});

test("memory stays bounded whatever the number of keys", () => {
  const rl = new KeyedRateLimiter(1, 1, 1000);
  for (let i = 0; i < 50_000; i++) rl.take(`10.0.${i >> 8}.${i & 255}`);
  assert.ok(rl.size <= 1000);
});
