/**
 * A real Mattermost server for tests: installed by scripts/mattermost-server.sh (Go module proxy,
 * cached per version), started here on a free loopback port with its own PostgreSQL database,
 * config file and data directory, and bootstrapped through its API (a system admin, an admin bot,
 * a plain bot, a few users). `stop()` ends the process and drops the database.
 *
 * Tests either start their own (`startRealMattermost`) or use one started for the whole CI run by
 * real-mattermost-cli.ts, which passes it down as MM_REAL_* variables (`realMattermostFromEnv`).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./net.js";

export interface RealUser {
  id: string;
  username: string;
  email: string;
}

export interface RealMattermost {
  /** Base URL, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  /** The server's version as its X-Version-Id starts, e.g. "11.4.0". */
  version: string;
  /** Session token of the first user, a system admin (created through open sign-up). */
  adminToken: string;
  adminUserId: string;
  /** Access token of a bot with the system_admin role: sees every email, reads GET /config. */
  botToken: string;
  botUserId: string;
  /** Access token of a bot with only system_user: what a least-privilege gateway token sees. */
  plainBotToken: string;
  plainBotUserId: string;
  /** Regular users created at bootstrap (lower-case usernames and emails). */
  users: RealUser[];
  /** Mattermost's local-mode socket (`mmctl --local`, admin without a token); "" when not ours. */
  localSocket: string;
  /** The server's own log (JSON lines); "" when not ours. */
  logFile: string;
  /** Stops the process, drops its database, removes its directory. A no-op for a server from env. */
  stop(): Promise<void>;
}

export type RealMattermostResult = { ok: true; server: RealMattermost } | { ok: false; skip: string };

export interface RateLimitOptions {
  perSec: number;
  maxBurst: number;
  /**
   * Requests are bucketed by token (VaryByUser) and this header's value, so each token has a quota
   * of its own and a test that wants a 429 sends its own value and exhausts only its own bucket. The
   * rate limiter is set up only when the server starts (Mattermost 11 reads RateLimitSettings once),
   * hence an option here rather than a test's config patch.
   */
  header: string;
}

export interface StartOptions {
  /** Regular users to create (default 3). */
  users?: number;
  /** Mattermost's rate limiter (off by default). */
  rateLimit?: RateLimitOptions;
  /** Milliseconds to wait for the first ping (the first start runs every migration). Default 240 s. */
  startTimeoutMs?: number;
  /** Progress lines (default: none). Never receives tokens. */
  log?: (line: string) => void;
}

/** The variables real-mattermost-cli.ts sets for its command, and realMattermostFromEnv reads. */
export const REAL_ENV = {
  url: "MM_REAL_URL",
  version: "MM_REAL_VERSION",
  adminToken: "MM_REAL_ADMIN_TOKEN",
  adminUserId: "MM_REAL_ADMIN_USER_ID",
  botToken: "MM_REAL_BOT_TOKEN",
  botUserId: "MM_REAL_BOT_USER_ID",
  plainBotToken: "MM_REAL_PLAIN_BOT_TOKEN",
  plainBotUserId: "MM_REAL_PLAIN_BOT_USER_ID",
  users: "MM_REAL_USERS",
  localSocket: "MM_REAL_LOCAL_SOCKET",
  logFile: "MM_REAL_LOG_FILE",
} as const;

/** Exit code of scripts/mattermost-server.sh when the server cannot be installed here. */
export const INSTALL_SKIPPED = 3;

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root, from dist/test/helpers or test/helpers. */
const REPO = [resolve(here, "../../.."), resolve(here, "../..")].find((d) =>
  existsSync(join(d, "scripts/mattermost-server.sh")),
);
export const INSTALL_SCRIPT = join(REPO ?? ".", "scripts/mattermost-server.sh");

const PASSWORD = "Conformance-Passw0rd!";
const PG = ["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"];

