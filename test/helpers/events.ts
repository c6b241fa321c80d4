// Captured when this module loads, before any test enables mock timers: the deadlines below are
// real time, so a test whose timers are mocked still fails instead of hanging.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** A `subscribe(listener) => unsubscribe` source of events (PresenceSync.onEvent, snapshot.onChanges). */
export type Subscribe<T> = (fn: (e: T) => void) => () => void;

/**
 * The first event from `subscribe` that satisfies `pred`, listened for from this call on. Rejects
 * after `timeoutMs` of real time naming `what`: a bound, never a wait that something happens by then.
 */
export function nextEvent<T>(
  subscribe: Subscribe<T>,
  pred: (e: T) => boolean = () => true,
  what = "event",
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = realSetTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const unsubscribe = subscribe((e) => {
      if (!pred(e)) return;
      realClearTimeout(timer);
      unsubscribe();
      resolve(e);
    });
  });
}

/** The `n`-th event from `subscribe` (from this call on) that satisfies `pred`; bounded like nextEvent. */
export async function nthEvent<T>(
  subscribe: Subscribe<T>,
  n: number,
  pred: (e: T) => boolean = () => true,
  what = "event",
  timeoutMs = 10_000,
): Promise<T> {
  let seen = 0;
  return nextEvent(subscribe, (e) => pred(e) && ++seen >= n, `${n} × ${what}`, timeoutMs);
}

/** Every event from `subscribe`, in order, from this call on (`stop` ends the recording). */
export function record<T>(subscribe: Subscribe<T>): { events: T[]; stop: () => void } {
  const events: T[] = [];
  const stop = subscribe((e) => events.push(e));
  return { events, stop };
}
