/**
 * The time and timers the socket pools use. The default reads the global timers at each call, not
 * once at import, so `node:test`'s mock timers (`t.mock.timers`, which replace the globals) drive
 * the ping rounds, keepalives and auth timeouts in unit tests without sleeping.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(timer: NodeJS.Timeout | undefined): void;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clearInterval(timer: NodeJS.Timeout | undefined): void;
  /** Runs `fn` after pending I/O: how long passes (a ping round's next slice) yield the loop. */
  setImmediate(fn: () => void): void;
}

/** The process's clock; every timer is unref'd (a pool's timers never keep the process alive). */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => clearTimeout(timer),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (timer) => clearInterval(timer),
  setImmediate: (fn) => void setImmediate(fn),
};
