/**
 * `npm run test:network`: makes the namespaces of topology.ts, runs test/network/*.test.js inside
 * the `ctl` namespace, and removes every namespace (and any process left in one) at the end,
 * also when a test fails or the run is interrupted. Outside CI it skips, saying why, when
 * namespaces cannot be made.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { cannotMakeNamespaces, create, destroy, ns, removeStale } from "./topology.js";

const dir = fileURLToPath(new URL(".", import.meta.url));

async function main(): Promise<number> {
  // `node --test dist/test/` (npm test) runs every file under a test directory, this one too:
  // the namespaces are made only by `npm run test:network`.
  if (process.env.NODE_TEST_CONTEXT) return 0;
  const why = cannotMakeNamespaces();
  if (why) {
    if (process.env.CI) {
      process.stderr.write(`test:network cannot run: ${why}\n`);
      return 1;
    }
    process.stdout.write(`test:network skipped: ${why}\n`);
    return 0;
  }
  const stale = removeStale();
  if (stale.length > 0) process.stdout.write(`removed stale namespaces: ${stale.join(" ")}\n`);
  // `-- partitions --test-name-pattern=follower`: file names to run, and node --test flags.
  const flags = process.argv.slice(2).filter((a) => a.startsWith("--"));
  const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".test.js"))
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .map((f) => `${dir}${f}`);
  let child: ReturnType<typeof spawn> | undefined;
  const stop = () => child?.kill("SIGTERM");
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    create();
    child = spawn(
      "ip",
      ["netns", "exec", ns("ctl"), process.execPath, "--test", "--test-concurrency=1", ...flags, ...files],
      { stdio: "inherit", env: { ...process.env, OPNF_INSIDE: "1" } },
    );
    const code = await new Promise<number>((resolve) =>
      child!.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0))),
    );
    return code;
  } finally {
    destroy();
  }
}

process.exitCode = await main();
