/**
 * The real `Gateway` class, in-process in its own child, for scenarios that need hooks:
 * - `{type:"seen", t, n}` is sent for every change batch, with `t` (ms, CLOCK_MONOTONIC, comparable
 *   across processes) taken the moment the snapshot emits it, before the WebSocket hub writes it;
 * - `{cmd:"mem", warm?}` answers the memory after full GCs (bench/lib/mem-sample.ts) (run with --expose-gc).
 * - `{cmd:"resync", ticks?, reset?}` answers `{type:"resync", ...}`: sockets still waiting for their
 *   resync (`hub.resyncing`), sockets, visible users, the budget (PRESENCE_RESYNC_BYTES_PER_SECOND),
 *   and since the last reset: sockets connected, resync messages and bytes written, the time (ms,
 *   CLOCK_MONOTONIC) of the first socket connected and of the first and last resync write, and with
 *   `ticks` the bytes each pacer tick wrote ([t, bytes] pairs); then resets those if `reset`.
 * - `{cmd:"loopDelay", name?}` answers `{type:"loopDelay", p50, p99, max, mean, count, gcMaxMs,
 *   gcTotalMs, gcCount}` (ms) of the event loop's delay since the previous command with that name
 *   (monitorEventLoopDelay, sampled every LOOP_RESOLUTION_MS, so an idle loop reads about that
 *   much) and the garbage-collection pauses meanwhile, then resets them. Each name has its own
 *   monitor, started by its first call (which answers count 0).
 * - `{cmd:"ping", round, windowMs?, timeoutMs?}` answers `{type:"ping", ...}` (PingWindow, measured by
 *   PingProbe in bench/lib/ping-window.ts):
 *   after two full GCs, a fresh event-loop delay monitor at 1 ms resolution is enabled; with
 *   `round`, the hub's (private) `pingRound` is called once and the window lasts until the last
 *   slice has written (the last socket in the hub's order has been pinged) and every open socket
 *   has answered with a pong (or `timeoutMs`, default 10 s), plus PING_TAIL_MS; without, the
 *   window lasts `windowMs` (default 500: an idle reference). Times are ms from the call. Counts
 *   since the host started: sockets closed, and closed by the hub as dead peers.
 * Settings come from the environment exactly as `outlook-presence start` reads them.
 */
import { PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { WebSocket } from "ws";
import { loadConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/gateway.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";
import { memSample } from "../lib/mem-sample.js";
import { PingProbe, nowMs, type PingWindow } from "../lib/ping-window.js";

const LOOP_RESOLUTION_MS = 5;
/** Pacer ticks remembered at most between resets (a tick is 100 ms: over an hour's worth). */
const MAX_TICKS = 50_000;

/** What the resync wrote since the last reset; each tick's writes are grouped (same event-loop turn). */
const resync = {
  messages: 0,
  bytes: 0,
  connects: 0,
  firstConnectAt: 0,
  firstAt: 0,
  lastAt: 0,
  ticks: [] as [number, number][],
};
let openTick: [number, number] | undefined;
/** Sockets closed since the host started, by reason (telemetry's wsClosed). */
const closedBy = new Map<string, number>();
const watch = {
  ...NO_TELEMETRY,
  wsConnected(): void {
    if (resync.connects++ === 0) resync.firstConnectAt = nowMs();
  },
  wsClosed(reason: string): void {
    closedBy.set(reason, (closedBy.get(reason) ?? 0) + 1);
  },
  wsResync(messages: number, bytes: number): void {
    const t = nowMs();
    if (resync.messages === 0) resync.firstAt = t;
    resync.lastAt = t;
    resync.messages += messages;
    resync.bytes += bytes;
    if (!openTick && resync.ticks.length < MAX_TICKS) {
      openTick = [t, 0];
      resync.ticks.push(openTick);
      setImmediate(() => (openTick = undefined)); // the pacer writes a whole tick synchronously
    }
    if (openTick) openTick[1] += bytes;
  },
};

const { config } = loadConfig([]);
const log = createLogger(config.logLevel, new SecretScrubber());
const gateway = new Gateway(config, log, watch);
const send = (m: Record<string, unknown>): void => void process.send!(m);
const loops = new Map<
  string,
  { h: IntervalHistogram; gcMaxMs: number; gcTotalMs: number; gcCount: number }
>();
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    for (const l of loops.values()) {
      l.gcMaxMs = Math.max(l.gcMaxMs, e.duration);
      l.gcTotalMs += e.duration;
      l.gcCount++;
    }
  }
});

