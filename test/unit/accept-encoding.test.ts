import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { acceptsGzip } from "../../src/http/router.js";

test("gzip is used when listed, in any case, and not when refused with q=0", () => {
  const yes = ["gzip", "gzip, deflate, br", "br;q=1.0, GZIP;q=0.5", "deflate , gzip ; q=0.001", "gzip;q=1"];
  const no = [undefined, "", "identity", "deflate, br", "gzip;q=0", "gzip; q=0.000, br", "x-gzip", "gzipped"];
  for (const h of yes) assert.equal(acceptsGzip(h), true, String(h));
  for (const h of no) assert.equal(acceptsGzip(h), false, String(h));
});

test("property: any header gives an answer without throwing", () => {
  fc.assert(fc.property(fc.string(), (h) => typeof acceptsGzip(h) === "boolean"));
});
