/**
 * Worker processes (issue 17, items 1 and 2), against the real CLI with PRESENCE_WORKERS=2: a
 * primary polls the simulator and feeds two workers sharing one port. node:cluster hands
 * connections to the workers in turn, so consecutive new connections land on both; the workers'
 * log lines carry `worker`, which is how these tests see where a socket landed.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import WebSocket from "ws";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";
import { GatewayProcess, runCli } from "../helpers/gateway-process.js";
import { assertConverged, waitUntil } from "../helpers/in-process.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const TOKEN = `tok-${process.pid}-workers-test`;
const SECRET = `secret-${process.pid}-workers-test`;

async function setup(t: TestContext, env: Record<string, string> = {}, token = TOKEN) {
  const sim = new MattermostSimulator({ token: TOKEN, users: 40, seed: 17 });
  await sim.start(0, "127.0.0.1");
  t.after(() => sim.stop());
  const gw = await GatewayProcess.start({
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: token,
    PRESENCE_SECRET: SECRET,
    PRESENCE_WORKERS: "2",
    PRESENCE_POLL_INTERVAL_MS: "250",
    PRESENCE_KEEPALIVE_MS: "600000",
    PRESENCE_BACKOFF_MAX_MS: "1000",
    ...env,
  });
  t.after(() => gw.stop());
  return { sim, gw };
}

async function ready(gw: GatewayProcess): Promise<void> {
  await gw.waitFor((l) => l.event === "ready" && l.worker === undefined, 15_000);
}

/** A GET on a connection of its own (no keep-alive), so that successive calls reach both workers. */
function freshGet(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, headers }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

/** The worker processes of the primary `pid` (its children). */
function workerPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Which worker accepted each provider socket so far, from the workers' `ws_connect` lines. */
function connectsByWorker(gw: GatewayProcess): Map<string, number> {
  const by = new Map<string, number>();
  for (const l of gw.logs) {
    if (l.event === "ws_connect") by.set(String(l.worker), (by.get(String(l.worker)) ?? 0) + 1);
  }
  return by;
}

/** Waits until the workers have logged `n` provider connections in all (their lines trail the open). */
async function connectsLogged(gw: GatewayProcess, n: number): Promise<Map<string, number>> {
  const total = () => [...connectsByWorker(gw).values()].reduce((a, b) => a + b, 0);
  await waitUntil(() => total() >= n, 10_000, `${n} ws_connect lines`);
  return connectsByWorker(gw);
}

async function providers(gw: GatewayProcess, n: number): Promise<FakeProvider[]> {
  const before = [...connectsByWorker(gw).values()].reduce((a, b) => a + b, 0);
  const out: FakeProvider[] = [];
  for (let i = 0; i < n; i++) {
    const p = new FakeProvider(gw.url, SECRET);
    await p.loadStatus();
    await p.connect();
    out.push(p);
  }
  await connectsLogged(gw, before + n);
  return out;
}

/** Gives `count` active users a new status each; returns them with the status they now have. */
function flip(sim: MattermostSimulator, count: number, offset: number): Map<string, SimStatus> {
  const cycle: SimStatus[] = ["online", "away", "dnd", "offline"];
  const flipped = new Map<string, SimStatus>();
  const users = sim.listUsers().filter((u) => u.delete_at === 0 && u.email);
  for (const u of users.slice(offset, offset + count)) {
    const now = sim.getStatus(u.id) ?? "offline";
    const next = cycle[(cycle.indexOf(now as SimStatus) + 1) % cycle.length]!;
    sim.setStatus(u.id, next);
    flipped.set(u.email, next);
  }
  return flipped;
}

/** Every provider received, as a message, the new status of every flipped user. */
async function everyChangeReached(
  ps: readonly FakeProvider[],
  flipped: Map<string, SimStatus>,
): Promise<void> {
  await waitUntil(
    () =>
      ps.every((p) =>
        [...flipped].every(([email, status]) =>
          p.messages.some((m) => m.email === email && m.status === status),
        ),
      ),
    10_000,
    "every change on every provider",
  );
}

