/** The admin page's providers list stays bounded however many sockets an instance holds. */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { adminApi } from "../../src/http/admin.js";
import { PROVIDERS_MAX, type AdminProviders } from "../../src/http/admin-providers.js";
import type { ProviderSocket } from "../../src/http/provider-sockets.js";
import { createHttpServer } from "../../src/http/router.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { initialHealth } from "../../src/mattermost/sync.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";

const TOKEN = "admin-token";
const SOCKETS = 20_000;

/** 20,000 sockets from 10.0.x.y, listed in no particular order. */
function fakeSockets(): ProviderSocket[] {
  const out: ProviderSocket[] = [];
  for (let i = 0; i < SOCKETS; i++) {
    const n = (i * 7919) % SOCKETS; // a permutation: the gateway's order is not the list's
    const address = `10.0.${Math.floor(n / 250)}.${n % 250}`;
    out.push({
      address,
      remote: `${address}:${40000 + (n % 1000)}`,
      protocol: n % 10 === 0 ? "v2" : "compat",
      connectedAt: 1_700_000_000_000 + n,
      sent: n,
    });
  }
  return out;
}

test("20,000 sockets: the first 500 by address, the totals, and a filter by address", async (t) => {
  const sockets = fakeSockets();
  const log = createLogger("silent", new SecretScrubber());
  const admin = adminApi({
    snapshot: new PresenceSnapshot(),
    log,
    tokens: () => [TOKEN],
    sockets: () => sockets.length,
    health: initialHealth,
    notReadyReason: () => undefined,
    mattermostUrl: "http://mattermost.invalid",
    pollIntervalMs: () => 3000,
    providers: () => sockets,
  });
  const server = createHttpServer(log, NO_TELEMETRY, [admin]);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    admin.close();
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = async (query: string): Promise<{ body: AdminProviders; bytes: number }> => {
    const res = await fetch(`${base}/admin/api/providers${query}`, {
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    return { body: JSON.parse(text) as AdminProviders, bytes: text.length };
  };

  const all = await get("");
  assert.equal(all.body.total, SOCKETS);
  assert.equal(all.body.matched, SOCKETS);
  assert.equal(all.body.providers.length, PROVIDERS_MAX);
  assert.ok(all.bytes < 100_000, `a bounded answer (${all.bytes} bytes)`);
  const addresses = all.body.providers.map((p) => p.address);
  // Numeric order: 10.0.0.0 .. 10.0.0.249, then 10.0.1.0 ..
  assert.deepEqual(addresses.slice(0, 3), ["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
  assert.equal(addresses[249], "10.0.0.249");
  assert.equal(addresses[250], "10.0.1.0");
  assert.equal(addresses.at(-1), "10.0.1.249");

  const one = await get("?address=10.0.79.3");
  assert.equal(one.body.total, SOCKETS);
  // 10.0.79.3 and 10.0.79.30..39 contain it; the exact address sorts first.
  assert.equal(one.body.matched, 11);
  assert.equal(one.body.providers[0]!.address, "10.0.79.3");
  assert.deepEqual(one.body.providers[0], {
    address: "10.0.79.3",
    remote: `10.0.79.3:${40000 + ((79 * 250 + 3) % 1000)}`,
    protocol: "compat",
    connected_at: 1_700_000_000_000 + 79 * 250 + 3,
    messages_sent: 79 * 250 + 3,
  });
  const none = await get("?address=192.0.2.1");
  assert.deepEqual([none.body.matched, none.body.providers.length], [0, 0]);
});
