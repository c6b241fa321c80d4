/**
 * The Redis test helpers against a port where nothing listens: they report "no Redis" quietly.
 * ioredis prints "[ioredis] Unhandled error event" for a client without an error listener, which
 * is what `npm test` printed on a machine without Redis; a child process shows what is printed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { freePort } from "../helpers/net.js";

const HELPER = new URL("../helpers/redis.js", import.meta.url).href;

test("without a Redis, the helpers say so and print nothing; outside CI the suites' skip names the URL", async () => {
  const url = `redis://127.0.0.1:${await freePort()}`;
  const script = `
    const m = await import(${JSON.stringify(HELPER)});
    await m.dropPrefix(${JSON.stringify(url)}, "op-test:none");
    const answers = await m.redisAnswers(${JSON.stringify(url)});
    const skip = await m.skipWithoutRedis();
    process.stdout.write(JSON.stringify({ answers, skip }));
  `;
  const env: NodeJS.ProcessEnv = { ...process.env, TEST_REDIS_URL: url };
  delete env.CI;
  const r = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { env });
  assert.equal(r.stderr, "");
  assert.deepEqual(JSON.parse(r.stdout), {
    answers: false,
    skip: `no Redis answers at ${url} (start one, or set TEST_REDIS_URL)`,
  });
});

test("in CI a missing Redis is not a reason to skip: the suites run and fail", async () => {
  const url = `redis://127.0.0.1:${await freePort()}`;
  const script = `
    const m = await import(${JSON.stringify(HELPER)});
    process.stdout.write(JSON.stringify({ skip: await m.skipWithoutRedis() }));
  `;
  const env = { ...process.env, TEST_REDIS_URL: url, CI: "1" };
  const r = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { env });
  assert.deepEqual(JSON.parse(r.stdout), { skip: false });
});
