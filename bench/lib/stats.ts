/** Pure helpers for the benchmark figures (unit-tested in test/unit/bench-stats.test.ts). */

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for an empty list. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return percentileSorted(sorted, p);
}

/** Nearest-rank percentile of values already sorted ascending. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  if (p <= 0) return sorted[0]!;
  if (p >= 100) return sorted[sorted.length - 1]!;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(0, rank - 1)]!;
}

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
  return {
    n: sorted.length,
    min: sorted.length ? sorted[0]! : NaN,
    p50: percentileSorted(sorted, 50),
    p99: percentileSorted(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

/** a / b, or NaN when b is 0 or not finite. */
export function ratio(a: number, b: number): number {
  return b === 0 || !Number.isFinite(b) || !Number.isFinite(a) ? NaN : a / b;
}

/** A ratio as "0.93×". */
export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a";
}

/** Milliseconds with a precision that suits their size. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "n/a";
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

/** A count with thousands separators ("12,345"). */
export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a";
}

export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  const abs = Math.abs(n);
  if (abs < 1024) return `${Math.round(n)} B`;
  if (abs < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Per-process CPU share (0..1 of one core) from CPU seconds used over a wall-clock interval. */
export function cpuShare(cpuMs: number, wallMs: number): number {
  return wallMs > 0 ? cpuMs / wallMs : NaN;
}

/**
 * Which side of a load test saturated first. On a machine with few cores, a server that used less
 * than `threshold` of a core while the generator used more was not the bottleneck.
 */
export function boundBy(serverShare: number, generatorShare: number, threshold = 0.85): string {
  if (serverShare >= threshold) return "server CPU";
  if (generatorShare >= threshold) return "load generator CPU";
  return "neither CPU (latency / kernel)";
}

/** Splits `total` items into `parts` near-equal positive counts (larger first). */
export function split(total: number, parts: number): number[] {
  const out: number[] = [];
  const base = Math.floor(total / parts);
  let rest = total - base * parts;
  for (let i = 0; i < parts; i++) {
    const n = base + (rest > 0 ? 1 : 0);
    if (rest > 0) rest--;
    if (n > 0) out.push(n);
  }
  return out;
}
