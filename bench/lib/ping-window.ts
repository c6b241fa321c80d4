import type { IntervalHistogram } from "node:perf_hooks";

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
