import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

/** dist/src/cli/main.js, next to this compiled file's dist/test/helpers/. */
export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

/**
 * PRESENCE_WORKERS for every CLI a test starts, unless the test sets it: 1 (one process, the
 * default here whatever the host's cores), or TEST_PRESENCE_WORKERS to run the same tests
 * against an instance with worker processes (CI runs test/integration once with 2).
 */
export const TEST_WORKERS = process.env.TEST_PRESENCE_WORKERS ?? "1";

export interface LogLine {
  level: string;
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

/** The real CLI process (`outlook-presence start`), as `npm start` runs it. */
export class GatewayProcess {
  readonly logs: LogLine[] = [];
  /** Everything the process printed, for "no secret in any log line" checks. */
  output = "";
  url = "";
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  private constructor(readonly child: ChildProcess) {}

  /** `netns`: run inside that network namespace (`ip netns exec`), reached at `urlHost`. */
  static async start(
    env: Record<string, string>,
    args: string[] = [],
    place: { netns?: string; urlHost?: string } = {},
  ): Promise<GatewayProcess> {
    const argv = [process.execPath, CLI, "start", ...args];
    // `ip netns exec` execs the command: the child's pid is the gateway's.
    if (place.netns) argv.unshift("ip", "netns", "exec", place.netns);
    const child = spawn(argv[0]!, argv.slice(1), {
      env: {
        PATH: process.env.PATH ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        LOG_LEVEL: "debug",
        PRESENCE_WORKERS: TEST_WORKERS,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const gw = new GatewayProcess(child);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      gw.output += d.toString();
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          continue;
        }
        gw.logs.push(parsed);
        gw.waiters = gw.waiters.filter((w) => (w.pred(parsed) ? (w.resolve(parsed), false) : true));
      }
    });
    child.stderr!.on("data", (d: Buffer) => (gw.output += d.toString()));
    const listening = await gw.waitFor((l) => l.event === "listening", 10_000);
    gw.url = `http://${place.urlHost ?? "127.0.0.1"}:${listening.port as number}`;
    return gw;
  }

  /** Resolves with the first log line (past or future) matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching log line within ${timeoutMs} ms:\n${this.output.slice(-3000)}`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      this.child.once("exit", () => reject(new Error(`gateway exited:\n${this.output.slice(-3000)}`)));
    });
  }

  /** SIGTERM, and wait for the exit code; SIGKILL if it does not stop in time. */
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    return code;
  }
}

/**
 * Runs the CLI to completion and returns its exit code and output. A run still going after
 * `timeoutMs` is killed and rejects, saying so: a bound hit under load is not the CLI's answer.
 */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", PRESENCE_WORKERS: TEST_WORKERS, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  if (killed) {
    throw new Error(
      `runCli ${args.join(" ")}: still running after ${timeoutMs} ms, killed\n${stdout}${stderr}`,
    );
  }
  return { code, stdout, stderr };
}
