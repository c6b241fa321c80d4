import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { Writable } from "node:stream";
import { test } from "node:test";
import { AuthFailureLimiter, AuthFailures } from "../../src/http/auth-limit.js";
import {
  RATE_LIMITED,
  checkAuth,
  compatSecret,
  metricsToken,
  presenceBearer,
  presenceBearerOrMessage,
  type Credential,
  type RouteAuth,
} from "../../src/http/route-auth.js";
import { SecretScrubber, createLogger } from "../../src/log.js";

const SECRET = "route-auth-secret-0123456789";
const BURST = 2;

/** A shared limiter on a frozen clock, and the log lines it writes. */
function limiter() {
  const lines: { event?: string }[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as { event?: string });
      cb();
    },
  });
  const inner = new AuthFailureLimiter(BURST, 60_000, 100, () => 1_000_000);
  const failures = new AuthFailures(inner, createLogger("info", new SecretScrubber(), stream), (req) => {
    return req.socket.remoteAddress ?? "";
  });
  return { failures, inner, lines };
}

let nextAddress = 1;
function request(
  headers: Record<string, string> = {},
  query = "",
  from = `10.9.0.${nextAddress++}`,
): [IncomingMessage, { searchParams: URLSearchParams }] {
  const req = { headers, socket: { remoteAddress: from } } as unknown as IncomingMessage;
  return [req, { searchParams: new URLSearchParams(query) }];
}

function check(
  auth: RouteAuth,
  l: ReturnType<typeof limiter>,
  headers?: Record<string, string>,
  query?: string,
) {
  const [req, url] = request(headers, query);
  return checkAuth(auth, req, url, l.failures);
}

test('"none" lets everything through and counts nothing', () => {
  const l = limiter();
  assert.deepEqual(check("none", l, { Authorization: "Bearer wrong" }), { pass: true, presented: "ok" });
  assert.equal(l.inner.size, 0);
});

test("compat secret: query or Bearer, URL-decoded again; wrong or missing are refused and counted", () => {
  const l = limiter();
  const auth = compatSecret(() => [SECRET]);
  assert.equal(check(auth, l, {}, `secret=${SECRET}`).pass, true);
  assert.equal(check(auth, l, {}, `secret=${encodeURIComponent(encodeURIComponent(SECRET))}`).pass, true);
  assert.equal(check(auth, l, { authorization: `Bearer ${SECRET}` }).pass, true);
  assert.equal(check(auth, l, { authorization: "Basic abc" }, `secret=${SECRET}`).pass, true);
  assert.equal(l.inner.size, 0, "nothing counted for right secrets");

  const wrong = check(auth, l, {}, "secret=wrong-guess-0123456789");
  assert.deepEqual(wrong, {
    pass: false,
    refusal: { code: "invalid_secret", message: "missing or wrong secret" },
  });
  const missing = check(auth, l, {}, "page=1");
  assert.equal(missing.pass, false);
  assert.equal(l.inner.size, 2, "a missing compat secret is counted too");
});

test("past the burst: 429 with Retry-After, one log line per address and window, then the right secret still passes", () => {
  const l = limiter();
  const auth = compatSecret(() => [SECRET]);
  const [req, url] = request({}, "secret=guess");
  for (let i = 0; i < BURST; i++) {
    const v = checkAuth(auth, req, url, l.failures);
    assert.ok(!v.pass && v.refusal.code === "invalid_secret" && v.retryAfter === undefined);
  }
  for (let i = 0; i < 3; i++) {
    const v = checkAuth(auth, req, url, l.failures);
    assert.deepEqual(v, { pass: false, refusal: RATE_LIMITED, retryAfter: 60 });
  }
  assert.equal(l.lines.filter((x) => x.event === "auth_rate_limited").length, 1);
  assert.equal(
    checkAuth(auth, req, { searchParams: new URLSearchParams(`secret=${SECRET}`) }, l.failures).pass,
    true,
  );
});

