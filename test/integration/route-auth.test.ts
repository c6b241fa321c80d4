/**
 * The router checks the credential a route or upgrade declares before its handler runs
 * (issue 16, item 4): the handler never sees a refused request, the HTTP refusal carries the
 * credential's challenge, an upgrade refusal does not, and the limiter's 429 is the same on both.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { AuthFailureLimiter, AuthFailures } from "../../src/http/auth-limit.js";
import { presenceBearer, presenceBearerOrMessage } from "../../src/http/route-auth.js";
import { createHttpServer } from "../../src/http/router.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";

const SECRET = "router-auth-secret-0123456789";
const BURST = 2;
let base = "";
const handled: string[] = [];
const server = createHttpServer(
  createLogger("silent", new SecretScrubber()),
  NO_TELEMETRY,
  [
    {
      routes: [
        {
          path: "/private",
          methods: ["GET", "POST"],
          auth: presenceBearer(() => [SECRET]),
          handle: (_req, res) => {
            handled.push("private");
            res.end("secret data");
          },
        },
        { path: "/public", methods: ["GET"], auth: "none", handle: (_req, res) => res.end("public") },
      ],
      upgrades: [
        {
          path: "/ws",
          auth: presenceBearerOrMessage(() => [SECRET]),
          handle: (_req, socket, _head, _url, presented) => {
            handled.push(`ws:${presented}`);
            socket.end(`HTTP/1.1 418 I'm a teapot\r\nX-Presented: ${presented}\r\nContent-Length: 0\r\n\r\n`);
          },
        },
      ],
    },
  ],
  {
    authFailures: new AuthFailures(
      new AuthFailureLimiter(BURST, 600_000),
      createLogger("silent", new SecretScrubber()),
      (req) => String(req.headers["x-test-from"] ?? req.socket.remoteAddress),
    ),
  },
);

/** The raw answer to an upgrade request (status line and headers). */
function upgrade(headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const { port } = server.address() as AddressInfo;
    const socket = connect(port, "127.0.0.1", () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      socket.write(
        `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
          `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
      );
    });
    let got = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (got += d));
    socket.on("end", () => resolve(got));
    socket.on("error", reject);
    socket.setTimeout(10_000, () => reject(new Error("no answer to the upgrade")));
  });
}

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

test("the handler runs only for the right credential; the refusal carries the route's challenge", async () => {
  handled.length = 0;
  const ok = await fetch(`${base}/private`, { headers: { Authorization: `Bearer ${SECRET}` } });
  assert.equal(await ok.text(), "secret data");
  const none = await fetch(`${base}/private`, { headers: { "X-Test-From": "10.1.0.1" } });
  assert.equal(none.status, 401);
  assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="presence"');
  assert.equal(((await none.json()) as { error: { code: string } }).error.code, "unauthorized");
  const posted = await fetch(`${base}/private`, {
    method: "POST",
    headers: { Authorization: "Bearer wrong-guess", "X-Test-From": "10.1.0.2" },
    body: "x".repeat(64 * 1024),
  });
  assert.equal(posted.status, 401, "a refused body is drained, the answer still arrives");
  await posted.text();
  assert.equal((await fetch(`${base}/public`)).status, 200);
  assert.deepEqual(handled, ["private"]);
});

test("past the burst: 429 with Retry-After and no challenge, on HTTP and on the upgrade alike", async () => {
  const from = { "X-Test-From": "10.1.0.3" };
  for (let i = 0; i < BURST; i++) {
    const res = await fetch(`${base}/private`, { headers: { ...from, Authorization: `Bearer guess-${i}` } });
    assert.equal(res.status, 401);
    await res.text();
  }
  const limited = await fetch(`${base}/private`, { headers: { ...from, Authorization: "Bearer guess-x" } });
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  assert.equal(limited.headers.get("www-authenticate"), null);
  await limited.text();
  const ws = await upgrade({ ...from, Authorization: "Bearer guess-y" });
  assert.match(ws, /^HTTP\/1.1 429 /);
  assert.match(ws, /\r\nRetry-After: \d+\r\n/);
});

test("an upgrade: a wrong credential is refused before the handler, without a challenge; none passes as 'none'", async () => {
  handled.length = 0;
  const wrong = await upgrade({ "X-Test-From": "10.1.0.4", Authorization: "Bearer wrong-guess" });
  assert.match(wrong, /^HTTP\/1.1 401 /);
  assert.doesNotMatch(wrong, /WWW-Authenticate/i);
  assert.match(await upgrade({ "X-Test-From": "10.1.0.4" }), /X-Presented: none/);
  assert.match(await upgrade({ Authorization: `Bearer ${SECRET}` }), /X-Presented: ok/);
  assert.deepEqual(handled, ["ws:none", "ws:ok"]);
});
