import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ChangeLog } from "../../src/presence/change-log.js";
import type { Change } from "../../src/presence/snapshot.js";

const change = (seq: number): Change => ({
  seq,
  userId: `u${String(seq % 7).padStart(25, "0")}`,
  email: `user${seq % 7}@example.com`,
  status: "online",
  at: 1000 + seq,
});
const range = (from: number, to: number): Change[] =>
  Array.from({ length: to - from + 1 }, (_, i) => change(from + i));
const seqs = (cs: readonly Change[] | undefined) => cs?.map((c) => c.seq);

test("an empty log knows nothing; after a batch it answers exactly what follows since", () => {
  const log = new ChangeLog(10);
  assert.equal(log.since(0), undefined);
  log.append(range(5, 8));
  assert.deepEqual(seqs(log.since(4)), [5, 6, 7, 8]);
  assert.deepEqual(seqs(log.since(6)), [7, 8]);
  assert.deepEqual(log.since(8), []);
  assert.equal(log.since(3), undefined, "before the log started");
  assert.equal(log.since(9), undefined, "from the future (another instance, a restart)");
});

test("the ring keeps only the newest `capacity` changes", () => {
  const log = new ChangeLog(5);
  log.append(range(1, 3));
  log.append(range(4, 12));
  assert.equal(log.size, 5);
  assert.deepEqual(seqs(log.since(7)), [8, 9, 10, 11, 12]);
  assert.equal(log.since(6), undefined, "seq 7 was evicted");
  assert.deepEqual(seqs(log.since(10)), [11, 12]);
});

test("a gap in the numbering restarts the log; reset makes it complete from a seq", () => {
  const log = new ChangeLog(10);
  log.append(range(1, 4));
  log.append(range(9, 10));
  assert.equal(log.since(3), undefined, "5..8 were never seen");
  assert.deepEqual(seqs(log.since(8)), [9, 10]);
  log.reset(20);
  assert.deepEqual(log.since(20), []);
  assert.equal(log.since(10), undefined);
  log.append(range(21, 22));
  assert.deepEqual(seqs(log.since(20)), [21, 22]);
});

test("property: since(s) is the suffix after s when retained, undefined otherwise", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 20 }),
      fc.integer({ min: 0, max: 200 }),
      (capacity, batches, since) => {
        const log = new ChangeLog(capacity);
        let next = 1;
        const all: Change[] = [];
        for (const n of batches) {
          const b = range(next, next + n - 1);
          next += n;
          all.push(...b);
          log.append(b);
        }
        const got = log.since(since);
        const last = next - 1;
        const oldest = Math.max(1, last - capacity + 1);
        if (all.length > 0 && since >= oldest - 1 && since <= last) {
          assert.deepEqual(seqs(got), seqs(all.filter((c) => c.seq > since)));
        } else {
          assert.equal(got, undefined);
        }
      },
    ),
  );
});
