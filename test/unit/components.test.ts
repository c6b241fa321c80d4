import assert from "node:assert/strict";
import { test } from "node:test";
import { Components, type Component } from "../../src/gateway/components.js";

/** A component that records what happens to it in `log`. */
function part(name: string, log: string[], opts: { failStart?: boolean; stopMs?: number } = {}): Component {
  return {
    name,
    start: () => {
      if (opts.failStart) throw new Error(`${name} cannot start`);
      log.push(`start ${name}`);
    },
    stop: () => {
      log.push(`stop ${name}`);
      if (opts.stopMs === undefined) return undefined;
      // Not unref'd: it keeps this test's process alive until the grace has been waited out.
      return new Promise<void>((resolve) => setTimeout(resolve, opts.stopMs));
    },
    terminate: () => log.push(`terminate ${name}`),
  };
}

test("components start in order and stop newest first, then whatever is left is terminated", async () => {
  const log: string[] = [];
  const c = new Components([part("a", log), part("b", log), part("c", log)]);
  await c.start();
  await c.stop(1000);
  assert.deepEqual(log, [
    "start a",
    "start b",
    "start c",
    "stop c",
    "stop b",
    "stop a",
    "terminate c",
    "terminate b",
    "terminate a",
  ]);
});

test("a failed start stops only what had started, newest first, and rethrows", async () => {
  const log: string[] = [];
  const c = new Components([
    part("a", log),
    part("b", log),
    part("c", log, { failStart: true }),
    part("d", log),
  ]);
  await assert.rejects(c.start(), /c cannot start/);
  assert.deepEqual(log, ["start a", "start b", "stop b", "stop a", "terminate b", "terminate a"]);
  log.length = 0;
  await c.stop(10);
  assert.deepEqual(log, [], "nothing left to stop");
});

test("stop waits for slow components at most the grace, then terminates", async () => {
  const log: string[] = [];
  const c = new Components([part("fast", log), part("slow", log, { stopMs: 6000 })]);
  await c.start();
  const t0 = Date.now();
  await c.stop(50);
  assert.ok(Date.now() - t0 < 4500, "bounded by the grace, not by the slow stop");
  assert.deepEqual(log.slice(2), ["stop slow", "stop fast", "terminate slow", "terminate fast"]);
});
