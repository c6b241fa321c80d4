import {
  ConfigError,
  MAKE_A_SECRET,
  checkedSecrets,
  loadConfig,
  secretWeakness,
  weakSecretProblems,
  type Config,
} from "../config/load.js";
import { COMPAT_BASE } from "../http/compat.js";
import { redactSecrets } from "../log.js";
import { jsonUpTo, textUpTo } from "../mattermost/body.js";
import {
  BODY_LIMITS,
  MAX_IDS_PER_STATUS_REQUEST,
  MattermostClient,
  type DirectoryUser,
} from "../mattermost/client.js";
import { readDirectory } from "../mattermost/directory.js";
import { UpstreamError } from "../mattermost/errors.js";
import { PluginSettingsError, fetchPluginSettings } from "../mattermost/plugin-settings.js";
import { DEFAULT_MARGIN_MS, checkEndToEnd, type EndToEndOptions } from "./end-to-end.js";

/** A `/status` page: {"user_id","email","status"} at most a few hundred bytes a user, 10,000 users. */
const GATEWAY_PAGE_LIMIT = 16 * 1024 * 1024;

const HELP = `Usage: outlook-presence doctor [--gateway URL [--end-to-end [--user NAME] [--margin-ms MS]]] [settings flags]

Checks the configured Mattermost (MATTERMOST_URL, MATTERMOST_TOKEN, from flags, the environment or
*_FILE files, as start reads them) and prints one line per check: PASS, WARN, FAIL or SKIP, and
what to do. It always checks that the secret can be had: PRESENCE_SECRET (or PRESENCE_SECRET_FILE),
or, when that is unset or PRESENCE_SETTINGS_FROM_MATTERMOST=true, the old plugin's settings read
from Mattermost (FAIL if they cannot be read, SKIP if Mattermost is unreachable). With --gateway
URL it also checks that the gateway at URL (or the Mattermost host routing the plugin path to it)
answers /status with that secret.

--end-to-end (with --gateway) then proves the whole path: it changes the status of the token's own
user (the gateway's bot when doctor runs with the gateway's settings), or of --user NAME (a
username or email; needs an admin's token), through Mattermost's API, waits for that change on the
gateway's /ws as a provider receives it, within PRESENCE_POLL_INTERVAL_MS (give the gateway's) plus
--margin-ms (default ${DEFAULT_MARGIN_MS}), prints the measured latency, and puts the status back
(also on failure or Ctrl-C). A user who is out of office is refused: leaving ooo through the API
turns off their automatic replies. Through the API only "online" is automatic: a user put back to
away, dnd or offline is then kept as set manually; prefer the bot.

Exit codes: 0 every check passed, 1 a check warned, failed or was skipped, 2 bad usage or
configuration.
`;

export type Verdict = "PASS" | "WARN" | "FAIL" | "SKIP";

export interface CheckResult {
  verdict: Verdict;
  check: string;
  message: string;
}

/** Mattermost's rate limiter, when an admin turns it on, allows 10 requests/s per session by default. */
const RATE_LIMIT_PER_SECOND = 10;
const SYSTEM_CONSOLE_EMAILS =
  "make the bot a system admin (System Console › User Management › Users › the bot › Manage roles), " +
  "or turn on ShowEmailAddress (System Console › Site Configuration › Users and Teams › Show Email Address)";

