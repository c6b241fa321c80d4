import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { SecretScrubber, createLogger, redactUrl } from "../../src/log.js";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, stream };
}

test("known secret values never reach a log line, wherever they hide", () => {
  const scrubber = new SecretScrubber();
  scrubber.set(["tok-SUPERSECRET", "s3cr3t/+=value"]);
  const { lines, stream } = capture();
  const log = createLogger("info", scrubber, stream);
  log.info({ token: "tok-SUPERSECRET" }, "field");
  log.info({ nested: { authorization: "Bearer tok-SUPERSECRET" } }, "nested");
  log.info({ url: "/x?secret=" + encodeURIComponent("s3cr3t/+=value") }, "url-encoded");
  log.info("message with tok-SUPERSECRET inside");
  log.error({ err: new Error("boom tok-SUPERSECRET") }, "error");
  const out = lines.join("");
  assert.equal(lines.length, 5);
  assert.doesNotMatch(out, /SUPERSECRET/);
  assert.doesNotMatch(out, /s3cr3t/);
  assert.match(out, /\[REDACTED\]/);
});

test("redactUrl hides the secret query value only", () => {
  assert.equal(redactUrl("/status?page=1&secret=abc&x=1"), "/status?page=1&secret=[REDACTED]&x=1");
  assert.equal(redactUrl("/status?page=1"), "/status?page=1");
});
