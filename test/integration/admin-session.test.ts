/** The admin session cookie expires with its Max-Age even if a copy of it is replayed. */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { adminApi } from "../../src/http/admin.js";
import { createHttpServer } from "../../src/http/router.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { initialHealth } from "../../src/mattermost/sync.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";

test("an admin session cookie is refused once older than 12 h, and after the token changes", async (t) => {
  let clock = 1_000_000;
  let tokens = ["admin-token"];
  const log = createLogger("silent", new SecretScrubber());
  const admin = adminApi({
    snapshot: new PresenceSnapshot(),
    log,
    tokens: () => tokens,
    sockets: () => 0,
    health: initialHealth,
    notReadyReason: () => undefined,
    mattermostUrl: "http://mattermost.invalid",
    pollIntervalMs: () => 3000,
    now: () => clock,
  });
  const server = createHttpServer(log, NO_TELEMETRY, [admin]);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    admin.close();
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const login = await fetch(`${base}/admin?token=admin-token`, { redirect: "manual" });
  assert.equal(login.status, 303);
  const session = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
  const open = async () => (await fetch(`${base}/admin`, { headers: { Cookie: session } })).status;

  assert.equal(await open(), 200);
  clock += 12 * 3600 * 1000 - 1000;
  assert.equal(await open(), 200, "still within its 12 h");
  clock += 2000;
  assert.equal(await open(), 403, "expired, though the copy is byte for byte the same");

  clock -= 2 * 3600 * 1000;
  assert.equal(await open(), 200);
  const forged = session.replace(/=\d+\./, `=${clock}.`);
  assert.equal(
    (await fetch(`${base}/admin`, { headers: { Cookie: forged } })).status,
    403,
    "a moved issue time breaks the signature",
  );
  tokens = ["a-new-admin-token"];
  assert.equal(await open(), 403, "a new token signs everyone out");
});