/** What failed, said the way an admin reads it. */
function describeError(err: unknown): string {
  if (err instanceof UpstreamError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

function networkCode(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") return "no answer in time";
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

/** "10.5.0.12345.hash.false" → "10.5.0" */
function versionOf(versionId: string | null): string | undefined {
  if (!versionId) return undefined;
  const m = /^(\d+\.\d+\.\d+)/.exec(versionId);
  return m?.[1] ?? versionId;
}

/** The checks, in order; each may depend on what an earlier one learned. */
export async function runChecks(
  config: Config,
  gatewayUrl: string | undefined,
  emit: (r: CheckResult) => void,
  endToEnd?: EndToEndOptions,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  // Mattermost's error texts can repeat what it was sent (an echoed Authorization header).
  const secrets = [
    config.mattermostToken,
    config.secret,
    config.secretPrevious,
    config.adminToken,
    config.metricsToken,
  ];
  const report = (verdict: Verdict, check: string, message: string): void => {
    const r = { verdict, check, message: redactSecrets(message, secrets) };
    results.push(r);
    emit(r);
  };
  const url = config.mattermostUrl;
  const timeout = config.requestTimeoutMs;
  const client = new MattermostClient({ url, token: config.mattermostToken, timeoutMs: timeout });

  // What the checks learn, declared first: checkSecretAndGateway reads them on every path.
  let me: Awaited<ReturnType<MattermostClient["getMe"]>> | undefined;
  let users: DirectoryUser[] | undefined;

  // 1. Reachable, and Mattermost.
  let reachable = false;
  try {
    const res = await fetch(`${url}/api/v4/system/ping`, { signal: AbortSignal.timeout(timeout) });
    const body = (await jsonUpTo(res, BODY_LIMITS.small)) as { status?: unknown } | undefined;
    if (res.status === 200 && body?.status === "OK") {
      reachable = true;
      const version = versionOf(res.headers.get("x-version-id"));
      report("PASS", "reachable", `Mattermost ${version ?? "(version not given)"} answers at ${url}`);
    } else {
      report(
        "FAIL",
        "reachable",
        `${url}/api/v4/system/ping answered HTTP ${res.status} without Mattermost's {"status":"OK"}: ` +
          "set MATTERMOST_URL to Mattermost's base URL (what users open in a browser, without /api/v4)",
      );
    }
  } catch (err) {
    report(
      "FAIL",
      "reachable",
      `cannot reach ${url} (${networkCode(err)}): check MATTERMOST_URL, DNS, firewalls and proxies between this host and Mattermost`,
    );
  }
  const skip = (check: string, why: string) => report("SKIP", check, why);
  if (!reachable) {
    for (const c of ["token", "emails", "statuses-on", "status-api", "poll-cost"]) {
      skip(c, "needs a reachable Mattermost");
    }
    await checkSecretAndGateway(false);
    return results;
  }

  // 2. Token valid, and whose.
  try {
    me = await client.getMe();
    const kind = me.isBot ? "bot" : "user (a bot account outlives people leaving)";
    report("PASS", "token", `the token belongs to @${me.username}, a ${kind}; roles: ${me.roles || "none"}`);
  } catch (err) {
    if (err instanceof UpstreamError && err.kind === "unauthorized") {
      report(
        "FAIL",
        "token",
        "Mattermost rejected MATTERMOST_TOKEN (401): create a new access token for the bot " +
          "(System Console › Integrations › Bot Accounts) and set MATTERMOST_TOKEN or MATTERMOST_TOKEN_FILE",
      );
    } else {
      report("FAIL", "token", `cannot read the token's user: ${describeError(err)}`);
    }
  }

  // 3. Emails visible.
  if (me) {
    try {
      users = (await readDirectory(client)).users;
      // A token always sees its own user's email; only the others tell whether it sees emails.
      const others = users.filter((u) => u.id !== me!.id);
      const hidden = others.filter((u) => u.email === "").length;
      if (others.length === 0) {
        report("WARN", "emails", "the token sees no active user but its own: is this the right Mattermost?");
      } else if (hidden === others.length) {
        report(
          "FAIL",
          "emails",
          `the token sees no email address of the ${others.length} other active users, so Outlook can match nobody: ${SYSTEM_CONSOLE_EMAILS}`,
        );
      } else if (hidden > 0) {
        report(
          "WARN",
          "emails",
          `${hidden} of ${others.length} other active users have no email visible to the token and are left out of /status: ${SYSTEM_CONSOLE_EMAILS}`,
        );
      } else {
        report(
          "PASS",
          "emails",
          `the token sees the email address of all ${others.length} other active users`,
        );
      }
    } catch (err) {
      users = undefined;
      report("FAIL", "emails", `cannot list active users: ${describeError(err)}`);
    }
  } else {
    skip("emails", "needs a valid token");
  }

  // 4. EnableUserStatuses (the client config needs no session).
  try {
    const res = await fetch(`${url}/api/v4/config/client?format=old`, {
      signal: AbortSignal.timeout(timeout),
    });
    const body = (await jsonUpTo(res, BODY_LIMITS.small)) as Record<string, unknown> | undefined;
    const value = body?.EnableUserStatuses;
    if (!res.ok || value === undefined) {
      report(
        "WARN",
        "statuses-on",
        `cannot tell whether EnableUserStatuses is on (client config: HTTP ${res.status}); see status-api`,
      );
    } else if (String(value) === "false") {
      report(
        "FAIL",
        "statuses-on",
        "EnableUserStatuses is off, so Mattermost keeps no statuses and everyone shows offline: turn on " +
          "ServiceSettings.EnableUserStatuses (System Console › Site Configuration › Users and Teams › Enable User Statuses)",
      );
    } else {
      report("PASS", "statuses-on", "EnableUserStatuses is on");
    }
  } catch (err) {
    report("WARN", "statuses-on", `cannot read the client config (${networkCode(err)}); see status-api`);
  }

  // 5. The status endpoint answers, and how fast.
  let latencyMs: number | undefined;
  if (users && users.length > 0) {
    const ids = users.slice(0, MAX_IDS_PER_STATUS_REQUEST).map((u) => u.id);
    const started = performance.now();
    try {
      const statuses = await client.getStatuses(ids);
      latencyMs = performance.now() - started;
      const ms = Math.round(latencyMs);
      if (statuses.length === 0) {
        report(
          "FAIL",
          "status-api",
          `POST /api/v4/users/status/ids answered [] for ${ids.length} users: user statuses are disabled; turn on EnableUserStatuses`,
        );
      } else if (latencyMs > timeout / 2) {
        report(
          "WARN",
          "status-api",
          `${statuses.length} statuses in ${ms} ms, more than half of PRESENCE_REQUEST_TIMEOUT_MS (${timeout}): Mattermost is slow; raise the timeout or look at its database`,
        );
      } else {
        report("PASS", "status-api", `${statuses.length} statuses for ${ids.length} users in ${ms} ms`);
      }
    } catch (err) {
      report("FAIL", "status-api", `POST /api/v4/users/status/ids failed: ${describeError(err)}`);
    }
  } else {
    skip("status-api", users ? "no active users to ask about" : "needs the user list");
  }

  // 6. What polling everyone costs.
  if (users) {
    const n = users.length;
    const requests = Math.ceil(n / MAX_IDS_PER_STATUS_REQUEST);
    const interval = config.pollIntervalMs;
    const perSecond = requests / (interval / 1000);
    const cost = `${n} active users: ${requests} status request${requests === 1 ? "" : "s"} every ${interval} ms (PRESENCE_POLL_INTERVAL_MS), ${perSecond.toFixed(1)}/s`;
    const cycleMs =
      latencyMs === undefined ? undefined : Math.ceil(requests / config.pollConcurrency) * latencyMs;
    if (cycleMs !== undefined && cycleMs > interval) {
      report(
        "WARN",
        "poll-cost",
        `${cost}; a cycle would take about ${Math.round(cycleMs)} ms, longer than the interval: raise PRESENCE_POLL_CONCURRENCY or PRESENCE_POLL_INTERVAL_MS`,
      );
    } else if (perSecond > RATE_LIMIT_PER_SECOND) {
      report(
        "WARN",
        "poll-cost",
        `${cost}: more than Mattermost's rate limit allows by default (${RATE_LIMIT_PER_SECOND}/s) if RateLimitSettings is on; raise PRESENCE_POLL_INTERVAL_MS or the limit`,
      );
    } else {
      report("PASS", "poll-cost", cost);
    }
  } else {
    skip("poll-cost", "needs the user list");
  }

  await checkSecretAndGateway(true);
  return results;

  async function checkSecretAndGateway(mattermostReachable: boolean): Promise<void> {
    const secret = await checkSecret(config, mattermostReachable ? client : undefined, report);
    checkStrength(config, report);
    if (!gatewayUrl) return;
    let gatewayOk = false;
    if (secret === undefined) report("SKIP", "gateway", "needs the secret");
    else gatewayOk = await checkGateway(secret, gatewayUrl, config.requestTimeoutMs, report);
    if (!endToEnd) return;
    if (!gatewayOk || secret === undefined)
      report("SKIP", "end-to-end", "needs a gateway that answers /status");
    else if (!me || !users) report("SKIP", "end-to-end", "needs a valid token and the user list");
    else {
      await checkEndToEnd(
        client,
        users,
        me.id,
        gatewayUrl,
        secret,
        config.pollIntervalMs,
        config.requestTimeoutMs,
        endToEnd,
        report,
      );
    }
  }
}

/** Says where the gateway's secret comes from, and checks that it can be had. */
async function checkSecret(
  config: Config,
  /** Unset when Mattermost is unreachable. */
  client: MattermostClient | undefined,
  report: (verdict: Verdict, check: string, message: string) => void,
): Promise<string | undefined> {
  if (!config.settingsFromMattermost && config.secret !== undefined) {
    const file = config.secretFiles.PRESENCE_SECRET;
    report("PASS", "secret", `from ${file ? `PRESENCE_SECRET_FILE (${file})` : "PRESENCE_SECRET"}`);
    return config.secret;
  }
  if (!client) {
    report("SKIP", "secret", "read from the old plugin's settings: needs a reachable Mattermost");
    return undefined;
  }
  try {
    const settings = await fetchPluginSettings(client);
    const page = settings.pageSize === undefined ? "" : `, page size ${settings.pageSize}`;
    const weakness = secretWeakness(settings.secret);
    if (weakness) {
      // The gateway serves with it (refusing would lock every desktop out) but warns loudly.
      report(
        "FAIL",
        "secret",
        `the old plugin's secret in Mattermost is ${weakness}: anyone can guess it; regenerate it in System Console › Plugins › Outlook Presence (desktops need the new one), or set PRESENCE_SECRET: ${MAKE_A_SECRET}`,
      );
      return settings.secret;
    }
    report(
      "PASS",
      "secret",
      `from the old plugin's settings in Mattermost (PRESENCE_SECRET ${config.secret === undefined ? "is unset" : "is also accepted"}${page})`,
    );
    return settings.secret;
  } catch (err) {
    const why = err instanceof PluginSettingsError ? err.message : describeError(err);
    report("FAIL", "secret", `the old plugin's secret cannot be read from Mattermost: ${why}`);
    return undefined;
  }
}

/** FAIL for each configured secret or token too short to be one (start refuses them). */
function checkStrength(
  config: Config,
  report: (verdict: Verdict, check: string, message: string) => void,
): void {
  const problems = weakSecretProblems(config);
  for (const p of problems) report("FAIL", "strength", `${p}; the gateway refuses to start with it`);
  const set = checkedSecrets(config).map(([env]) => env);
  if (problems.length === 0 && set.length > 0) {
    report("PASS", "strength", `${set.join(", ")}: long enough`);
  }
}

async function checkGateway(
  secret: string,
  gatewayUrl: string,
  timeoutMs: number,
  report: (verdict: Verdict, check: string, message: string) => void,
): Promise<boolean> {
  const base = gatewayUrl.replace(/\/+$/, "");
  const target = `${base}${COMPAT_BASE}/status`;
  let res: Response;
  try {
    res = await fetch(`${target}?secret=${encodeURIComponent(secret)}&page=0`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    report("FAIL", "gateway", `cannot reach ${base} (${networkCode(err)}): is the gateway running there?`);
    return false;
  }
  const text = (await textUpTo(res, GATEWAY_PAGE_LIMIT)) ?? "";
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const message = (body as { error?: { message?: unknown } } | undefined)?.error?.message;
  if (res.status === 200 && Array.isArray(body)) {
    report("PASS", "gateway", `${base} answers /status with the secret (${body.length} users on page 0)`);
    return true;
  } else if (res.status === 403) {
    report(
      "FAIL",
      "gateway",
      `${base} refused the secret (403): the gateway runs with another PRESENCE_SECRET than this doctor; give both the same one (the one the providers have)`,
    );
  } else if (res.status === 503) {
    report(
      "FAIL",
      "gateway",
      `${base} is not ready: ${typeof message === "string" ? message : text.slice(0, 200)}`,
    );
  } else if (res.status === 404) {
    report(
      "FAIL",
      "gateway",
      `${base} has no ${COMPAT_BASE}/status (404): give the gateway's base URL, or route /plugins/com.mattermost.outlook-presence/ to the gateway in the proxy (docs/DEPLOY.md)`,
    );
  } else {
    report("FAIL", "gateway", `${base} answered /status with HTTP ${res.status}, not a JSON array`);
  }
  return false;
}

interface DoctorArgs {
  gateway?: string;
  endToEnd: boolean;
  user?: string;
  marginMs: number;
  help: boolean;
  rest: string[];
}

/** Splits doctor's own flags from the settings flags, which go to the config loader. */
function parseDoctorArgs(argv: readonly string[]): DoctorArgs {
  const rest: string[] = [];
  const own: Record<"gateway" | "user" | "margin-ms", string | undefined> = {
    gateway: undefined,
    user: undefined,
    "margin-ms": undefined,
  };
  const example = {
    gateway: "a URL such as http://127.0.0.1:8080",
    user: "a username or email",
    "margin-ms": "milliseconds",
  };
  let help = false;
  let endToEnd = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = (Object.keys(own) as (keyof typeof own)[]).find(
      (k) => a === `--${k}` || a.startsWith(`--${k}=`),
    );
    if (a === "--help" || a === "-h") help = true;
    else if (a === "--end-to-end") endToEnd = true;
    else if (name) {
      const value = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i];
      if (value === undefined) throw new ConfigError([`--${name}: expected ${example[name]}`]);
      own[name] = value;
    } else rest.push(a);
  }
  const gateway = own.gateway;
  if (gateway !== undefined) {
    let ok = false;
    try {
      ok = ["http:", "https:"].includes(new URL(gateway).protocol);
    } catch {
      ok = false;
    }
    if (!ok)
      throw new ConfigError([
        `--gateway: expected an absolute URL such as http://127.0.0.1:8080, got ${JSON.stringify(gateway)}`,
      ]);
  }
  let marginMs = DEFAULT_MARGIN_MS;
  if (own["margin-ms"] !== undefined) {
    marginMs = Number(own["margin-ms"]);
    if (!/^\d+$/.test(own["margin-ms"]) || marginMs > 600_000)
      throw new ConfigError([
        `--margin-ms: expected milliseconds from 0 to 600000, got ${JSON.stringify(own["margin-ms"])}`,
      ]);
  }
  if (!endToEnd && (own.user !== undefined || own["margin-ms"] !== undefined))
    throw new ConfigError(["--user and --margin-ms go with --end-to-end"]);
  if (endToEnd && gateway === undefined)
    throw new ConfigError(["--end-to-end: needs --gateway URL, the gateway whose /ws the change must reach"]);
  return { gateway, endToEnd, user: own.user, marginMs, help, rest };
}

/**
 * Ctrl-C or SIGTERM during --end-to-end stops the wait and lets the status be put back; a second
 * one exits at once, saying so.
 */
function interruptible(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSignal = () => {
    if (!ac.signal.aborted) {
      process.stdout.write("interrupted: putting the status back (again to quit at once)\n");
      ac.abort();
      return;
    }
    process.stderr.write("outlook-presence doctor: quit before the status was put back; check it by hand\n");
    process.exit(1);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

/** `outlook-presence doctor`: why does Outlook show everyone offline? */
export async function runDoctor(argv: string[]): Promise<number> {
  let args: DoctorArgs;
  let config: Config;
  try {
    args = parseDoctorArgs(argv);
    if (args.help) {
      process.stdout.write(HELP);
      return 0;
    }
    // Short secrets are reported as a FAIL below, not as a configuration error.
    config = loadConfig(args.rest, process.env, { allowWeakSecrets: true }).config;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`outlook-presence doctor: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Request timeouts (AbortSignal.timeout) do not keep Node alive: against a peer that drops
  // connections, fetch can wait on nothing, and Node would exit mid-check with code 0. Hold the
  // process open until the checks end, and make an early exit a failure.
  process.exitCode = 1;
  const keepAlive = setInterval(() => undefined, 1000);
  const interrupt = args.endToEnd ? interruptible() : undefined;
  const endToEnd = interrupt && { user: args.user, marginMs: args.marginMs, signal: interrupt.signal };
  const results = await runChecks(
    config,
    args.gateway,
    (r) => {
      process.stdout.write(`${r.verdict.padEnd(4)}  ${r.check.padEnd(11)}  ${r.message}\n`);
    },
    endToEnd,
  ).finally(() => {
    clearInterval(keepAlive);
    interrupt?.dispose();
  });
  const count = (v: Verdict) => results.filter((r) => r.verdict === v).length;
  const failed = count("FAIL");
  const warned = count("WARN");
  process.stdout.write(
    `\n${count("PASS")} passed, ${warned} warned, ${failed} failed${count("SKIP") ? `, ${count("SKIP")} skipped` : ""}\n`,
  );
  return failed + warned + count("SKIP") === 0 ? 0 : 1;
}
