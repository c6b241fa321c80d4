/**
 * What the core reports as it works. The core calls these at the points where things happen; the
 * metrics module (or a test) implements them. Calls must be cheap: several are on hot paths
 * (once per broadcast, not per socket).
 */
export interface Telemetry {
  /** A batch written to `sockets` sockets: `messages` messages in `bytes` bytes per socket. */
  wsBroadcast(sockets: number, messages: number, bytes: number): void;
  /** A WebSocket accepted; `sockets`: now open of that protocol (compat, v2). */
  wsConnected(sockets: number, protocol: string): void;
  /** Part of a resync written to one socket: `messages` status messages in `bytes` bytes. */
  wsResync(messages: number, bytes: number): void;
  /**
   * A WebSocket gone, either protocol (compat, v2); reason: client, slow_consumer, dead_peer,
   * abuse, shutdown, ... (src/http/sockets/close-codes.ts).
   */
  wsClosed(reason: string, sockets: number, protocol: string): void;
  /**
   * A socket closed by the unsent-bytes cap (also reported to wsClosed once it is gone).
   * protocol: compat, v2; reason: slow_consumer, slow_catch_up, unsent_total.
   */
  unsentClosed(protocol: string, reason: string): void;
  /** An upgrade refused before the handshake: invalid_secret, not_ready, too_many_connections, ... */
  wsRefused(code: string): void;
  httpRequest(route: string, status: number): void;
  upstreamRequest(endpoint: string, status: number | "error", ms: number): void;
  pollCycle(ok: boolean, ms: number, statusRequests: number): void;
  directoryRefresh(ms: number, users: number): void;
  /** A batch of status changes published to this instance's clients (polled or replicated). */
  statusChanges(count: number): void;
}

export const NO_TELEMETRY: Telemetry = {
  wsBroadcast: () => undefined,
  wsConnected: () => undefined,
  wsResync: () => undefined,
  wsClosed: () => undefined,
  unsentClosed: () => undefined,
  wsRefused: () => undefined,
  httpRequest: () => undefined,
  upstreamRequest: () => undefined,
  pollCycle: () => undefined,
  directoryRefresh: () => undefined,
  statusChanges: () => undefined,
};
