/**
 * A host's memory after two full GCs, broken down so that RSS growth can be attributed:
 * process.memoryUsage(), the V8 heap's committed size per space (new space is committed memory
 * that heapUsed does not count), and the kernel's anonymous vs file-backed RSS.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { getHeapSpaceStatistics } from "node:v8";

/** How long the sample waits after the full GCs (see memSample). */
const SETTLE_MS = 1000;

export interface MemSample extends NodeJS.MemoryUsage {
  gc: boolean;
  /** Committed bytes per V8 heap space (space_size). */
  spaces: Record<string, number>;
  /** Sum of `spaces`: the heap's share of RSS at most. */
  heapCommitted: number;
  /** From /proc/self/status, bytes (0 where not available). */
  rssAnon: number;
  rssFile: number;
  /** Resident bytes of the `[heap]` mapping: glibc's main malloc arena (the main thread's native allocations). */
  mallocMain: number;
  /** Threads of the process (each may have its own malloc arena). */
  threads: number;
}

/** Rss of the `[heap]` mapping in /proc/self/smaps, bytes. */
function mainArenaRss(): number {
  let smaps = "";
  try {
    smaps = readFileSync("/proc/self/smaps", "utf8");
  } catch {
    return 0;
  }
  const at = smaps.indexOf("[heap]");
  if (at < 0) return 0;
  const m = /^Rss:\s+(\d+) kB/m.exec(smaps.slice(at));
  return m ? Number(m[1]) * 1024 : 0;
}

function statusField(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)( kB)?`, "m").exec(text);
  return m ? Number(m[1]) * (m[2] ? 1024 : 1) : 0;
}

/**
 * Short-lived garbage enough to grow V8's new space to its maximum and touch its pages. The
 * gateway gets there while it loads its directory; a bare server only during the connection
 * storm, which would then count ~32 MiB of new space as per-socket growth of the bare server only.
 */
function churn(): number {
  let kept = 0;
  for (let i = 0; i < 2_000_000; i++) {
    const o = { i, s: `x${i}` };
    kept += o.s.length;
  }
  return kept;
}

/** `warm`: first grow the new space as the gateway's startup does (see churn), so growth compares alike. */
export async function memSample(warm = false): Promise<MemSample> {
  if (warm) churn();
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  // V8 hands the pages a full GC emptied to a background unmapper; sampled at once, they are still
  // in RSS some runs and not others. Give it time, then collect again.
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  gc?.();
  const spaces: Record<string, number> = {};
  let heapCommitted = 0;
  for (const s of getHeapSpaceStatistics()) {
    spaces[s.space_name] = s.space_size;
    heapCommitted += s.space_size;
  }
  // BENCH_SMAPS_DIR: also keep a copy of /proc/self/smaps per sample, to compare mappings by hand.
  if (process.env.BENCH_SMAPS_DIR) {
    try {
      writeFileSync(
        `${process.env.BENCH_SMAPS_DIR}/${process.pid}-${Date.now()}.smaps`,
        readFileSync("/proc/self/smaps"),
      );
    } catch {
      // a debugging aid only
    }
  }
  let status = "";
  try {
    status = readFileSync("/proc/self/status", "utf8");
  } catch {
    // not Linux: the kernel's split is left at 0
  }
  return {
    ...process.memoryUsage(),
    gc: gc !== undefined,
    spaces,
    heapCommitted,
    rssAnon: statusField(status, "RssAnon"),
    rssFile: statusField(status, "RssFile"),
    mallocMain: mainArenaRss(),
    threads: statusField(status, "Threads"),
  };
}
