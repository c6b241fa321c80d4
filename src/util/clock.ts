/**
 * Wall time and one-shot timers as a component sees them, so that a test drives them. The system
 * clock looks the globals up on every call, so `node:test` mock timers
 * (`t.mock.timers.enable({ apis: ["setTimeout", "Date"] })`) drive it as well as a fake clock.
 */
export interface Clock {
  /** ms since epoch. */
  now(): number;
  /** Returns a handle only ever given back to this clock's clearTimeout. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
};
