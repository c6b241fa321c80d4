/** What every scenario gets from the runner. */
export interface Context {
  /** Registers something to stop when the scenario ends (even on failure); returns it. */
  use<T extends { stop(): Promise<void> }>(p: Promise<T>): Promise<T>;
  /** A detail record for the JSON output (stderr / --json), not the figure line. */
  detail(name: string, value: unknown): void;
  /** Progress on stderr. */
  log(msg: string): void;
  connections: number;
  durationS: number;
  /** Socket counts for fanout/memory. */
  sockets: number[];
  /** Burst size for fanout. */
  burst: number;
  /** Providers for the Monday-morning burst. */
  providers: number;
  /** Directory size they page (default 50,000). */
  burstUsers: number;
  /** Directory sizes for upstream. */
  upstreamUsers: number[];
}