test("API v2 Bearer: no header is refused but not counted; any other header is a guess", () => {
  const l = limiter();
  const auth = presenceBearer(() => [SECRET]);
  assert.equal(check(auth, l, { authorization: `Bearer ${SECRET}` }).pass, true);
  assert.equal(check(auth, l, {}, `secret=${SECRET}`).pass, false, "never from the query");
  const [req, url] = request();
  for (let i = 0; i < BURST * 3; i++) {
    const v = checkAuth(auth, req, url, l.failures);
    assert.ok(!v.pass && v.refusal.code === "unauthorized" && v.retryAfter === undefined, "never 429");
    assert.equal(v.refusal.challenge, 'Bearer realm="presence"');
  }
  assert.equal(l.inner.size, 0, "requests without a header are not counted");
  const [bad, badUrl] = request({ authorization: "Basic Zm9vOmJhcg==" });
  for (let i = 0; i < BURST; i++) assert.equal(checkAuth(auth, bad, badUrl, l.failures).pass, false);
  const limited = checkAuth(auth, bad, badUrl, l.failures);
  assert.ok(!limited.pass && limited.retryAfter === 60 && limited.refusal.challenge === undefined);
});

test("API v2 stream upgrade: no header reaches the handler as 'none'; a wrong one is refused", () => {
  const l = limiter();
  const auth = presenceBearerOrMessage(() => [SECRET]);
  assert.deepEqual(check(auth, l), { pass: true, presented: "none" });
  assert.deepEqual(check(auth, l, { authorization: `Bearer ${SECRET}` }), { pass: true, presented: "ok" });
  const wrong = check(auth, l, { authorization: "Bearer wrong-guess" });
  assert.ok(!wrong.pass && wrong.refusal.code === "unauthorized");
  assert.equal(l.inner.size, 1);
});

test("metrics token: open while unset; missing or not Bearer is not counted; a wrong Bearer is", () => {
  const l = limiter();
  const config: { token?: string } = {};
  const auth = metricsToken(() => config.token);
  assert.equal(check(auth, l).pass, true, "unset: open");
  const token = "metrics-token-0123456789";
  config.token = token;
  assert.equal(check(auth, l, { authorization: `Bearer ${token}` }).pass, true);
  const missing = check(auth, l);
  assert.ok(!missing.pass && missing.refusal.code === "invalid_secret");
  assert.equal(missing.refusal.challenge, 'Bearer realm="metrics"');
  assert.equal(check(auth, l, { authorization: "Basic abc" }).pass, false);
  assert.equal(l.inner.size, 0);
  assert.equal(check(auth, l, { authorization: "Bearer wrong-token" }).pass, false);
  assert.equal(l.inner.size, 1);
});

test("onRefused runs for a wrong credential under the burst only: not for none, not for a 429", () => {
  const l = limiter();
  const refused: string[] = [];
  const auth: Credential = {
    check: (req) => (req.headers.authorization === undefined ? "none" : "wrong"),
    refusal: { code: "invalid_secret", message: "admin token required" },
    onRefused: (req) => refused.push(req.socket.remoteAddress ?? ""),
  };
  const [none, noneUrl] = request({}, "", "10.9.9.1");
  for (let i = 0; i < BURST * 3; i++) assert.equal(checkAuth(auth, none, noneUrl, l.failures).pass, false);
  const [wrong, wrongUrl] = request({ authorization: "Bearer x" }, "", "10.9.9.2");
  for (let i = 0; i < BURST + 2; i++) checkAuth(auth, wrong, wrongUrl, l.failures);
  assert.deepEqual(refused, ["10.9.9.2", "10.9.9.2"]);
});

test("without a limiter (tests, tools) a wrong credential is refused, never 429", () => {
  const auth = compatSecret(() => [SECRET]);
  const [req, url] = request({}, "secret=guess");
  for (let i = 0; i < 10; i++) {
    const v = checkAuth(auth, req, url, undefined);
    assert.ok(!v.pass && v.retryAfter === undefined);
  }
});
