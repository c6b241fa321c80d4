import assert from "node:assert/strict";
import { test } from "node:test";
import { boundBy, fmtRatio, percentile, ratio, split, summarize } from "../../bench/lib/stats.js";

test("percentile is nearest-rank over unsorted values", () => {
  const v = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(percentile(v, 50), 5);
  assert.equal(percentile(v, 90), 9);
  assert.equal(percentile(v, 99), 10);
  assert.equal(percentile(v, 0), 1);
  assert.equal(percentile(v, 100), 10);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("summarize gives n, min, p50, p99, max and mean", () => {
  const s = summarize(Array.from({ length: 100 }, (_, i) => i + 1));
  assert.deepEqual(s, { n: 100, min: 1, p50: 50, p99: 99, max: 100, mean: 50.5 });
});

test("ratio and its format refuse a zero or non-finite baseline", () => {
  assert.equal(ratio(3, 4), 0.75);
  assert.ok(Number.isNaN(ratio(1, 0)));
  assert.equal(fmtRatio(0.754), "0.75×");
  assert.equal(fmtRatio(NaN), "n/a");
});

test("boundBy names the side that saturated a core", () => {
  assert.equal(boundBy(0.97, 0.5), "server CPU");
  assert.equal(boundBy(0.5, 0.95), "load generator CPU");
  assert.equal(boundBy(0.5, 0.5), "neither CPU (latency / kernel)");
});

test("split spreads a total over parts, larger first, never empty parts", () => {
  assert.deepEqual(split(10, 3), [4, 3, 3]);
  assert.deepEqual(split(2, 4), [1, 1]);
  assert.equal(
    split(50_000, 3).reduce((a, b) => a + b, 0),
    50_000,
  );
});
