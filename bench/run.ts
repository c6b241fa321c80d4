/**
 * The benchmark suite: `npm run bench` (every scenario) or `npm run bench -- <scenario>...`.
 * Each scenario prints ONE figure line on stdout with its ratio to a baseline measured in the same
 * run; progress and detail go to stderr (and, with --json <file>, every detail to a file).
 * See docs/PERFORMANCE.md for what each figure means and what bounds it.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { stopAll } from "./lib/procs.js";
import type { Context } from "./scenarios/context.js";
import { fanoutScenario, memoryScenario } from "./scenarios/fanout.js";
import { burstScenario, notModifiedScenario, statusScenario } from "./scenarios/status.js";
import { statusCpuScenario } from "./scenarios/status-cpu.js";
import { upstreamScenario } from "./scenarios/upstream.js";
import { hintsScenario } from "./scenarios/hints.js";
import { replicasScenario } from "./scenarios/replicas.js";
import { resyncScenario, type ResyncOptions } from "./scenarios/resync.js";
import { pingScenario } from "./scenarios/ping.js";
import { coresScenario, instanceScenario } from "./scenarios/cores.js";

type Scenario = (ctx: Context & ResyncOptions & { instanceSockets: number }) => Promise<string>;
const SCENARIOS: Record<string, Scenario> = {
  status: statusScenario,
  "status-cpu": statusCpuScenario,
  "304": notModifiedScenario,
  burst: burstScenario,
  fanout: fanoutScenario,
  cores: coresScenario,
  instance: instanceScenario,
  memory: memoryScenario,
  upstream: upstreamScenario,
  hints: hintsScenario,
  replicas: replicasScenario,
  resync: resyncScenario,
  ping: pingScenario,
};

const USAGE = `Usage: node dist/bench/run.js [scenario...] [options]

Scenarios: ${Object.keys(SCENARIOS).join(", ")} (default: all, in this order)

Options:
  --duration <s>         seconds per /status load run (default 10)
  --connections <n>      connections for status/304/status-cpu (default 100)
  --sockets <n,n>        WebSocket counts for fanout and memory; ping and cores use the first (default 10000,19000)
  --instance-sockets <n> sockets held by one 2-worker instance in instance (default 30000)
  --burst <n>            changes in the fan-out burst (default 1000)
  --providers <n>        providers in the Monday-morning burst (default 5000)
  --burst-users <n>      users they page (default 50000)
  --upstream-users <n,n> directory sizes for upstream (default 1000,10000,50000)
  --resync-sockets <n>   sockets reconnecting at once in resync (default 2000)
  --scenario-timeout <s> each scenario is abandoned after this (default 900)
  --json <file>          write every detail record to this file
`;

function ints(raw: string): number[] {
  return raw.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`not a positive integer: ${s}`);
    return n;
  });
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      duration: { type: "string", default: "10" },
      connections: { type: "string", default: "100" },
      sockets: { type: "string", default: "10000,19000" },
      burst: { type: "string", default: "1000" },
      "instance-sockets": { type: "string", default: "30000" },
      providers: { type: "string", default: "5000" },
      "burst-users": { type: "string", default: "50000" },
      "upstream-users": { type: "string", default: "1000,10000,50000" },
      "resync-sockets": { type: "string", default: "2000" },
      "scenario-timeout": { type: "string", default: "900" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const names = positionals.length > 0 ? positionals : Object.keys(SCENARIOS);
  for (const n of names) {
    if (!SCENARIOS[n]) {
      process.stderr.write(`unknown scenario "${n}"\n${USAGE}`);
      return 2;
    }
  }
  const details: Record<string, unknown> = {};
  const timeoutMs = ints(values["scenario-timeout"])[0]! * 1000;
  let failures = 0;
  for (const name of names) {
    const stops: (() => Promise<void>)[] = [];
    const ctx: Context & ResyncOptions & { instanceSockets: number } = {
      async use(p) {
        const v = await p;
        stops.push(() => v.stop());
        return v;
      },
      detail: (k, v) => {
        details[k] = v;
        process.stderr.write(`[${name}] ${k}: ${JSON.stringify(v)}\n`);
      },
      log: (msg) => process.stderr.write(`[${name}] ${msg}\n`),
      connections: ints(values.connections)[0]!,
      durationS: ints(values.duration)[0]!,
      sockets: ints(values.sockets),
      burst: ints(values.burst)[0]!,
      providers: ints(values.providers)[0]!,
      burstUsers: ints(values["burst-users"])[0]!,
      upstreamUsers: ints(values["upstream-users"]),
      resyncSockets: ints(values["resync-sockets"])[0]!,
      instanceSockets: ints(values["instance-sockets"])[0]!,
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      const line = await Promise.race([
        SCENARIOS[name]!(ctx),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not done within ${timeoutMs / 1000} s`)), timeoutMs);
        }),
      ]);
      process.stdout.write(`${line}\n`);
    } catch (err) {
      failures++;
      process.stdout.write(`${name}: FAILED: ${(err as Error).message}\n`);
      process.stderr.write(`${(err as Error).stack}\n`);
    } finally {
      clearTimeout(timer);
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
      await stopAll();
    }
  }
  if (values.json) writeFileSync(values.json, `${JSON.stringify(details, null, 2)}\n`);
  return failures > 0 ? 1 : 0;
}

process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));
process.once("SIGTERM", () => void stopAll().then(() => process.exit(143)));
main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