// Registered before start() (which subscribes the hub), so it runs before the broadcast.
gateway.snapshot.onChanges((changes) => {
  const t = Number(process.hrtime.bigint()) / 1e6;
  setImmediate(() => send({ type: "seen", t, n: changes.length }));
});

const url = await gateway.start();
const deadline = Date.now() + 120_000;
while (!gateway.snapshot.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
if (!gateway.snapshot.ready) {
  process.stderr.write("gateway-host: snapshot not ready within 120 s\n");
  process.exit(1);
}

/** An IPC command (see the header for each). */
interface Command {
  cmd: string;
  /** mem: grow the new space first (see memSample). */
  warm?: boolean;
  reset?: boolean;
  ticks?: boolean;
  name?: string;
  round?: boolean;
  windowMs?: number;
  timeoutMs?: number;
}

const probe = new PingProbe();
const counted = new WeakSet<WebSocket>();

/** The pool's own round (sliced: each slice schedules the next with setImmediate). */
function pingWindow(m: Command): Promise<PingWindow> {
  const clients = gateway.sockets.sockets("compat");
  for (const ws of clients) {
    if (counted.has(ws)) continue;
    counted.add(ws);
    ws.on("pong", probe.pong);
  }
  // pingRound visits the sockets in the lane's order: the last one is pinged by the last slice.
  const order = [...clients].filter((ws) => ws.readyState === ws.OPEN);
  const last = order[order.length - 1];
  return probe.window(m, {
    sockets: order.length,
    async round(t0, timeoutMs) {
      gateway.sockets.pingRound();
      const firstSliceMs = nowMs() - t0;
      let roundMs = NaN;
      let slices = 1;
      if (last?.alive === false) roundMs = firstSliceMs;
      else if (last) {
        // Each of the hub's slices schedules the next with setImmediate; this check is queued right
        // after it, so it runs in the same turn, just after that slice.
        await new Promise<void>((resolve) => {
          const turn = (): void => {
            slices++;
            if (last.alive === false) {
              roundMs = nowMs() - t0;
              resolve();
            } else if (slices > order.length || nowMs() - t0 > timeoutMs) resolve();
            else setImmediate(turn);
          };
          setImmediate(turn);
        });
      }
      return { firstSliceMs, roundMs, slices };
    },
    after() {
      let closed = 0;
      for (const n of closedBy.values()) closed += n;
      return { socketsAfter: clients.size, closed, deadPeers: closedBy.get("dead_peer") ?? 0 };
    },
  });
}

process.on("message", (m: Command) => {
  if (m.cmd === "ping") {
    void pingWindow(m).then((w) => send({ type: "ping", ...w }));
  } else if (m.cmd === "resync") {
    send({
      type: "resync",
      t: nowMs(),
      resyncing: gateway.hub.resyncing,
      sockets: gateway.hub.size,
      users: gateway.snapshot.visible().length,
      budget: config.resyncBytesPerSecond,
      ...resync,
      ticks: m.ticks ? resync.ticks : [],
    });
    if (m.reset) {
      Object.assign(resync, { messages: 0, bytes: 0, connects: 0, firstConnectAt: 0, firstAt: 0, lastAt: 0 });
      resync.ticks = [];
      openTick = undefined;
    }
  } else if (m.cmd === "loopDelay") {
    const name = m.name ?? "default";
    const l = loops.get(name);
    const h = l?.h;
    const ms = (ns: number): number => (h && h.count > 0 ? ns / 1e6 : NaN);
    send({
      type: "loopDelay",
      p50: ms(h?.percentile(50) ?? NaN),
      p99: ms(h?.percentile(99) ?? NaN),
      max: ms(h?.max ?? NaN),
      mean: ms(h?.mean ?? NaN),
      count: h?.count ?? 0,
      resolutionMs: LOOP_RESOLUTION_MS,
      gcMaxMs: l?.gcMaxMs ?? NaN,
      gcTotalMs: l?.gcTotalMs ?? NaN,
      gcCount: l?.gcCount ?? 0,
    });
    if (l) Object.assign(l, { gcMaxMs: 0, gcTotalMs: 0, gcCount: 0 });
    if (h) h.reset();
    else {
      const started = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      started.enable();
      if (loops.size === 0) gcObserver.observe({ entryTypes: ["gc"] });
      loops.set(name, { h: started, gcMaxMs: 0, gcTotalMs: 0, gcCount: 0 });
    }
  } else if (m.cmd === "mem") {
    void memSample(m.warm === true).then((mem) => send({ type: "mem", ...mem, sockets: gateway.hub.size }));
  }
});
const stop = (): void => void gateway.stop(2000).then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("disconnect", stop);
send({ type: "ready", url, users: gateway.snapshot.visible().length });
