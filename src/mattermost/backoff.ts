/**
 * Exponential backoff with jitter: the n-th consecutive failure waits a random time between
 * half and all of min(max, base × 2^(n-1)), so replicas and restarts do not retry in step.
 */
export function backoffDelay(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
