import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Every child this benchmark started, so they can be stopped by pid (and only those). */
const children = new Set<ChildProcess>();

/** dist/bench/hosts/<name>.js, next to this compiled file's dist/bench/lib/. */
export function hostScript(name: string): string {
  return fileURLToPath(new URL(`../hosts/${name}.js`, import.meta.url));
}

/** dist/src/cli/main.js */
export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export interface Host {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Sends one IPC command and resolves with the first reply of `type` (or rejects after timeoutMs). */
  ask<T = Record<string, unknown>>(msg: Record<string, unknown>, type: string, timeoutMs: number): Promise<T>;
  /** Resolves with the next message of `type`. */
  next<T = Record<string, unknown>>(type: string, timeoutMs: number): Promise<T>;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  stop(): Promise<void>;
}

export interface HostOptions {
  env?: Record<string, string>;
  execArgv?: string[];
  /** "ignore" drops the child's stdout (its logs); stderr is always shown. */
  stdout?: "ignore" | "inherit";
}

/** Forks a Node script with an IPC channel and waits for its `{type:"ready"}` message. */
export async function startHost(
  script: string,
  args: string[],
  opts: HostOptions = {},
  readyTimeoutMs = 60_000,
): Promise<Host & { ready: Record<string, unknown> }> {
  const child = fork(script, args, {
    // A clean environment: the gateway must not pick up PRESENCE_* settings from the caller's shell.
    env: { PATH: process.env.PATH ?? "", ...opts.env },
    execArgv: opts.execArgv ?? [],
    stdio: ["ignore", opts.stdout ?? "ignore", "inherit", "ipc"],
    serialization: "advanced",
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  const waiters: { type: string; resolve: (m: Record<string, unknown>) => void }[] = [];
  const inbox: Record<string, unknown>[] = [];
  child.on("message", (m: Record<string, unknown>) => {
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
    else inbox.push(m);
  });
  const next = <T>(type: string, timeoutMs: number): Promise<T> => {
    const j = inbox.findIndex((m) => m.type === type);
    if (j >= 0) return Promise.resolve(inbox.splice(j, 1)[0] as T);
    return new Promise<T>((resolve, reject) => {
      const w = {
        type,
        resolve: (m: Record<string, unknown>) => {
          clearTimeout(timer);
          child.off("exit", onExit);
          resolve(m as T);
        },
      };
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`${script} exited (${code}) while waiting for "${type}"`));
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        child.off("exit", onExit);
        reject(new Error(`${script}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      child.once("exit", onExit);
      waiters.push(w);
    });
  };
  const host: Host = {
    child,
    pid: child.pid!,
    next,
    ask(msg, type, timeoutMs) {
      const reply = next<never>(type, timeoutMs);
      child.send(msg);
      return reply;
    },
    stop: () => stopChild(child),
  };
  const ready = await next<Record<string, unknown>>("ready", readyTimeoutMs);
  return { ...host, ready };
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** Stops every child still running (by its pid), e.g. on error or Ctrl-C. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

/** Registers the child for stopAll (for children not started with startHost). */
export function track(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
}

const CLOCK_TICKS_PER_S = 100; // Linux USER_HZ

/** CPU time (user + system) of a process, in ms, from /proc (Linux). */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_S;
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Measures CPU used by several processes over `fn`. */
export async function withCpu<T>(
  pids: Record<string, number>,
  fn: () => Promise<T>,
): Promise<{ result: T; wallMs: number; cpuMs: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMsOf(pid)]));
  const started = performance.now();
  const result = await fn();
  const wallMs = performance.now() - started;
  const cpuMs = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [k, cpuMsOf(pid) - (before[k] ?? 0)]),
  );
  return { result, wallMs, cpuMs };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rejects if `p` does not settle within ms. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
    }),
  ]);
}

/** Busy CPU time of the whole machine (all cores, all processes), in ms, from /proc/stat. */
export function machineBusyMs(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return (busy * 1000) / CLOCK_TICKS_PER_S;
}
