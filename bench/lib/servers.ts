import { spawn } from "node:child_process";
import { CLI, cpuMsOf, hostScript, sleep, startHost, stopChild, track, type Host } from "./procs.js";

export const TOKEN = "benchtokenbenchtokenbenchx";
export const SECRET = "benchsecret-0123456789";
export const WS_PATH = "/plugins/com.mattermost.outlook-presence/api/v1/ws";
export const STATUS_PATH = "/plugins/com.mattermost.outlook-presence/api/v1/status";

/** Files one process may hold open here (`ulimit -Hn`): no server process can hold more sockets. */
export const MAX_SOCKETS_PER_PROCESS = 19_000;

export interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startSim(users: number): Promise<Host & { url: string }> {
  const h = await startHost(
    hostScript("sim-host"),
    [String(users)],
    { env: { BENCH_TOKEN: TOKEN } },
    120_000,
  );
  return { ...h, url: h.ready.url as string };
}

/** Gateway settings for a benchmark, as environment variables (defaults unless overridden). */
export function gatewayEnv(simUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MATTERMOST_URL: simUrl,
    MATTERMOST_TOKEN: TOKEN,
    PRESENCE_SECRET: SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "info",
    // One process unless a scenario asks for workers (the default is one per core).
    PRESENCE_WORKERS: "1",
    ...extra,
  };
}

/**
 * The gateway as deployed: `node dist/src/cli/main.js start`, its logs read for the port, then
 * `/readyz` polled until the first snapshot is loaded.
 */
export async function startGatewayProcess(
  env: Record<string, string>,
  readyTimeoutMs = 120_000,
  /** Another build's dist/src/cli/main.js, for a before/after comparison in one run. */
  cli = CLI,
): Promise<Server> {
  const child = spawn(process.execPath, [cli, "start"], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  track(child);
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("gateway: no listening line within 30 s")), 30_000);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = /"event":"listening"[^\n]*"port":(\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.stdout!.resume(); // keep draining its logs
        resolve(Number(m[1]));
      } else if (buf.length > 1e6) buf = buf.slice(-10_000);
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`gateway exited (${code}) before listening`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`gateway not ready within ${readyTimeoutMs} ms`);
    }
    await sleep(100);
  }
  return { url, pid: child.pid!, stop: () => stopChild(child) };
}

/** The `Gateway` class in a child process with hooks (bench/hosts/gateway-host.ts). */
export async function startGatewayHost(
  env: Record<string, string>,
  execArgv: string[] = [],
): Promise<Host & { url: string }> {
  const h = await startHost(
    hostScript("gateway-host"),
    [],
    { env, execArgv: ["--expose-gc", ...execArgv] },
    180_000,
  );
  return { ...h, url: h.ready.url as string };
}

/** An instance with worker processes (bench/hosts/cluster-host.ts): set PRESENCE_WORKERS in `env`. */
export async function startClusterHost(env: Record<string, string>): Promise<Host & { url: string }> {
  const h = await startHost(hostScript("cluster-host"), [], { env }, 180_000);
  return { ...h, url: h.ready.url as string };
}

export async function startBareWs(
  env: Record<string, string> = {},
  execArgv: string[] = [],
): Promise<Host & { url: string }> {
  const h = await startHost(hostScript("bare-ws-host"), [], { env, execArgv: ["--expose-gc", ...execArgv] });
  return { ...h, url: h.ready.url as string };
}

export async function startHttpBaseline(
  mode: "ceiling" | "naive",
  load: Record<string, unknown>,
): Promise<Host & { url: string }> {
  const h = await startHost(hostScript("http-baseline"), [mode], { env: { BENCH_SECRET: SECRET } });
  await h.ask({ cmd: "load", ...load }, "loaded", 60_000);
  return { ...h, url: h.ready.url as string };
}

let nextSource = 2;
/**
 * A fresh loopback source address per client process (127.0.0.2, 127.0.0.3, …): each gets its own
 * ~28k ephemeral ports, and sockets of an earlier run still in TIME_WAIT never collide.
 */
export function nextSourceAddress(): string {
  const n = nextSource++ - 2;
  return `127.0.${Math.floor(n / 253) % 256}.${(n % 253) + 2}`;
}

export interface Clients {
  hosts: Host[];
  connected: number;
  failed: number;
  pids: number[];
  stop(): Promise<void>;
}

/** `count` WebSocket clients spread over `processes` child processes, each with its own source address. */
export async function startClients(wsUrl: string, count: number, processes: number): Promise<Clients> {
  const per = Math.ceil(count / processes);
  const starts: Promise<Host & { ready: Record<string, unknown> }>[] = [];
  for (let left = count; left > 0; left -= per) {
    const n = Math.min(per, left);
    starts.push(startHost(hostScript("ws-clients"), [wsUrl, String(n), nextSourceAddress()], {}, 180_000));
  }
  const hosts = await Promise.all(starts);
  let connected = 0;
  let failed = 0;
  for (const h of hosts) {
    connected += h.ready.connected as number;
    failed += h.ready.failed as number;
  }
  return {
    hosts,
    connected,
    failed,
    pids: hosts.map((h) => h.pid),
    stop: async () => void (await Promise.all(hosts.map((h) => h.stop()))),
  };
}

export function cpuOfAll(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuMsOf(pid);
  return sum;
}