/** Runs the install script (a no-op when built); returns the binary and its source directory, or why not. */
export function installRealMattermost(
  log: (line: string) => void = () => {},
): { bin: string; dir: string } | { skip: string } {
  const inst = spawnSync("bash", [INSTALL_SCRIPT, "install"], { encoding: "utf8", timeout: 40 * 60_000 });
  for (const l of `${inst.stdout ?? ""}`.split("\n")) if (l) log(l);
  if (inst.status !== 0) {
    const why = (inst.stderr ?? "").split("\n").find((l) => l.startsWith("SKIP:"));
    return {
      skip: why ?? `install exited ${inst.status ?? inst.signal}: ${(inst.stderr ?? "").slice(-400)}`,
    };
  }
  const paths = spawnSync("bash", [INSTALL_SCRIPT, "paths"], { encoding: "utf8" });
  const vars = Object.fromEntries(
    paths.stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  if (!vars.MM_SERVER_BIN || !vars.MM_SERVER_DIR) return { skip: `install script printed no paths` };
  return { bin: vars.MM_SERVER_BIN, dir: vars.MM_SERVER_DIR };
}

function psql(sql: string): void {
  const r = spawnSync("psql", [...PG, "-d", "postgres", "-c", sql], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr || r.error?.message}`);
}

/** PostgreSQL on 127.0.0.1:5432, started if this machine has a stopped cluster. */
function ensurePostgres(): string | undefined {
  const ok = () => spawnSync("psql", [...PG, "-d", "postgres", "-c", "select 1"]).status === 0;
  if (ok()) return undefined;
  for (const v of existsSync("/etc/postgresql")
    ? spawnSync("ls", ["/etc/postgresql"]).stdout.toString().split(/\s+/)
    : []) {
    if (v) spawnSync("pg_ctlcluster", ["--skip-systemctl-redirect", v, "main", "start"]);
  }
  return ok() ? undefined : "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres";
}

/** The server's console log and the path to it, for error messages. */
function tail(file: string, n = 1500): string {
  try {
    const s = readFileSync(file, "utf8");
    return s.slice(-n);
  } catch {
    return "";
  }
}

/**
 * Installs (cached), starts and bootstraps a real Mattermost. Resolves `{ok:false, skip}` when it
 * cannot be installed or PostgreSQL is missing; rejects when an installed server fails to start or
 * answers the bootstrap unexpectedly (a real failure, not a reason to skip).
 */
export async function startRealMattermost(opts: StartOptions = {}): Promise<RealMattermostResult> {
  const log = opts.log ?? (() => {});
  const installed = installRealMattermost(log);
  if ("skip" in installed) return { ok: false, skip: installed.skip };
  const noPg = ensurePostgres();
  if (noPg) return { ok: false, skip: noPg };

  const work = mkdtempSync(join(tmpdir(), "mm-real-"));
  const db = `mmtest_${randomBytes(6).toString("hex")}`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(work, "server.log");
  const localSocket = join(work, "local.socket");
  psql(`CREATE DATABASE ${db}`);

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MM_CONFIG: join(work, "config.json"),
    MM_SQLSETTINGS_DRIVERNAME: "postgres",
    MM_SQLSETTINGS_DATASOURCE: `postgres://postgres@127.0.0.1:5432/${db}?sslmode=disable&connect_timeout=10`,
    MM_SERVICESETTINGS_LISTENADDRESS: `127.0.0.1:${port}`,
    MM_SERVICESETTINGS_SITEURL: url,
    MM_SERVICESETTINGS_ENABLEBOTACCOUNTCREATION: "true",
    MM_SERVICESETTINGS_ENABLEUSERACCESSTOKENS: "true",
    MM_SERVICESETTINGS_ENABLELOCALMODE: "true",
    MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION: localSocket,
    MM_SERVICESETTINGS_ENABLESECURITYFIXALERT: "false",
    MM_TEAMSETTINGS_ENABLEOPENSERVER: "true",
    MM_FILESETTINGS_DIRECTORY: join(work, "data"),
    MM_PLUGINSETTINGS_DIRECTORY: join(work, "plugins"),
    MM_PLUGINSETTINGS_CLIENTDIRECTORY: join(work, "client-plugins"),
    // Lets a test install the plugin bundle; Mattermost refuses to change this one through its API.
    MM_PLUGINSETTINGS_ENABLEUPLOADS: "true",
    MM_LOGSETTINGS_ENABLECONSOLE: "true",
    MM_LOGSETTINGS_CONSOLELEVEL: "INFO",
    MM_LOGSETTINGS_ENABLEFILE: "false",
    MM_LOGSETTINGS_ENABLEDIAGNOSTICS: "false",
    MM_EMAILSETTINGS_SENDEMAILNOTIFICATIONS: "false",
  };
  if (opts.rateLimit) {
    Object.assign(env, {
      MM_RATELIMITSETTINGS_ENABLE: "true",
      MM_RATELIMITSETTINGS_PERSEC: String(opts.rateLimit.perSec),
      MM_RATELIMITSETTINGS_MAXBURST: String(opts.rateLimit.maxBurst),
      MM_RATELIMITSETTINGS_VARYBYREMOTEADDR: "false",
      MM_RATELIMITSETTINGS_VARYBYUSER: "true",
      MM_RATELIMITSETTINGS_VARYBYHEADER: opts.rateLimit.header,
    });
  }

  const out = createWriteStream(logFile);
  // The server finds i18n/, templates/, fonts/ and client/ relative to its working directory.
  const child = spawn(installed.bin, [], { cwd: installed.dir, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `exited with ${code ?? signal}`));

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopChild(child);
    out.end();
    try {
      psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  };

  try {
    log(`mattermost: starting on ${url} (database ${db}, log ${logFile})`);
    const started = Date.now();
    const timeout = opts.startTimeoutMs ?? 240_000;
    let version = "";
    for (;;) {
      if (exited) throw new Error(`Mattermost ${exited} before answering: ${tail(logFile)}`);
      try {
        const res = await fetch(`${url}/api/v4/system/ping`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) {
          version = (res.headers.get("x-version-id") ?? "").split(".").slice(0, 3).join(".");
          break;
        }
      } catch {
        // not listening yet
      }
      if (Date.now() - started > timeout) {
        throw new Error(`Mattermost did not answer ping within ${timeout} ms: ${tail(logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    log(`mattermost ${version}: answering after ${Date.now() - started} ms; bootstrapping`);
    const boot = await bootstrap(url, opts.users ?? 3);
    return {
      ok: true,
      server: { url, version, ...boot, localSocket, logFile, stop },
    };
  } catch (err) {
    const e = err as Error;
    await stop().catch(() => undefined);
    throw new Error(`${e.message}\n(server log was ${logFile}, removed)`);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await gone;
  clearTimeout(timer);
}

/** One API call of the bootstrap; any unexpected answer is an error naming the call. */
async function call<T>(
  url: string,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ body: T; headers: Headers }> {
  const res = await fetch(`${url}/api/v4/${path}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok)
    throw new Error(`bootstrap ${method} /api/v4/${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return { body: (text ? JSON.parse(text) : null) as T, headers: res.headers };
}

type Boot = Pick<
  RealMattermost,
  "adminToken" | "adminUserId" | "botToken" | "botUserId" | "plainBotToken" | "plainBotUserId" | "users"
>;

/** First user (→ system admin), its session, two bots with tokens, `n` users. */
export async function bootstrap(url: string, n: number): Promise<Boot> {
  const admin = await call<{ id: string }>(url, "POST", "users", undefined, {
    email: "sysadmin@example.com",
    username: "sysadmin",
    password: PASSWORD,
  });
  const login = await call<unknown>(url, "POST", "users/login", undefined, {
    login_id: "sysadmin",
    password: PASSWORD,
  });
  const adminToken = login.headers.get("token");
  if (!adminToken) throw new Error("bootstrap: login answered without a Token header");

  const bot = async (username: string, admin: boolean): Promise<{ id: string; token: string }> => {
    const b = await call<{ user_id: string }>(url, "POST", "bots", adminToken, {
      username,
      display_name: username,
      description: "conformance suite",
    });
    if (admin) {
      await call(url, "PUT", `users/${b.body.user_id}/roles`, adminToken, {
        roles: "system_user system_admin",
      });
    }
    const t = await call<{ token: string }>(url, "POST", `users/${b.body.user_id}/tokens`, adminToken, {
      description: "conformance suite",
    });
    return { id: b.body.user_id, token: t.body.token };
  };
  const adminBot = await bot("presence-bot", true);
  const plainBot = await bot("plain-bot", false);

  const users: RealUser[] = [];
  for (let i = 1; i <= n; i++) {
    const username = `user.${String(i).padStart(3, "0")}`;
    const u = await call<RealUser>(url, "POST", "users", adminToken, {
      email: `${username}@example.com`,
      username,
      password: PASSWORD,
    });
    users.push({ id: u.body.id, username: u.body.username, email: u.body.email });
  }
  return {
    adminToken,
    adminUserId: admin.body.id,
    botToken: adminBot.token,
    botUserId: adminBot.id,
    plainBotToken: plainBot.token,
    plainBotUserId: plainBot.id,
    users,
  };
}

/** The variables that describe `s` to a child process (see REAL_ENV). */
export function realMattermostEnv(s: RealMattermost): Record<string, string> {
  return {
    [REAL_ENV.url]: s.url,
    [REAL_ENV.version]: s.version,
    [REAL_ENV.adminToken]: s.adminToken,
    [REAL_ENV.adminUserId]: s.adminUserId,
    [REAL_ENV.botToken]: s.botToken,
    [REAL_ENV.botUserId]: s.botUserId,
    [REAL_ENV.plainBotToken]: s.plainBotToken,
    [REAL_ENV.plainBotUserId]: s.plainBotUserId,
    [REAL_ENV.users]: JSON.stringify(s.users),
    [REAL_ENV.localSocket]: s.localSocket,
    [REAL_ENV.logFile]: s.logFile,
  };
}

/** A server started by real-mattermost-cli.ts for this process, or undefined. Its stop() does nothing. */
export function realMattermostFromEnv(env: NodeJS.ProcessEnv = process.env): RealMattermost | undefined {
  const url = env[REAL_ENV.url];
  if (!url) return undefined;
  const need = (k: string): string => {
    const v = env[k];
    if (!v) throw new Error(`${REAL_ENV.url} is set but ${k} is not`);
    return v;
  };
  return {
    url,
    version: env[REAL_ENV.version] ?? "",
    adminToken: need(REAL_ENV.adminToken),
    adminUserId: need(REAL_ENV.adminUserId),
    botToken: need(REAL_ENV.botToken),
    botUserId: need(REAL_ENV.botUserId),
    plainBotToken: need(REAL_ENV.plainBotToken),
    plainBotUserId: need(REAL_ENV.plainBotUserId),
    users: JSON.parse(env[REAL_ENV.users] ?? "[]") as RealUser[],
    localSocket: env[REAL_ENV.localSocket] ?? "",
    logFile: env[REAL_ENV.logFile] ?? "",
    stop: async () => undefined,
  };
}
