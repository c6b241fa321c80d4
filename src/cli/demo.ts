import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import { Gateway } from "../gateway.js";
import { SecretScrubber, createLogger } from "../log.js";
import { MattermostSimulator } from "../simulator/index.js";
import { newSecret } from "./secret.js";

const HELP = `Usage: outlook-presence demo [--users N] [--port P] [--host H] [--poll-interval-ms MS] [--churn-ms MS]

Starts a simulated Mattermost with N users whose statuses change every few seconds, and the
gateway in front of it, then prints what to put in the Outlook provider's config.json and a line
per status change. Stop with Ctrl-C.
  --users N             simulated users (default 500)
  --port P              gateway port (default $PORT, else 8080; 0 picks a free one)
  --host H              gateway address (default 127.0.0.1; 0.0.0.0 to reach it from a Windows desktop)
  --poll-interval-ms    how often the gateway polls (default 1000)
  --churn-ms            how often the simulator changes statuses (default 3000)
  --duration-ms         stop by itself after this long (default: run until Ctrl-C)
`;

export async function runDemo(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args: argv,
      options: {
        users: { type: "string", default: "500" },
        port: { type: "string", default: process.env.PORT ?? "8080" },
        host: { type: "string", default: "127.0.0.1" },
        "poll-interval-ms": { type: "string", default: "1000" },
        "churn-ms": { type: "string", default: "3000" },
        "duration-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`outlook-presence demo: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const num = (name: string, v: string | undefined, min: number): number | undefined => {
    const n = Number(v);
    if (v !== undefined && /^\d+$/.test(v) && n >= min) return n;
    process.stderr.write(
      `outlook-presence demo: --${name} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}\n`,
    );
    return undefined;
  };
  const users = num("users", flags.users, 1);
  const churnMs = num("churn-ms", flags["churn-ms"], 100);
  const duration = flags["duration-ms"] === undefined ? 0 : num("duration-ms", flags["duration-ms"], 1);
  if (users === undefined || churnMs === undefined || duration === undefined) return 2;

  const token = newSecret();
  const secret = newSecret();
  const sim = new MattermostSimulator({ token, users, seed: 42 });
  const mmUrl = await sim.start(0, "127.0.0.1");

  let config;
  try {
    config = loadConfig(
      ["--port", flags.port!, "--host", flags.host!, "--poll-interval-ms", flags["poll-interval-ms"]!],
      {
        MATTERMOST_URL: mmUrl,
        MATTERMOST_TOKEN: token,
        PRESENCE_SECRET: secret,
        LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
      },
    ).config;
  } catch (err) {
    await sim.stop();
    process.stderr.write(`outlook-presence demo: ${(err as Error).message}\n`);
    return 2;
  }
  const scrubber = new SecretScrubber();
  scrubber.set([token]); // the demo prints its secret on purpose; the token stays hidden
  const gateway = new Gateway(config, createLogger(config.logLevel, scrubber));
  let url: string;
  try {
    url = await gateway.start();
  } catch (err) {
    await sim.stop();
    process.stderr.write(
      `outlook-presence demo: cannot listen on ${config.host}:${config.port} (${(err as NodeJS.ErrnoException).code}); try --port 0\n`,
    );
    return 1;
  }
  gateway.snapshot.onChanges((changes) => {
    for (const c of changes) {
      process.stdout.write(
        `${new Date(c.at).toISOString().slice(11, 19)}  ${c.email.padEnd(32)} ${c.status}\n`,
      );
    }
  });
  const stopChurn = sim.startChurn({ intervalMs: churnMs, changesPerTick: 5 });

  process.stdout.write(
    [
      `Simulated Mattermost with ${users} users: ${mmUrl}`,
      `Gateway: ${url}`,
      "",
      "Outlook provider config.json:",
      JSON.stringify(
        {
          MattermostServerURL: url,
          MattermostSecret: secret,
          MattermostWebsocketReconnectionTimeoutInSeconds: "30",
        },
        null,
        2,
      ),
      "",
      `Try: curl '${url}/plugins/com.mattermost.outlook-presence/api/v1/status?secret=${secret}&page=0'`,
      `Admin page: ${url}/admin?token=${secret}`,
      `Live view:  npx outlook-presence watch --url ${url} --secret ${secret}`,
      "Status changes (Ctrl-C to stop):",
      "",
    ].join("\n"),
  );

  return new Promise<number>((resolve) => {
    let done = false;
    const stop = () => {
      if (done) return;
      done = true;
      stopChurn();
      void gateway
        .stop(1000)
        .then(() => sim.stop())
        .then(() => resolve(0));
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    if (duration > 0) setTimeout(stop, duration).unref();
  });
}
