/**
 * Conformance: Mattermost's 429 (RateLimitSettings). Mattermost reads those settings only when it
 * starts, so a suite cannot turn the limiter on: against a real server this needs one started with
 * it on and `VaryByHeader` set (CONFORMANCE_RATE_LIMIT_HEADER), so that the suite exhausts a bucket
 * of its own and nobody else's. The simulator produces it on demand (its rate-limit fault).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { useTarget } from "./suite.js";
import { tag, type Target } from "./target.js";

useTarget(async (t) => {
  if (!t.sim && !t.rateLimitHeader) {
    skip =
      "CONFORMANCE_RATE_LIMIT_HEADER is not set: start Mattermost with RateLimitSettings.Enable and VaryByHeader (read at startup only)";
    return;
  }
  limited = await provoke(t);
  if (limited) body = await limited.text();
});

/** Bounded: at most this many requests to find the bucket's end. */
const MAX_REQUESTS = 5000;
let limited: Response | undefined;
let body = "";
let skip: string | undefined;

async function provoke(t: Target): Promise<Response | undefined> {
  if (t.sim) {
    t.sim.setFault({ kind: "rate-limit", retryAfterSeconds: 1, paths: ["ping"] });
    try {
      return await t.api("system/ping", { token: null });
    } finally {
      t.sim.setFault(null);
    }
  }
  const header = t.rateLimitHeader;
  if (!header) return undefined;
  const bucket = `conformance-${tag()}`;
  let sent = 0;
  let hit: Response | undefined;
  // The cheapest request (ping, no session), 50 at a time: fast enough to outrun the refill
  // (PerSec) on a busy machine, few enough to stay polite.
  while (!hit && sent < MAX_REQUESTS) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, () => t.api("system/ping", { token: null, headers: { [header]: bucket } })),
    );
    sent += batch.length;
    for (const r of batch) {
      if (r.status === 429 && !hit) hit = r;
      else await r.arrayBuffer();
    }
  }
  return hit;
}

test("past its rate limit Mattermost answers 429", (c) => {
  if (skip) return c.skip(skip);
  assert.equal(limited?.status, 429, `no 429 within ${MAX_REQUESTS} requests`);
});

test("the 429 says when to retry: Retry-After in whole seconds", (c) => {
  if (skip) return c.skip(skip);
  assert.match(limited?.headers.get("retry-after") ?? "", /^\d+$/);
});

test("the 429 carries X-RateLimit-Limit, X-RateLimit-Remaining 0 and X-RateLimit-Reset", (c) => {
  if (skip) return c.skip(skip);
  assert.match(limited?.headers.get("x-ratelimit-limit") ?? "", /^\d+$/);
  assert.equal(limited?.headers.get("x-ratelimit-remaining"), "0");
  assert.match(limited?.headers.get("x-ratelimit-reset") ?? "", /^\d+$/);
});

test('the 429\'s body is text/plain "limit exceeded\\n", not a JSON AppError', (c) => {
  if (skip) return c.skip(skip);
  assert.equal(limited?.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(body, "limit exceeded\n");
});
