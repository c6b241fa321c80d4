/**
 * `npm run conformance`: the suite against CONFORMANCE_MATTERMOST_URL (any Mattermost), or, with
 * CONFORMANCE_REAL=1 and no URL, against a real Mattermost this machine installs and starts for the
 * run (test/helpers/real-mattermost-cli.ts), or else against the built-in simulator.
 * The files run one at a time: several flip server-wide settings.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.js"))
  .map((f) => join(here, f));
const suite = ["--test", "--test-concurrency=1", ...files];
const real = process.env.CONFORMANCE_REAL === "1" && !process.env.CONFORMANCE_MATTERMOST_URL;
const where =
  process.env.CONFORMANCE_MATTERMOST_URL ?? (real ? "a real Mattermost started here" : "the simulator");
if (!process.env.NODE_TEST_CONTEXT) console.error(`conformance: against ${where}`);
const args = real
  ? [join(here, "../helpers/real-mattermost-cli.js"), "--rate-limit", "--", process.execPath, ...suite]
  : suite;
// `node --test dist/test/` (npm test) runs every file under a test directory, this one included:
// the suite's files run there on their own, so this runner does nothing then.
if (!process.env.NODE_TEST_CONTEXT) {
  const r = spawnSync(process.execPath, args, { stdio: "inherit" });
  process.exitCode = r.status ?? 1;
}
