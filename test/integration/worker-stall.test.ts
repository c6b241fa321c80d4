/**
 * The primary's backlog to a worker that stops reading is bounded (PRESENCE_WORKER_STALL_MS):
 * against the real CLI with PRESENCE_WORKERS=2, one worker is stopped (SIGSTOP) while large change
 * batches keep coming; the primary kills and replaces it, counts it, and the other worker's
 * providers get every change meanwhile.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { get } from "node:http";
import { test } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { assertConverged, sleep, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-worker-stall`;
const SECRET = `secret-${process.pid}-worker-stall`;
/** Enough users that a few batches of changes overflow the socket buffer between the processes. */
const USERS = 3000;

/** The worker processes of the primary `pid` (its children). */
function workerPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

/** When the process `pid` started (field 22 of /proc/<pid>/stat), or undefined if it is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Gives every active user the next status in the cycle. */
function flipAll(sim: MattermostSimulator): void {
  const cycle: SimStatus[] = ["online", "away", "dnd", "offline"];
  for (const u of sim.listUsers().filter((x) => x.delete_at === 0 && x.email)) {
    const now = sim.getStatus(u.id) ?? "offline";
    sim.setStatus(u.id, cycle[(cycle.indexOf(now as SimStatus) + 1) % cycle.length]!);
  }
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

test("a worker that stops reading is killed and replaced; the other worker's providers miss nothing", async (t) => {
  const sim = new MattermostSimulator({ token: TOKEN, users: USERS, seed: 17 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await GatewayProcess.start({
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    PRESENCE_WORKERS: "2",
    PRESENCE_WORKER_STALL_MS: "1500",
    PRESENCE_POLL_INTERVAL_MS: "250",
    PRESENCE_KEEPALIVE_MS: "600000",
    PRESENCE_RESYNC_BYTES_PER_SECOND: "0",
  });
  t.after(() => gw.stop());
  await gw.waitFor((l) => l.event === "ready" && l.worker === undefined, 30_000);
  const primary = gw.child.pid!;

  const ps: FakeProvider[] = [];
  t.after(() => ps.forEach((p) => p.close()));
  for (let i = 0; i < 4; i++) {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus();
    await p.connect();
    ps.push(p);
  }
  await waitUntil(
    () => gw.logs.filter((l) => l.event === "ws_connect").length >= 4,
    10_000,
    "4 ws_connect lines",
  );

  const [victim, survivor] = workerPids(primary);
  assert.ok(victim && survivor, "two workers");
  const victimStarted = startTime(victim);
  process.kill(victim, "SIGSTOP");
  // Whatever happens below, the stopped worker is not left behind: without the bound nothing kills
  // it, and a stopped process outlives its primary (checked by start time, not to hit a reused pid).
  t.after(() => {
    if (victimStarted !== undefined && startTime(victim) === victimStarted) {
      process.kill(victim, "SIGCONT");
      process.kill(victim, "SIGKILL");
    }
  });

  // Batches of 3,000 changes, several per second: far more than the socket buffer holds.
  const stalledLine = gw.waitFor((l) => l.event === "worker_stalled", 30_000);
  let flips = 0;
  let stalledSeen = false;
  void stalledLine.then(() => (stalledSeen = true)).catch(() => undefined);
  while (!stalledSeen && flips < 40) {
    flipAll(sim);
    flips++;
    await sleep(400);
  }
  const stalled = await stalledLine;
  assert.equal(stalled.pid, victim, "the stopped worker is the one replaced");
  assert.ok(Number(stalled.unreadMs) >= 1500, `unread for the stall time (${String(stalled.unreadMs)} ms)`);
  await gw.waitFor(
    (l) => l.event === "worker_exited" && l.signal === "SIGKILL" && l.stalled === true,
    10_000,
  );
  await waitUntil(
    () => workerPids(primary).length === 2 && !workerPids(primary).includes(victim),
    15_000,
    "a replacement worker",
  );
  assert.ok(workerPids(primary).includes(survivor), "the other worker kept running");

  // The stopped worker's sockets dropped with it; the others got every change meanwhile.
  await waitUntil(
    () => ps.some((p) => p.ws!.readyState !== WebSocket.OPEN),
    10_000,
    "the stalled worker's sockets to drop",
  );
  const open = ps.filter((p) => p.ws!.readyState === WebSocket.OPEN);
  assert.ok(open.length > 0, "some providers were on the other worker");
  await assertConverged(sim, open, 20_000);

  const metrics = await fetchText(`${gw.url}/metrics`);
  assert.match(metrics, /^outlook_presence_worker_replacements_total\{reason="stalled"\} 1$/m);

  // The dropped providers reconnect (to either worker, the replacement included) and catch up.
  for (const p of ps) if (p.ws!.readyState !== WebSocket.OPEN) await p.connect();
  flipAll(sim);
  await assertConverged(sim, ps, 20_000);
});