async function metric(gw: GatewayProcess, name: string): Promise<number> {
  const text = (await freshGet(`${gw.url}/metrics`)).body;
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

describe("worker processes (PRESENCE_WORKERS=2, real CLI)", () => {
  test("every provider gets every change from either worker; /metrics sums over the workers", async (t) => {
    const { sim, gw } = await setup(t);
    await ready(gw);
    const ps = await providers(gw, 6);
    t.after(() => ps.forEach((p) => p.close()));
    const by = connectsByWorker(gw);
    assert.deepEqual([...by.keys()].sort(), ["1", "2"], "sockets on both workers");

    const flipped = flip(sim, 8, 0);
    await everyChangeReached(ps, flipped);
    await assertConverged(sim, ps);

    // The instance's numbers, whichever worker answers the scrape.
    for (let i = 0; i < 2; i++) {
      assert.equal(await metric(gw, "outlook_presence_ws_connections"), 6);
      assert.equal(await metric(gw, 'outlook_presence_ws_connections_opened_total{protocol="compat"}'), 6);
      assert.equal(await metric(gw, "outlook_presence_leader"), 1);
      assert.equal(await metric(gw, "outlook_presence_ready"), 1);
    }
    const text = (await freshGet(`${gw.url}/metrics`)).body;
    const perWorker = [...text.matchAll(/^outlook_presence_worker_connections\{worker="(\d)"\} (\d+)$/gm)];
    assert.deepEqual(
      perWorker.map((m) => [m[1], Number(m[2])]).sort(),
      [...by].map(([w, n]) => [w, n]).sort(),
      "a worker label where per-worker values matter",
    );
    // Only the primary talks to Mattermost: its poll counters are in the sum.
    assert.match(
      text,
      /^outlook_presence_upstream_requests_total\{endpoint="status\/ids",code="200"\} [1-9]/m,
    );
    assert.match(text, /^process_resident_memory_bytes\{worker="primary"\} /m);
    // /readyz and /admin speak for the instance too.
    for (let i = 0; i < 2; i++) {
      const readyz = JSON.parse((await freshGet(`${gw.url}/readyz`)).body) as { sockets: number };
      assert.equal(readyz.sockets, 6);
    }
  });

  test("a killed worker is replaced; its providers reconnect to the other and miss nothing", async (t) => {
    const { sim, gw } = await setup(t);
    await ready(gw);
    const ps = await providers(gw, 4);
    t.after(() => ps.forEach((p) => p.close()));
    const [victim, survivor] = workerPids(gw.child.pid!);
    assert.ok(victim && survivor, "two workers");
    process.kill(victim, "SIGKILL");
    const exited = await gw.waitFor((l) => l.event === "worker_exited" && l.signal === "SIGKILL");
    // The sockets the killed worker held drop, as a provider sees a crash; the others stay.
    const held = connectsByWorker(gw).get(String(exited.worker)) ?? 0;
    assert.ok(held > 0 && held < 4, `the killed worker held some of the sockets (${held})`);
    await waitUntil(
      () => ps.filter((p) => p.ws!.readyState !== WebSocket.OPEN).length === held,
      5000,
      `the ${held} sockets of the killed worker to drop`,
    );
    await waitUntil(
      () => workerPids(gw.child.pid!).length === 2 && !workerPids(gw.child.pid!).includes(victim),
      10_000,
      "a replacement worker",
    );
    // The providers reconnect (the way the real provider does) and reach a live worker.
    for (const p of ps) if (p.ws!.readyState !== WebSocket.OPEN) await p.connect();
    const flipped = flip(sim, 6, 10);
    await everyChangeReached(ps, flipped);
    await assertConverged(sim, ps);
    // New connections reach the replacement as well, and it serves the same statuses.
    const more = await providers(gw, 2);
    t.after(() => more.forEach((p) => p.close()));
    const after = flip(sim, 4, 20);
    await everyChangeReached([...ps, ...more], after);
    assert.ok(alive(survivor), "the other worker kept running");
  });

  test("SIGHUP reloads the secret on every worker; SIGTERM closes every socket of every worker with 1001", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "workers-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "secret");
    writeFileSync(file, SECRET);
    const { gw } = await setup(t, { PRESENCE_SECRET: "", PRESENCE_SECRET_FILE: file });
    await ready(gw);
    const ps = await providers(gw, 4);
    const NEXT = `${SECRET}-rotated`;
    writeFileSync(file, NEXT);
    gw.child.kill("SIGHUP");
    await waitUntil(
      () => ["1", "2"].every((w) => gw.logs.some((l) => l.event === "reloaded" && l.worker === w)),
      10_000,
      "both workers reloaded",
    );
    // Fresh connections alternate between the workers: each accepts the new secret.
    for (let i = 0; i < 4; i++) {
      const res = await freshGet(`${gw.url}${BASE}/status?secret=${encodeURIComponent(NEXT)}`);
      assert.equal(res.status, 200, `request ${i} with the reloaded secret`);
    }
    assert.ok(
      ps.every((p) => p.ws!.readyState === WebSocket.OPEN),
      "no socket dropped by the reload",
    );

    const closes = ps.map(
      (p) => new Promise<number>((resolve) => p.ws!.once("close", (code) => resolve(code))),
    );
    const pids = workerPids(gw.child.pid!);
    const exit = once(gw.child, "exit");
    gw.child.kill("SIGTERM");
    assert.deepEqual(await Promise.all(closes), [1001, 1001, 1001, 1001]);
    const [code] = (await exit) as [number | null];
    assert.equal(code, 0);
    assert.ok(
      pids.every((pid) => !alive(pid)),
      "every worker exited with the primary",
    );
  });

  test("PRESENCE_MAX_CONNECTIONS holds for the instance, not per worker", async (t) => {
    const { gw } = await setup(t, { PRESENCE_MAX_CONNECTIONS: "4" });
    await ready(gw);
    // Upgrades only (no /status reads in between): node:cluster hands them out in turn.
    const ps: FakeProvider[] = [];
    t.after(() => ps.forEach((p) => p.close()));
    for (let i = 0; i < 4; i++) {
      const p = new FakeProvider(gw.url, SECRET);
      await p.connect();
      ps.push(p);
    }
    await connectsLogged(gw, 4);
    assert.equal(connectsByWorker(gw).size, 2, "the four are spread over both workers");
    // Each worker knows the instance's count once the primary has passed the others' on.
    await waitUntil(
      async () => {
        for (let i = 0; i < 2; i++) {
          const r = JSON.parse((await freshGet(`${gw.url}/readyz`)).body) as { sockets: number };
          if (r.sockets !== 4) return false;
        }
        return true;
      },
      10_000,
      "both workers counting 4 sockets",
    );
    // Either worker would have room for two more of its own; the instance has none.
    for (let i = 0; i < 4; i++) {
      const p = new FakeProvider(gw.url, SECRET);
      await assert.rejects(p.connect(), /upgrade refused: 503/, `connection ${i + 5} refused`);
    }
  });

  test("readiness on every worker reflects the instance: a rejected token is not ready", async (t) => {
    const { gw } = await setup(t, {}, `${TOKEN}-wrong`);
    await waitUntil(
      async () => {
        for (let i = 0; i < 2; i++) {
          const res = await freshGet(`${gw.url}/readyz`);
          const reason = (JSON.parse(res.body) as { error?: { reason?: string } }).error?.reason;
          if (res.status !== 503 || reason !== "token_rejected") return false;
        }
        return true;
      },
      15_000,
      "token_rejected on both workers",
    );
  });

  test("the primary dying ends the instance: the workers exit with it", async (t) => {
    const { gw } = await setup(t);
    await ready(gw);
    const pids = workerPids(gw.child.pid!);
    assert.equal(pids.length, 2);
    gw.child.kill("SIGKILL");
    await waitUntil(() => pids.every((pid) => !alive(pid)), 10_000, "the workers to exit");
  });

  test("workers that cannot listen (the port is taken) end the instance with an error", async (t) => {
    const sim = new MattermostSimulator({ token: TOKEN, users: 5, seed: 3 });
    await sim.start(0, "127.0.0.1");
    t.after(() => sim.stop());
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    t.after(() => taken.close());
    const port = (taken.address() as { port: number }).port;
    // Before the fix a worker whose listen failed kept its IPC channel open: the instance hung.
    const run = await runCli(
      ["start"],
      {
        MATTERMOST_URL: sim.url,
        MATTERMOST_TOKEN: TOKEN,
        PRESENCE_SECRET: SECRET,
        PRESENCE_WORKERS: "2",
        HOST: "127.0.0.1",
        PORT: String(port),
      },
      30_000,
    );
    assert.notEqual(run.code, 0);
    assert.match(run.stdout, /"event":"listen_failed"/);
  });
});
