#!/usr/bin/env node
import { runDemo } from "./demo.js";
import { runDoctor } from "./doctor.js";
import { runSecret } from "./secret.js";
import { runStart } from "./start.js";
import { runWatch } from "./watch.js";
import { runSimulate } from "../simulator/cli.js";
import { settingsHelp } from "../config/load.js";
import { VERSION } from "../version.js";

const USAGE = `outlook-presence ${VERSION}: Mattermost presence for Outlook, served to the Mattermost Outlook Presence Provider

Usage: outlook-presence <command> [flags]

Commands:
  start       run the gateway (settings from flags, environment variables and *_FILE files)
  demo        run a built-in Mattermost simulator and the gateway, and print what to put
              in the provider's config.json  [--users N] [--port P] [--poll-interval-ms MS]
  doctor      check the configured Mattermost (reachable, token, emails, statuses, poll cost,
              where the secret comes from) and, with --gateway URL, the gateway; one
              PASS/WARN/FAIL line per check; --end-to-end also changes a status in
              Mattermost, waits for it on the gateway's /ws and puts it back
              [--user NAME] [--margin-ms MS] (see: outlook-presence doctor --help)
  simulate    run only the Mattermost simulator (see: outlook-presence simulate --help)
  secret      print a new random secret for PRESENCE_SECRET
  watch       live presence from a gateway's API v2: a table on a terminal, a line per change
              when piped  --url URL --secret S [--email E ...] [--duration-ms MS]
  help        this text

Settings for start (a flag wins over its environment variable; secrets may also come from a file):
${settingsHelp()}

Flags on the command line are visible to other local users in the process list: prefer
MATTERMOST_TOKEN_FILE and PRESENCE_SECRET_FILE for secrets.

Exit codes: 0 stopped cleanly, 1 failed at run time, 2 bad usage or configuration.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "start":
      return runStart(rest);
    case "demo":
      return runDemo(rest);
    case "doctor":
      return runDoctor(rest);
    case "simulate":
      return runSimulate(rest);
    case "secret":
      return runSecret(rest);
    case "watch":
      return runWatch(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case "--version":
    case "-v":
      process.stdout.write(`${VERSION}\n`);
      return 0;
    default:
      process.stderr.write(`outlook-presence: unknown command "${command}"; see outlook-presence --help\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`outlook-presence: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
