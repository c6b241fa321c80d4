/**
 * Soak (issue 5, point 6): the real gateway process, N WebSockets, a stream of status changes for
 * a bounded time with upstream faults injected; then every socket must hold Mattermost's statuses.
 *
 *   npm run soak -- [--sockets 2000] [--users 2000] [--duration-s 60] [--changes-per-s 50]
 *
 * Reports delivered/expected (after faults heal: every socket × every user holds Mattermost's
 * status), messages received, reconnects, and the gateway's RSS at start, after warm-up and at
 * the end. Exits 1 when delivery is below 100% or RSS grew 10% or more after warm-up.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { MattermostSimulator, type Fault, type SimStatus } from "../../src/simulator/index.js";
import { PROVIDER_STATUSES } from "../../src/presence/status.js";
import { CLI } from "../lib/procs.js";
import { SECRET, TOKEN, gatewayEnv } from "../lib/servers.js";

const BASE = "/plugins/com.mattermost.outlook-presence/api/v1";
const STATUSES: readonly string[] = PROVIDER_STATUSES;

const { values: args } = parseArgs({
  options: {
    sockets: { type: "string", default: "2000" },
    users: { type: "string", default: "2000" },
    "duration-s": { type: "string", default: "60" },
    "changes-per-s": { type: "string", default: "50" },
    "poll-interval-ms": { type: "string", default: "1000" },
  },
});
const SOCKETS = Math.min(20_000, Number(args.sockets));
const USERS = Math.min(50_000, Number(args.users));
const DURATION_MS = Math.min(3_600_000, Number(args["duration-s"]) * 1000);
const CHANGES_PER_S = Number(args["changes-per-s"]);
const POLL_MS = Number(args["poll-interval-ms"]);
const WARMUP_MS = Math.min(10_000, DURATION_MS / 6);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = (msg: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}
const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;

async function startGateway(simUrl: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, "start"], {
    env: {
      PATH: process.env.PATH ?? "",
      ...gatewayEnv(simUrl, {
        PRESENCE_POLL_INTERVAL_MS: String(POLL_MS),
        // Far beyond the run, and no resync: delivery must come from change messages, not from the
        // keepalive's or the resync's repair (the sockets share one /status read, so all but one
        // would otherwise be resynced).
        PRESENCE_KEEPALIVE_MS: "600000",
        PRESENCE_RESYNC_BYTES_PER_SECOND: "0",
        PRESENCE_REQUEST_TIMEOUT_MS: "1000",
        PRESENCE_BACKOFF_MAX_MS: "2000",
        PRESENCE_DIRECTORY_REFRESH_MS: "10000",
      }),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  // The port is in the "listening" line.
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    if (out.length > 100_000) out = out.slice(-50_000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 15_000);
    const poll = setInterval(() => {
      const m = /"port":(\d+)/.exec(out);
      if (!m) return;
      clearInterval(poll);
      clearTimeout(timer);
      resolve(`http://127.0.0.1:${m[1]}`);
    }, 50);
  });
  return { child, url };
}

interface Client {
  ws: WebSocket | undefined;
  view: Uint8Array; // status code per user index (255: unknown)
  messages: number;
  reconnects: number;
  closed: boolean;
}

async function main(): Promise<number> {
  log(
    `soak: ${SOCKETS} sockets, ${USERS} users, ${DURATION_MS / 1000} s, ${CHANGES_PER_S} changes/s, poll ${POLL_MS} ms`,
  );
  const sim = new MattermostSimulator({ token: TOKEN, users: USERS, seed: 77 });
  const simUrl = await sim.start(0, "127.0.0.1");
  const gw = await startGateway(simUrl).catch(async (err: unknown) => {
    await sim.stop();
    throw err;
  });
  const pid = gw.child.pid!;
  const statusUrl = `${gw.url}${BASE}/status?secret=${SECRET}`;
  for (let i = 0; (await fetch(`${gw.url}/readyz`)).status !== 200; i++) {
    if (i > 300) throw new Error("gateway not ready");
    await sleep(100);
  }
  const rssStart = rssOf(pid);

  // One /status read is the baseline every socket starts from (a provider reads /status once).
  const index = new Map<string, number>();
  const baseline: number[] = [];
  for (let page = 0; ; page++) {
    const items = (await (await fetch(`${statusUrl}&page=${page}`)).json()) as {
      email: string;
      status: string;
    }[];
    if (items.length === 0) break;
    for (const u of items) {
      index.set(u.email, index.size);
      baseline.push(STATUSES.indexOf(u.status));
    }
  }
  // Messages are the same bytes on every socket: parse each distinct one once.
  const parsed = new Map<string, [number, number]>();
  const apply = (c: Client, text: string): void => {
    let p = parsed.get(text);
    if (!p) {
      const m = JSON.parse(text) as { email: string; status: string };
      let i = index.get(m.email);
      if (i === undefined) {
        i = index.size;
        index.set(m.email, i);
      }
      p = [i, STATUSES.indexOf(m.status)];
      parsed.set(text, p);
    }
    if (p[0] >= c.view.length) {
      const grown = new Uint8Array(p[0] + 64).fill(255);
      grown.set(c.view);
      c.view = grown;
    }
    c.view[p[0]] = p[1];
    c.messages++;
  };

  const wsUrl = `${gw.url.replace("http", "ws")}${BASE}/ws?secret=${SECRET}`;
  const clients: Client[] = [];
  const open = (c: Client): Promise<void> =>
    new Promise((resolve) => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
      c.ws = ws;
      ws.on("message", (d) => apply(c, d.toString()));
      ws.on("error", () => undefined);
      ws.once("open", () => resolve());
      ws.once("close", () => {
        resolve();
        if (c.closed) return;
        c.reconnects++;
        setTimeout(() => void open(c), 1000);
      });
    });
  for (let i = 0; i < SOCKETS; i += 200) {
    const batch = Array.from({ length: Math.min(200, SOCKETS - i) }, () => {
      const c: Client = {
        ws: undefined,
        view: Uint8Array.from(baseline),
        messages: 0,
        reconnects: 0,
        closed: false,
      };
      clients.push(c);
      return open(c);
    });
    await Promise.all(batch);
  }
  log(`${clients.length} sockets open; RSS ${mb(rssOf(pid))}`);

  // A steady stream of changes for the whole run.
  const tickMs = 100;
  let changes = 0;
  const stopChurn = sim.startChurn({
    intervalMs: tickMs,
    changesPerTick: Math.max(1, Math.round((CHANGES_PER_S * tickMs) / 1000)),
    onChange: () => changes++,
  });

  const started = Date.now();
  await sleep(WARMUP_MS);
  const rssWarm = rssOf(pid);
  log(`warm-up done; RSS ${mb(rssWarm)}`);

  const faults: [string, Fault][] = [
    ["down", { kind: "down" }],
    ["429 Retry-After 2 s", { kind: "rate-limit", retryAfterSeconds: 2 }],
    ["503", { kind: "http-error", status: 503 }],
    ["slow (3 s > 1 s timeout)", { kind: "slow", delayMs: 3000 }],
    ["malformed JSON", { kind: "malformed" }],
    ["truncated JSON", { kind: "truncated" }],
    // Not "ooo": the gateway knows that one (shown as away); "busy" takes the unknown-status path.
    ["unknown status value", { kind: "bad-status-value", value: "busy" }],
  ];
  const faultMs = Math.round(Math.max(1000, (DURATION_MS - WARMUP_MS) / (faults.length * 2 + 1)));
  const rssSamples: number[] = [];
  for (const [name, fault] of faults) {
    log(`fault: ${name} for ${faultMs} ms`);
    sim.setFault(fault);
    await sleep(faultMs);
    sim.setFault(null);
    await sleep(faultMs);
    rssSamples.push(rssOf(pid));
  }
  while (Date.now() - started < DURATION_MS) await sleep(250);
  stopChurn();
  const changesWindowMs = Date.now() - started;
  log(
    `changes stopped after ${Math.round((Date.now() - started) / 1000)} s (${changes} changes made); waiting for delivery`,
  );

  // Expected: what Mattermost holds now, as the provider shows it.
  const expected = new Map<string, number>();
  for (const u of sim.listUsers()) {
    if (u.delete_at > 0 || !u.email) continue;
    const s = sim.getStatus(u.id) as SimStatus | undefined;
    expected.set(u.email, s === undefined ? 3 : s === "ooo" ? 1 : STATUSES.indexOf(s));
  }
  const delivered = (): number => {
    let ok = 0;
    for (const c of clients) {
      for (const [email, want] of expected) if (c.view[index.get(email) ?? 1e9] === want) ok++;
    }
    return ok;
  };
  const total = clients.length * expected.size;
  const deadline = Date.now() + 60_000;
  let got = delivered();
  while (got < total && Date.now() < deadline) {
    await sleep(500);
    got = delivered();
  }
  const settledAfterMs = Date.now() - (deadline - 60_000);
  await sleep(2000); // let the heap settle after the last batch
  const rssEnd = rssOf(pid);
  const growth = (rssEnd - rssWarm) / rssWarm;
  const reconnects = clients.reduce((a, c) => a + c.reconnects, 0);
  const messages = clients.reduce((a, c) => a + c.messages, 0);

  for (const c of clients) {
    c.closed = true;
    c.ws?.terminate();
  }
  gw.child.kill("SIGTERM");
  const [code] = (await once(gw.child, "exit")) as [number | null];
  await sim.stop();

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const report = {
    machine: `${cpus().length} × ${cpu}, ${mb(totalmem())} RAM, Node ${process.version}, ${process.platform}`,
    sockets: clients.length,
    users: expected.size,
    durationS: DURATION_MS / 1000,
    changesPerS: CHANGES_PER_S,
    changesMade: changes,
    changesWindowS: Math.round(changesWindowMs / 1000),
    faults: faults.map(([n]) => n),
    faultPhaseMs: Math.round(faultMs),
    delivered: got,
    expected: total,
    deliveredPct: Math.round((got / total) * 100000) / 1000,
    convergedAfterChangesStoppedMs: settledAfterMs,
    messagesReceived: messages,
    reconnects,
    rssStart: mb(rssStart),
    rssAfterWarmup: mb(rssWarm),
    rssDuringFaults: rssSamples.map(mb),
    rssEnd: mb(rssEnd),
    rssGrowthAfterWarmupPct: Math.round(growth * 1000) / 10,
    gatewayExitCode: code,
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  const pass = got === total && growth < 0.1 && code === 0;
  log(pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
