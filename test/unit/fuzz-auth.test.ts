/** Secret checks and URL redaction over arbitrary input (issue 5, points 4 and 5). */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { goQueryUnescape, presentedSecret, secretMatches } from "../../src/http/auth.js";
import { redactUrl } from "../../src/log.js";

const SECRET = "s3cr3t+/=value";
/** Query text: mostly the characters that matter to parsing, sometimes anything. */
const queryText = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."secrtSEC=&%+;#?73aA0F/ ".split("")), maxLength: 40 }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);

test("secret checks never throw and accept only the secret, URL-decoded up to a bound", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 80 }),
      fc.option(fc.string(), { nil: undefined }),
      (got, auth) => {
        const ok = secretMatches([SECRET], got);
        if (ok) {
          // Only a spelling that decodes to the secret is accepted.
          let s: string | null = got;
          let seen = false;
          for (let i = 0; i < 10 && s !== null; i++) {
            if (s === SECRET) seen = true;
            const next = goQueryUnescape(s);
            if (next === s) break;
            s = next;
          }
          assert.ok(seen, `accepted ${JSON.stringify(got)}`);
        }
        presentedSecret(auth, new URLSearchParams(got));
      },
    ),
    { numRuns: 2000 },
  );
  assert.equal(secretMatches([SECRET], encodeURIComponent(encodeURIComponent(SECRET))), true);
});

test("redactUrl leaves no value the router would read as the secret", () => {
  fc.assert(
    fc.property(fc.array(queryText, { maxLength: 6 }), fc.string({ maxLength: 20 }), (parts, value) => {
      const url = `/p?${parts.join("&")}&secret=${encodeURIComponent(value)}`;
      let redacted: string;
      try {
        redacted = redactUrl(url);
      } catch (err) {
        assert.fail(`redactUrl threw on ${JSON.stringify(url)}: ${String(err)}`);
      }
      for (const v of new URL(redacted, "http://x").searchParams.getAll("secret")) {
        assert.equal(v, "[REDACTED]", `${JSON.stringify(url)} → ${JSON.stringify(redacted)}`);
      }
    }),
    { numRuns: 2000 },
  );
});
