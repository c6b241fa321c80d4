import autocannon from "autocannon";
import { cpuMsOf, machineBusyMs } from "./procs.js";

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  durationS: number;
  /** Share of one core used by the server process and by this (load generator) process. */
  serverCpu: number;
  generatorCpu: number;
  /** Cores' worth of CPU used meanwhile by every other process on the machine (shared machine). */
  othersCpu: number;
  /** Server CPU per answered request, in µs. */
  serverUsPerRequest: number;
  codes: Record<string, number>;
}

export interface LoadOptions {
  url: string;
  serverPid: number;
  connections: number;
  /** Seconds; ignored when amount is set. */
  duration?: number;
  amount?: number;
  /** Cycled through by each connection. */
  paths: string[];
  headers?: Record<string, string>;
  timeoutS?: number;
}

/** autocannon in this process against one server, with both processes' CPU measured. */
export async function load(o: LoadOptions): Promise<LoadResult> {
  const cpu0 = cpuMsOf(o.serverPid);
  const self0 = process.cpuUsage();
  const machine0 = machineBusyMs();
  const t0 = performance.now();
  const result = await autocannon({
    url: o.url,
    connections: o.connections,
    ...(o.amount ? { amount: o.amount } : { duration: o.duration ?? 10 }),
    timeout: o.timeoutS ?? 30,
    headers: o.headers,
    requests: o.paths.map((path) => ({ method: "GET", path })),
  });
  const wallMs = performance.now() - t0;
  const serverCpuMs = cpuMsOf(o.serverPid) - cpu0;
  const self = process.cpuUsage(self0);
  const machineMs = machineBusyMs() - machine0;
  const selfMs = (self.user + self.system) / 1000;
  const answered = result.requests.total;
  const codes: Record<string, number> = {};
  for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) codes[code] = v.count ?? 0;
  return {
    rps: answered / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: answered,
    non2xx: result.non2xx,
    errors: result.errors,
    durationS: result.duration,
    serverCpu: serverCpuMs / wallMs,
    generatorCpu: selfMs / wallMs,
    othersCpu: Math.max(0, machineMs - serverCpuMs - selfMs) / wallMs,
    serverUsPerRequest: answered > 0 ? (serverCpuMs * 1000) / answered : NaN,
    codes,
  };
}
