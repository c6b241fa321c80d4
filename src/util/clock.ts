/**
 * Wall time and timers as a component sees them, so that a test drives them. The clocks below
 * look the globals up on every call, not once at import, so `node:test` mock timers
 * (`t.mock.timers.enable(...)`, which replace the globals) drive them without sleeping: the
 * poller's cycles and hints, the socket pool's ping rounds, keepalives and auth timeouts.
 */
export interface Clock {
  /** ms since epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(timer: NodeJS.Timeout | undefined): void;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clearInterval(timer: NodeJS.Timeout | undefined): void;
  /** Runs `fn` after pending I/O: how long passes (a ping round's next slice) yield the loop. */
  setImmediate(fn: () => void): void;
}

/** The process's clock, its timers as the globals make them. */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer),
  setImmediate: (fn) => void setImmediate(fn),
};

/**
 * The process's clock for background work that must never keep the process alive on its own
 * (the socket pools' timers): every timer is unref'd.
 */
export const BACKGROUND_CLOCK: Clock = {
  ...SYSTEM_CLOCK,
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
};
