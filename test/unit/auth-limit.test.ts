import assert from "node:assert/strict";
import { test } from "node:test";
import { AuthFailureLimiter, addressKey } from "../../src/http/auth-limit.js";
import { redactUrl } from "../../src/log.js";

test("failures past the burst are limited until the window ends, then start over", () => {
  let now = 1_000_000;
  const l = new AuthFailureLimiter(3, 60_000, 100, () => now);
  for (let i = 0; i < 3; i++) assert.equal(l.fail("10.0.0.1"), undefined);
  assert.equal(l.fail("10.0.0.1"), 60_000);
  assert.equal(l.justLimited("10.0.0.1"), true);
  now += 10_000;
  assert.equal(l.fail("10.0.0.1"), 50_000);
  assert.equal(l.justLimited("10.0.0.1"), false, "one log line per address and window");
  assert.equal(l.fail("10.0.0.2"), undefined, "other addresses are not affected");
  now += 50_000;
  assert.equal(l.fail("10.0.0.1"), undefined, "a new window");
});

test("burst 0 turns the limiter off", () => {
  const l = new AuthFailureLimiter(0, 60_000);
  for (let i = 0; i < 100; i++) assert.equal(l.fail("10.0.0.1"), undefined);
  assert.equal(l.size, 0);
});

test("memory-bounded: never more than maxKeys addresses, however many fail", () => {
  let now = 0;
  const l = new AuthFailureLimiter(1, 60_000, 1000, () => now);
  for (let i = 0; i < 50_000; i++) {
    l.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.ok(l.size <= 1000);
    now += 1;
  }
  // The newest addresses are still tracked.
  l.fail("10.0.195.79");
  assert.notEqual(l.fail("10.0.195.79"), undefined);
});

test("IPv6 addresses are limited by /64, IPv4-mapped ones as IPv4", () => {
  assert.equal(addressKey("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(addressKey("10.1.2.3"), "10.1.2.3");
  assert.equal(addressKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressKey("::1"), "0:0:0:0::/64");
  assert.equal(addressKey(undefined), "");
  const l = new AuthFailureLimiter(1, 60_000);
  l.fail("2001:db8:1:2::1");
  assert.notEqual(l.fail("2001:db8:1:2::2"), undefined, "same /64, same limit");
});

test("redactUrl hides every spelling of the secret parameter the router would read", () => {
  const cases: [string, string][] = [
    ["/s?secret=abc", "/s?secret=[REDACTED]"],
    ["/s?page=1&SECRET=abc", "/s?page=1&SECRET=[REDACTED]"],
    ["/s?%73ecret=abc&page=2", "/s?%73ecret=[REDACTED]&page=2"],
    ["/s?secret=a&secret=b", "/s?secret=[REDACTED]&secret=[REDACTED]"],
    ["/s?secret", "/s?secret"],
    ["/s?secrets=abc", "/s?secrets=abc"],
    ["/s?%zz=1&secret=x", "/s?%zz=1&secret=[REDACTED]"],
    ["/s", "/s"],
  ];
  for (const [url, want] of cases) assert.equal(redactUrl(url), want, url);
  // Whatever URLSearchParams reads as `secret` is redacted.
  for (const url of ["/s?secret=abc", "/s?%73%65cret=abc", "/s?secre%74=abc"]) {
    assert.equal(new URL(url, "http://x").searchParams.get("secret"), "abc");
    assert.ok(!redactUrl(url).includes("abc"), url);
  }
});
