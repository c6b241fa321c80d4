import type { Logger } from "../log.js";
import { NO_TELEMETRY, type Telemetry } from "../telemetry.js";

/** Calls every Telemetry in turn (NO_TELEMETRY entries are dropped, so the usual case is one). */
export function composeTelemetry(...all: Telemetry[]): Telemetry {
  const ts = all.filter((t) => t !== NO_TELEMETRY);
  if (ts.length === 0) return NO_TELEMETRY;
  if (ts.length === 1) return ts[0]!;
  return {
    wsBroadcast: (s, m, b) => ts.forEach((t) => t.wsBroadcast(s, m, b)),
    wsConnected: (s, p) => ts.forEach((t) => t.wsConnected(s, p)),
    wsResync: (m, b) => ts.forEach((t) => t.wsResync(m, b)),
    wsClosed: (r, s, p) => ts.forEach((t) => t.wsClosed(r, s, p)),
    unsentClosed: (p, r) => ts.forEach((t) => t.unsentClosed(p, r)),
    wsRefused: (c) => ts.forEach((t) => t.wsRefused(c)),
    httpRequest: (r, s) => ts.forEach((t) => t.httpRequest(r, s)),
    upstreamRequest: (e, s, ms) => ts.forEach((t) => t.upstreamRequest(e, s, ms)),
    pollCycle: (ok, ms, n) => ts.forEach((t) => t.pollCycle(ok, ms, n)),
    directoryRefresh: (ms, u) => ts.forEach((t) => t.directoryRefresh(ms, u)),
    statusChanges: (n) => ts.forEach((t) => t.statusChanges(n)),
  };
}

/**
 * The Telemetry calls worth a log line that the core does not already write: a summary of every
 * poll cycle (debug) and of every request to Mattermost (trace). Connects, disconnects, refusals
 * and directory refreshes are logged where they happen, with more context.
 */
export function logTelemetry(log: Logger): Telemetry {
  return {
    ...NO_TELEMETRY,
    pollCycle(ok, ms, statusRequests) {
      if (!log.isLevelEnabled("debug")) return;
      log.debug(
        { event: "poll_cycle", ok, durationMs: Math.round(ms), statusRequests },
        ok ? "poll cycle done" : "poll cycle failed",
      );
    },
    upstreamRequest(endpoint, status, ms) {
      if (!log.isLevelEnabled("trace")) return;
      log.trace(
        { event: "upstream_request", endpoint, status, durationMs: Math.round(ms) },
        "Mattermost request",
      );
    },
  };
}
