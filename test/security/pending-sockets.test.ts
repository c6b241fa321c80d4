/**
 * Issue 13, item 5: one address keeping 32 /api/v2/stream upgrades waiting for their auth
 * message (reopened every 5 s) made every browser client (auth by message) get 503. Sockets
 * waiting to authenticate are capped per address as well as in total.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { MAX_PENDING_AUTH_PER_ADDRESS } from "../../src/http/v2/stream.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { startInProcess, waitUntil } from "../helpers/in-process.js";

const TOKEN = `sec-pending-token-${process.pid}`;
const SECRET = `sec-pending-secret-${process.pid}-abcdefgh`;

test("one address cannot hold every pending v2 socket: others still authenticate by message", async (t) => {
  const sim = new MattermostSimulator({ token: TOKEN, users: 20, seed: 8 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  // Loopback is the trusted proxy, so X-Forwarded-For names each client, as behind nginx.
  const gw = await startInProcess(sim, TOKEN, SECRET, {
    LOG_LEVEL: "info",
    PRESENCE_TRUSTED_PROXIES: "127.0.0.1,::1",
  });
  t.after(() => gw.stop());
  await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
  const v2Url = `${gw.url.replace("http", "ws")}/api/v2/stream`;

  /** Opens a socket from `address` that sends nothing: 101, or the refused upgrade's status. */
  const open = (address: string): { ws: WebSocket; status: Promise<number> } => {
    const ws = new WebSocket(v2Url, { headers: { "X-Forwarded-For": address } });
    ws.on("error", () => undefined);
    t.after(() => ws.terminate());
    const status = new Promise<number>((resolve) => {
      ws.once("open", () => resolve(101));
      ws.once("unexpected-response", (_req, res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
    });
    return { ws, status };
  };

  const ATTACKER = "198.51.100.7";
  // Twice the per-address cap, as the reported attacker (32 from one address) did.
  const idle = Array.from({ length: 2 * MAX_PENDING_AUTH_PER_ADDRESS }, () => open(ATTACKER));
  const statuses = await Promise.all(idle.map((s) => s.status));
  assert.equal(statuses.filter((s) => s === 101).length, MAX_PENDING_AUTH_PER_ADDRESS);
  assert.equal(statuses.filter((s) => s === 503).length, MAX_PENDING_AUTH_PER_ADDRESS);
  assert.equal(gw.gateway.v2.stream.pendingAuth, MAX_PENDING_AUTH_PER_ADDRESS);
  const refusal = gw.lines.find((l) => l.event === "v2_refused");
  assert.equal(refusal?.remote, ATTACKER, "the refusal is logged with the address");
  // The same /64 is one address: rotating through it does not escape the cap.
  assert.equal(await open("2001:db8:1:2::1").status, 101);
  for (let i = 2; i <= MAX_PENDING_AUTH_PER_ADDRESS; i++) await open(`2001:db8:1:2::${i}`).status;
  assert.equal(await open("2001:db8:1:2:ffff::9").status, 503);

  // A browser client from another address still gets in and authenticates by message.
  const browser = open("203.0.113.20");
  assert.equal(await browser.status, 101);
  const ready = new Promise<string>((resolve) =>
    browser.ws.on("message", (data) => {
      const msg = JSON.parse(data.toString()) as { type: string };
      if (msg.type === "ready") resolve(msg.type);
    }),
  );
  browser.ws.send(JSON.stringify({ type: "auth", secret: SECRET }));
  assert.equal(await ready, "ready");

  // An attacker's socket that leaves frees its place for that address.
  idle.find((s) => s.ws.readyState === WebSocket.OPEN)!.ws.terminate();
  await waitUntil(
    () => gw.gateway.v2.stream.pendingAuth === 2 * MAX_PENDING_AUTH_PER_ADDRESS - 1,
    5000,
    "the place freed",
  );
  assert.equal(await open(ATTACKER).status, 101);
});
