import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * wrk (C, from Debian: `apt-get install wrk`) as the load generator for figures of the server's
 * own CPU cost: autocannon runs in Node on the same two cores and its own cost hides the
 * server's. The server's user and system CPU are read separately from /proc/<pid>/stat.
 */
export const WRK = "/usr/bin/wrk";

const CLOCK_TICKS_PER_S = 100; // Linux USER_HZ

/**
 * A process and its descendants (an instance with worker processes is a primary and its forked
 * workers), from /proc/<pid>/task/<tid>/children.
 */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue; // gone meanwhile
    }
    for (const tid of tasks) {
      try {
        const children = readFileSync(`/proc/${out[i]}/task/${tid}/children`, "utf8").trim();
        if (children) out.push(...children.split(" ").map(Number));
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return out;
}

/**
 * utime and stime of a process and its descendants, in clock ticks (fields 14 and 15 of
 * /proc/<pid>/stat, summed): with worker processes, the whole instance.
 */
export function cpuTicksOf(pid: number): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      user += Number(fields[11]);
      system += Number(fields[12]);
    } catch {
      // exited between the listing and the read
    }
  }
  return { user, system };
}

/**
 * Pins a running process and its descendants (every thread: libuv's pool and V8's helpers too)
 * to one core, so that they and wrk do not take turns on the same one. Returns false where
 * taskset is missing.
 */
export function pinTo(pid: number, core: number): boolean {
  try {
    for (const p of processTree(pid)) {
      execFileSync("taskset", ["-a", "-p", "-c", String(core), String(p)], { stdio: "ignore" });
    }
    return true;
  } catch {
    return false;
  }
}

export interface WrkOptions {
  url: string;
  serverPid: number;
  connections: number;
  durationS: number;
  /** Cycled through, one per request (a Lua script); one path is sent without a script. */
  paths: string[];
  headers?: Record<string, string>;
  /** Run wrk pinned to this core (taskset -c). */
  core?: number;
}

export interface WrkResult {
  requests: number;
  rps: number;
  /** Latency percentiles in ms (wrk --latency). */
  p50: number;
  p99: number;
  /** Answers that were not 2xx or 3xx, and socket errors (connect, read, write, timeout). */
  non2xx: number;
  errors: number;
  durationS: number;
  /** Server CPU per answered request, µs: user, system and both. */
  userUsPerRequest: number;
  systemUsPerRequest: number;
  usPerRequest: number;
  /** Answered requests per second of server CPU (user + system). */
  requestsPerCpuS: number;
  /** Share of one core the server used. */
  serverCpu: number;
}

const luaString = (s: string): string => JSON.stringify(s); // a JSON string is a valid Lua string here

function script(paths: readonly string[], headers: Record<string, string>): string {
  const hdrs = Object.entries(headers)
    .map(([k, v]) => `wrk.headers[${luaString(k)}] = ${luaString(v)}`)
    .join("\n");
  return `${hdrs}
local paths = { ${paths.map(luaString).join(", ")} }
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
`;
}

/** "1.23ms", "850.00us", "2.01s" in ms. */
function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

/** Parses wrk's report (run with --latency). */
export function parseWrk(
  out: string,
): Pick<WrkResult, "requests" | "p50" | "p99" | "non2xx" | "errors" | "durationS"> {
  const total = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
  if (!total) throw new Error(`wrk: no summary in its output:\n${out}`);
  const unit = total[3] === "ms" ? 0.001 : total[3] === "m" ? 60 : 1;
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(out);
    return m ? toMs(m[1]!) : NaN;
  };
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(total[1]),
    durationS: Number(total[2]) * unit,
    p50: pct("50"),
    p99: pct("99"),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    errors: errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

/** One wrk run against one server, its CPU read from /proc before and after. */
export async function wrk(o: WrkOptions): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), "bench-wrk-"));
  try {
    const args = ["-t1", `-c${o.connections}`, `-d${o.durationS}s`, "--latency", "--timeout", "10s"];
    if (o.paths.length > 1 || o.headers) {
      const file = join(dir, "paths.lua");
      writeFileSync(file, script(o.paths, o.headers ?? {}));
      args.push("-s", file);
    }
    args.push(`${o.url}${o.paths[0] ?? "/"}`);
    const [cmd, argv] =
      o.core === undefined ? [WRK, args] : ["taskset", ["-c", String(o.core), WRK, ...args]];
    const before = cpuTicksOf(o.serverPid);
    const t0 = performance.now();
    const out = await new Promise<string>((resolve, reject) =>
      execFile(cmd, argv, { timeout: (o.durationS + 30) * 1000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`wrk failed: ${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const wallMs = performance.now() - t0;
    const after = cpuTicksOf(o.serverPid);
    const r = parseWrk(out);
    const userMs = ((after.user - before.user) * 1000) / CLOCK_TICKS_PER_S;
    const systemMs = ((after.system - before.system) * 1000) / CLOCK_TICKS_PER_S;
    const perReq = (ms: number): number => (r.requests > 0 ? (ms * 1000) / r.requests : NaN);
    return {
      ...r,
      rps: r.requests / r.durationS,
      userUsPerRequest: perReq(userMs),
      systemUsPerRequest: perReq(systemMs),
      usPerRequest: perReq(userMs + systemMs),
      requestsPerCpuS: (r.requests * 1000) / (userMs + systemMs),
      serverCpu: (userMs + systemMs) / wallMs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
