/**
 * Issue 13, item 7: Mattermost's error text never reaches a client that is not an admin, and
 * reaches the admin page and the log only redacted. The simulator's `echo-auth` fault answers
 * every request with an error repeating its `Authorization` header, as some proxies' error pages
 * do. Before the fix, `/readyz`, an unauthenticated v2 upgrade's refusal and
 * `/admin/api/summary` all carried the bot token before the first snapshot.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { redactSecrets } from "../../src/log.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { startInProcess, waitUntil, type InProcessGateway } from "../helpers/in-process.js";
import { BASE } from "../helpers/provider.js";

const SECRET = `error-redaction-secret-${process.pid}`;

/** An upgrade to the v2 stream without credentials: the refusal's status and body. */
function unauthenticatedUpgrade(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/api/v2/stream`, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    req.on("upgrade", (_res, socket) => {
      socket.destroy();
      reject(new Error("upgraded before the first snapshot"));
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

for (const format of ["json", "text"] as const) {
  // The text page is cut at 100 characters by the client: a long token is cut inside, where no
  // whole-value scrubber finds it.
  const token =
    format === "json" ? `echo-token-${process.pid}-json` : `echo-token-${process.pid}-${"x".repeat(120)}`;

  describe(`an upstream that echoes Authorization (${format} error body)`, () => {
    let sim: MattermostSimulator;
    let gw: InProcessGateway;
    const tokenPart = token.slice(0, 20);
    const leaks = (text: string): boolean => text.includes(tokenPart);

    before(async () => {
      sim = new MattermostSimulator({ token, users: 3, seed: 4 });
      sim.setFault({ kind: "echo-auth", status: 500, format });
      await sim.start(0, "127.0.0.1");
      gw = await startInProcess(sim, token, SECRET, { PRESENCE_BACKOFF_MAX_MS: "200" });
      await waitUntil(() => gw.gateway.sync.health.lastError !== undefined, 10_000, "an upstream failure");
      assert.ok(leaks(gw.gateway.sync.health.lastError!), "the fault does echo the token");
    });
    after(async () => {
      await gw?.stop();
      await sim?.stop();
    });

    test("/readyz says a stable reason code only", async () => {
      const res = await fetch(`${gw.url}/readyz`);
      assert.equal(res.status, 503);
      const body = await res.text();
      assert.ok(!leaks(body), body);
      assert.deepEqual(JSON.parse(body), {
        error: { code: "not_ready", message: "first snapshot not loaded yet", reason: "snapshot_pending" },
      });
    });

    test("an unauthenticated v2 upgrade is refused without the upstream's text", async () => {
      const { status, body } = await unauthenticatedUpgrade(gw.url);
      assert.equal(status, 503);
      assert.ok(!leaks(body), body);
      assert.equal(
        (JSON.parse(body) as { error: { message: string } }).error.message,
        "first snapshot not loaded yet",
      );
    });

    test("desktops with the secret get the same stable answer", async () => {
      for (const res of [
        await fetch(`${gw.url}${BASE}/status?secret=${encodeURIComponent(SECRET)}`),
        await fetch(`${gw.url}/api/v2/presence`, { headers: { Authorization: `Bearer ${SECRET}` } }),
      ]) {
        assert.equal(res.status, 503);
        const body = await res.text();
        assert.ok(!leaks(body), body);
        assert.match(body, /first snapshot not loaded yet/);
      }
    });

    test("the admin page gets the details, redacted", async () => {
      const res = await fetch(`${gw.url}/admin/api/summary`, {
        headers: { Authorization: `Bearer ${SECRET}` },
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!leaks(text), text);
      const summary = JSON.parse(text) as { notReadyReason: string; upstream: { lastError: string } };
      assert.match(summary.upstream.lastError, /HTTP 500 .*Bearer \[REDACTED\]/i);
      assert.match(summary.notReadyReason, /^first snapshot not loaded yet: .*Bearer \[REDACTED\]/i);
    });

    test("the log has the details, redacted", () => {
      const failed = gw.lines.find((l) => l.event === "upstream_failed");
      assert.ok(failed, "the failure is logged");
      assert.match(String(failed.msg), /Bearer \[REDACTED\]/i);
      assert.ok(!gw.lines.some((l) => leaks(JSON.stringify(l))), "no log line holds the token");
    });
  });
}

test("redactSecrets: whole values, encoded values, Bearer credentials and a copy cut off at the end", () => {
  const secret = "s3cret+/=0123456789";
  assert.equal(redactSecrets(`a ${secret} b`, [secret]), "a [REDACTED] b");
  assert.equal(redactSecrets(`a ${encodeURIComponent(secret)} b`, [secret]), "a [REDACTED] b");
  assert.equal(redactSecrets("Authorization: Bearer abc.def-ghi", []), "Authorization: Bearer [REDACTED]");
  assert.equal(redactSecrets(`cut at 100: ${secret.slice(0, 9)}`, [secret]), "cut at 100: [REDACTED]");
  assert.equal(redactSecrets("nothing to hide", [secret]), "nothing to hide");
});
