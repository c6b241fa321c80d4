import assert from "node:assert/strict";
import { test } from "node:test";
import { chunk, mapLimit } from "../../src/util/batches.js";

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
    // Items finish out of order: `n` turns of the microtask queue, no timer.
    for (let i = 0; i < n; i++) await Promise.resolve();
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

test("mapLimit starts nothing more after a failure", async () => {
  const started: number[] = [];
  await assert.rejects(
    mapLimit([1, 2, 3, 4, 5], 1, async (n) => {
      started.push(n);
      if (n === 2) throw new Error("boom");
      return n;
    }),
    /boom/,
  );
  assert.deepEqual(started, [1, 2]);
});
