import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { constantTimeEquals, goQueryUnescape, presentedSecret, secretMatches } from "../../src/http/auth.js";

const S = "a+b/c=d%e&f g";

test("goQueryUnescape decodes like Go's url.QueryUnescape", () => {
  assert.equal(goQueryUnescape("a%2Bb+c"), "a+b c");
  assert.equal(goQueryUnescape("%E2%82%AC"), "€");
  assert.equal(goQueryUnescape("plain"), "plain");
  assert.equal(goQueryUnescape("bad%zz"), null);
  assert.equal(goQueryUnescape("trailing%2"), null);
});

test("the exact secret matches; others do not", () => {
  assert.ok(secretMatches([S], S));
  assert.ok(!secretMatches([S], S + "x"));
  assert.ok(!secretMatches([S], ""));
  assert.ok(!secretMatches([S], null));
});

test("a secret URL-encoded once or twice more still matches, as the old plugin allowed", () => {
  const once = encodeURIComponent(S);
  const twice = encodeURIComponent(once);
  assert.ok(secretMatches([S], once));
  assert.ok(secretMatches([S], twice));
  // .NET's HttpUtility encodes a space as '+', which Go's decoder reads back as a space.
  assert.ok(secretMatches(["x y"], "x+y"));
});

test("decoding stops when the value stops changing or is not valid", () => {
  assert.ok(!secretMatches(["secret"], "%zz"));
  assert.ok(!secretMatches(["secret"], "sec%72et%")); // invalid escape after a valid one
});

test("previous secret accepted during rotation", () => {
  assert.ok(secretMatches(["new-one", "old-one"], "old-one"));
  assert.ok(!secretMatches(["new-one"], "old-one"));
});

test("Bearer header wins over the query string", () => {
  const q = new URLSearchParams("secret=fromquery");
  assert.equal(presentedSecret("Bearer fromheader", q), "fromheader");
  assert.equal(presentedSecret(undefined, q), "fromquery");
  assert.equal(presentedSecret("Basic xyz", q), "fromquery");
  assert.equal(presentedSecret(undefined, new URLSearchParams("page=1")), null);
});

test("property: any secret survives up to 3 rounds of URL-encoding; nothing else matches", () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.integer({ min: 0, max: 3 }),
      fc.string(),
      (secret, rounds, other) => {
        let v = secret;
        for (let i = 0; i < rounds; i++) v = encodeURIComponent(v);
        assert.ok(secretMatches([secret], v));
        fc.pre(other !== secret && goQueryUnescape(other) !== secret);
        let o: string | null = other;
        let matchesByDecoding = false;
        for (let i = 0; i < 9 && o !== null; i++) {
          if (o === secret) matchesByDecoding = true;
          o = goQueryUnescape(o);
        }
        assert.equal(secretMatches([secret], other), matchesByDecoding);
      },
    ),
  );
});

test("constantTimeEquals compares content, whatever the lengths", () => {
  assert.ok(constantTimeEquals("abc", "abc"));
  assert.ok(!constantTimeEquals("abc", "abcd"));
  assert.ok(!constantTimeEquals("", "a"));
  assert.ok(!constantTimeEquals("a", ""));
  assert.ok(constantTimeEquals("", ""));
  // `wanted` is cycled under a longer `got`: a repetition of it must still differ.
  assert.ok(!constantTimeEquals("abcabc", "abc"));
  assert.ok(!constantTimeEquals("abc", "abcabc"));
  assert.ok(!constantTimeEquals("abd", "abc"));
  assert.ok(!constantTimeEquals("bbc", "abc"));
  // Lengths whose XOR is 0 only when equal; code units beyond Latin-1 compare too.
  assert.ok(!constantTimeEquals("\u0161ecret", "secret"));
  assert.ok(constantTimeEquals("\u0161ecret", "\u0161ecret"));
  for (let i = 0; i < 200; i++) {
    const a = Math.random()
      .toString(36)
      .slice(2, 2 + (i % 12));
    const b = Math.random()
      .toString(36)
      .slice(2, 2 + ((i * 7) % 12));
    assert.equal(constantTimeEquals(a, b), a === b, `${a} vs ${b}`);
    assert.ok(constantTimeEquals(a, a));
  }
});
