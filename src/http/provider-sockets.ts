/** One open provider socket as the admin page lists it (a read-only copy, made when asked). */
export interface ProviderSocket {
  /** The client's address (X-Forwarded-For from a trusted proxy, else the peer). */
  readonly address: string;
  /** `address:port`, as the connect and disconnect log lines name it. */
  readonly remote: string;
  /** `compat`: the old plugin's `/ws`; `v2`: `/api/v2/stream`. */
  readonly protocol: "compat" | "v2";
  /** ms since the Unix epoch. */
  readonly connectedAt: number;
  /** WebSocket messages written to it (statuses on `/ws`; any message on v2). */
  readonly sent: number;
}
