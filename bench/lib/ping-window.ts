import { PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";

/** Resolution (ms) of the event-loop delay histogram of a `ping` window. */
export const PING_RESOLUTION_MS = 1;

/**
 * What one ping round (or an idle stretch) cost the event loop, as gateway-host and bare-ws-host
 * answer `{cmd:"ping"}`; times in ms from the round's start.
 */
export interface PingWindow {
  /** Open sockets when the round started (each should be pinged and answer). */
  sockets: number;
  /** The synchronous call (the first slice), the last slice's end, and the last pong. */
  firstSliceMs: number;
  roundMs: number;
  pongsMs: number;
  /** Turns of the event loop that wrote pings (slices); pongs received in the window. */
  slices: number;
  pongs: number;
  /** monitorEventLoopDelay over the window (ms), resolution PING_RESOLUTION_MS. */
  loop: LoopStats;
  resolutionMs: number;
  windowMs: number;
  gcMaxMs: number;
  gcCount: number;
  socketsAfter: number;
  closed: number;
  deadPeers: number;
}

export interface LoopStats {
  max: number;
  p99: number;
  p50: number;
  mean: number;
  count: number;
}

/** An event-loop delay histogram (ns) in ms. */
export function loopStats(h: IntervalHistogram): LoopStats {
  return {
    max: h.max / 1e6,
    p99: h.percentile(99) / 1e6,
    p50: h.percentile(50) / 1e6,
    mean: h.mean / 1e6,
    count: h.count,
  };
}

/** ms, CLOCK_MONOTONIC (comparable across processes). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The monitor records the time between its samples from the second sample on: let it tick before the round. */
const PING_PREROLL_MS = 20;
/** After the last pong, so the sample that follows it is in the histogram. */
const PING_TAIL_MS = 20;

/** The `{cmd:"ping"}` command's fields. */
export interface PingCommand {
  round?: boolean;
  windowMs?: number;
  timeoutMs?: number;
}

/** What a host's round reports (ms from the window's start `t0`). */
export interface RoundTimes {
  firstSliceMs: number;
  roundMs: number;
  slices: number;
}

/** What differs between hosts: their sockets, how a round is done, and their close counts. */
export interface PingHost {
  /** Open sockets the round will ping (each should answer with a pong), counted before the window. */
  sockets: number;
  /** Pings every socket once, started at `t0` (nowMs); resolves when its last slice has written. */
  round(t0: number, timeoutMs: number): RoundTimes | Promise<RoundTimes>;
  /** At the window's end: open sockets, and since the host started, sockets closed and dead peers. */
  after(): { socketsAfter: number; closed: number; deadPeers: number };
}

/**
 * The measurement behind `{cmd:"ping"}`: counts pongs (the host calls `pong` from each socket's pong
 * listener), observes GC pauses, and runs one window: two full GCs (with --expose-gc), a fresh
 * event-loop delay monitor at PING_RESOLUTION_MS, then with `round` the host's round and the wait
 * until every socket has answered (or `timeoutMs`, default 10 s) plus PING_TAIL_MS; without, an
 * idle window of `windowMs` (default 500).
 */
export class PingProbe {
  private pongs = 0;
  private lastPongAt = 0;
  private onPongCount: (() => void) | undefined;
  /** GC pauses within the current window; unset between windows. */
  private gcWindow: { from: number; maxMs: number; count: number } | undefined;
  private gcObserver: PerformanceObserver | undefined;

  /** One pong received (call it from the sockets' pong listeners). */
  readonly pong = (): void => {
    this.pongs++;
    this.lastPongAt = nowMs();
    this.onPongCount?.();
  };

  async window(m: PingCommand, host: PingHost): Promise<PingWindow> {
    this.gcObserver ??= this.observeGc(); // from the first ping command on
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    const h = monitorEventLoopDelay({ resolution: PING_RESOLUTION_MS });
    h.enable();
    await pause(PING_PREROLL_MS);
    this.pongs = 0;
    this.lastPongAt = 0;
    const t0 = nowMs();
    this.gcWindow = { from: performance.now(), maxMs: 0, count: 0 };
    let times: RoundTimes = { firstSliceMs: NaN, roundMs: NaN, slices: 0 };
    if (m.round) {
      const timeoutMs = m.timeoutMs ?? 10_000;
      times = await host.round(t0, timeoutMs);
      await this.pongsReach(host.sockets, t0 + timeoutMs);
      await pause(PING_TAIL_MS);
    } else {
      await pause(m.windowMs ?? 500);
    }
    h.disable();
    const windowMs = nowMs() - t0 + PING_PREROLL_MS;
    await pause(0); // gc entries are delivered asynchronously
    const gcSeen = this.gcWindow;
    this.gcWindow = undefined;
    const { socketsAfter, closed, deadPeers } = host.after();
    const answered = m.round && this.pongs >= host.sockets && this.lastPongAt > 0;
    return {
      sockets: m.round ? host.sockets : socketsAfter,
      firstSliceMs: times.firstSliceMs,
      roundMs: times.roundMs,
      pongsMs: answered ? this.lastPongAt - t0 : NaN,
      slices: times.slices,
      pongs: this.pongs,
      loop: loopStats(h),
      resolutionMs: PING_RESOLUTION_MS,
      windowMs,
      gcMaxMs: gcSeen.maxMs,
      gcCount: gcSeen.count,
      socketsAfter,
      closed,
      deadPeers,
    };
  }

  private observeGc(): PerformanceObserver {
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const w = this.gcWindow;
        if (!w || e.startTime < w.from) continue;
        w.maxMs = Math.max(w.maxMs, e.duration);
        w.count++;
      }
    });
    observer.observe({ entryTypes: ["gc"] });
    return observer;
  }

  /** Resolves once the pongs reach `target` or at `deadline` (nowMs), whichever is first. */
  private pongsReach(target: number, deadline: number): Promise<void> {
    if (this.pongs >= target) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.onPongCount = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, deadline - nowMs()));
      this.onPongCount = () => void (this.pongs >= target && done());
    });
  }
}
