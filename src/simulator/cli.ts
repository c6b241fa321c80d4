/** `outlook-presence simulate`: runs the Mattermost simulator until SIGINT/SIGTERM. */
import { parseArgs } from "node:util";
import { validateFault, type Fault } from "./faults.js";
import { MattermostSimulator, randomToken } from "./index.js";

export const SIMULATE_USAGE = `Usage: outlook-presence simulate [options]

Runs a Mattermost API v4 simulator (users, statuses, WebSocket events) until Ctrl+C.

Options:
  --port <n>          port to listen on (default 8065; 0 = any free port)
  --host <addr>       address to listen on (default 127.0.0.1)
  --users <n>         number of generated users (default 500)
  --token <t>         the accepted bot token (default: a random one, printed)
  --seed <n>          PRNG seed for the generated directory (default 1)
  --churn-ms <n>      change some statuses every n ms (default 3000; 0 = off)
  --churn-count <n>   statuses changed per churn tick (default 5)
  --fault <json>      inject a fault from the start, e.g. '{"kind":"ignore-page"}',
                      '{"kind":"endless-pages"}', '{"kind":"oversized","bytes":50000000}',
                      '{"kind":"http-error","status":503,"paths":["users"]}' (see src/simulator/faults.ts)
  --help              show this help
`;

export interface SimulateIo {
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** Stops the simulator like SIGINT does (for tests and embedding). */
  signal?: AbortSignal;
}

function intOption(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined) return def;
  if (!/^[0-9]+$/.test(raw)) throw new UsageError(`--${name} must be an integer, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

class UsageError extends Error {}

function parseFault(raw: string | undefined): Fault | undefined {
  if (raw === undefined) return undefined;
  let fault: Fault;
  try {
    fault = JSON.parse(raw) as Fault;
  } catch {
    throw new UsageError(`--fault must be a JSON object, got ${JSON.stringify(raw)}`);
  }
  if (typeof fault !== "object" || fault === null) throw new UsageError("--fault must be a JSON object");
  try {
    validateFault(fault);
  } catch (e) {
    throw new UsageError(`--fault: ${(e as Error).message}`);
  }
  return fault;
}

/** Returns the exit code: 0 after a clean stop, 2 for bad flags, 1 if the simulator cannot start. */
export async function runSimulate(argv: string[], io: SimulateIo = {}): Promise<number> {
  const out = io.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const err = io.err ?? ((line: string) => process.stderr.write(`${line}\n`));

  let opts: {
    port: number;
    host: string;
    users: number;
    token: string | undefined;
    seed: number;
    churnMs: number;
    churnCount: number;
    fault: Fault | undefined;
  };
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        users: { type: "string" },
        token: { type: "string" },
        seed: { type: "string" },
        "churn-ms": { type: "string" },
        "churn-count": { type: "string" },
        fault: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      out(SIMULATE_USAGE);
      return 0;
    }
    if (values.token !== undefined && values.token.trim() === "")
      throw new UsageError("--token must not be empty");
    if (values.host !== undefined && values.host.trim() === "")
      throw new UsageError("--host must not be empty");
    opts = {
      port: intOption("port", values.port, 8065, 0, 65535),
      host: values.host ?? "127.0.0.1",
      users: intOption("users", values.users, 500, 0, 1_000_000),
      token: values.token,
      seed: intOption("seed", values.seed, 1, 0, 0xffffffff),
      churnMs: intOption("churn-ms", values["churn-ms"], 3000, 0, 86_400_000),
      churnCount: intOption("churn-count", values["churn-count"], 5, 0, 1_000_000),
      fault: parseFault(values.fault),
    };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    err(`outlook-presence simulate: ${message}`);
    err("Run 'outlook-presence simulate --help' for the options.");
    return 2;
  }

  const generated = opts.token === undefined;
  const token = opts.token ?? randomToken();
  const sim = new MattermostSimulator({ token, users: opts.users, seed: opts.seed });
  let url: string;
  try {
    url = await sim.start(opts.port, opts.host);
  } catch (e) {
    err(`outlook-presence simulate: cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
    return 1;
  }
  if (opts.fault) sim.setFault(opts.fault);
  if (opts.churnMs > 0 && opts.churnCount > 0) {
    sim.startChurn({ intervalMs: opts.churnMs, changesPerTick: opts.churnCount });
  }

  const active = sim.listUsers().filter((u) => u.delete_at === 0).length;
  out(`Mattermost simulator listening on ${url}`);
  out(`  MATTERMOST_URL=${url}`);
  out(generated ? `  MATTERMOST_TOKEN=${token}` : "  MATTERMOST_TOKEN=(the value given with --token)");
  out(`  ${opts.users} generated users + the token's bot (${active} active), seed ${opts.seed}`);
  out(
    opts.churnMs > 0 && opts.churnCount > 0
      ? `  churn: ${opts.churnCount} status changes every ${opts.churnMs} ms`
      : "  churn: off",
  );
  if (opts.fault) out(`  fault: ${JSON.stringify(opts.fault)}`);
  out("Press Ctrl+C to stop.");

  await new Promise<void>((resolve) => {
    const done = (): void => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      io.signal?.removeEventListener("abort", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
    if (io.signal?.aborted) done();
    else io.signal?.addEventListener("abort", done);
  });
  await sim.stop();
  out("Simulator stopped.");
  return 0;
}
