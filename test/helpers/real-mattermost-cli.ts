/**
 * Runs a command next to a real Mattermost server (one server for the whole command, e.g. CI's
 * conformance suite and end-to-end test):
 *
 *   node dist/test/helpers/real-mattermost-cli.js [--rate-limit] [--users N] -- <command> [args…]
 *
 * The command gets MM_REAL_* (see REAL_ENV) and the conformance suite's CONFORMANCE_MATTERMOST_URL,
 * CONFORMANCE_ADMIN_TOKEN (the system admin's session), CONFORMANCE_GATEWAY_TOKEN (the
 * system-admin bot's), CONFORMANCE_BOT_TOKEN (the plain bot's)
 * and, with --rate-limit, CONFORMANCE_RATE_LIMIT_HEADER. Exit code: the command's; 3 (with a loud SKIP line) when the server
 * cannot be installed here, without running the command; 1 when it was installed but did not start.
 * The server is stopped and its database dropped on exit, also on SIGINT/SIGTERM.
 */
import { spawn } from "node:child_process";
import {
  INSTALL_SKIPPED,
  realMattermostEnv,
  startRealMattermost,
  type RateLimitOptions,
} from "./real-mattermost.js";

/**
 * Per token: enough for the suite's setup and a gateway polling. Low enough that the 429 assertion
 * (unauthenticated pings with a header value of its own) outruns the refill on a loaded machine: at
 * 1,000 pings/s it needs about 0.3 s, at the 140/s seen under load about 2.2 s. With 200/s and
 * a burst of 1,000 it once sent 5,000 pings in 35 s without a 429.
 */
export const CI_RATE_LIMIT: RateLimitOptions = {
  perSec: 50,
  maxBurst: 200,
  header: "X-Conformance-Bucket",
};

async function main(argv: string[]): Promise<number> {
  const sep = argv.indexOf("--");
  const flags = sep < 0 ? argv : argv.slice(0, sep);
  const cmd = sep < 0 ? [] : argv.slice(sep + 1);
  if (cmd.length === 0) {
    console.error("usage: real-mattermost-cli [--rate-limit] [--users N] -- <command> [args…]");
    return 2;
  }
  const usersAt = flags.indexOf("--users");
  const users = usersAt >= 0 ? Number(flags[usersAt + 1]) : undefined;
  const rateLimit = flags.includes("--rate-limit") ? CI_RATE_LIMIT : undefined;
  const log = (l: string): void => console.error(`[real-mattermost] ${l}`);

  let result;
  try {
    result = await startRealMattermost({ users, rateLimit, log });
  } catch (err) {
    console.error(`[real-mattermost] FAILED to start an installed server: ${(err as Error).message}`);
    return 1;
  }
  if (!result.ok) {
    console.error("************************************************************");
    console.error(`SKIP: no real Mattermost: ${result.skip}`);
    console.error("************************************************************");
    return INSTALL_SKIPPED;
  }
  const server = result.server;
  const env = {
    ...process.env,
    ...realMattermostEnv(server),
    CONFORMANCE_MATTERMOST_URL: server.url,
    CONFORMANCE_ADMIN_TOKEN: server.adminToken,
    CONFORMANCE_GATEWAY_TOKEN: server.botToken,
    CONFORMANCE_BOT_TOKEN: server.plainBotToken,
    ...(rateLimit ? { CONFORMANCE_RATE_LIMIT_HEADER: rateLimit.header } : {}),
  };
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: "inherit", env });
  const forward = (sig: NodeJS.Signals): void => {
    child.kill(sig);
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const code = await new Promise<number>((resolve) => {
    child.once("exit", (c, s) => resolve(c ?? (s ? 128 + 15 : 1)));
    child.once("error", (err) => {
      console.error(`[real-mattermost] cannot run ${cmd[0]}: ${err.message}`);
      resolve(127);
    });
  });
  log(`command exited ${code}; stopping Mattermost (log: ${server.logFile})`);
  await server.stop();
  return code;
}

// `node --test dist/test/` (npm test) runs every file under a test directory, this one included:
// as a test file it has nothing to do.
if (!process.env.NODE_TEST_CONTEXT) process.exitCode = await main(process.argv.slice(2));
