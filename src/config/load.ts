import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { z } from "zod";
import { LOG_LEVELS, SETTINGS, flagName, type SettingEnv, type SettingSpec } from "./schema.js";

export type LogLevel = (typeof LOG_LEVELS)[number];

/** The one typed configuration object, validated at startup. */
export interface Config {
  mattermostUrl: string;
  mattermostToken: string;
  /** Unset when the secret comes from Mattermost (settingsFromMattermost). */
  secret: string | undefined;
  secretPrevious: string | undefined;
  /** Bearer token for /metrics; unset: /metrics is open. */
  metricsToken: string | undefined;
  /** Opens /admin; unset: the presence secret does. */
  adminToken: string | undefined;
  /** The secret (and page size, unless set here) come from the old plugin's settings in Mattermost. */
  settingsFromMattermost: boolean;
  /** PRESENCE_PAGE_SIZE was given explicitly (so Mattermost's PerPageStatuses does not override it). */
  pageSizeExplicit: boolean;
  secretOverlapMs: number;
  hintsPerSecond: number;
  hintsPerAddress: number;
  pageSize: number;
  pollIntervalMs: number;
  directoryRefreshMs: number;
  keepaliveMs: number;
  replayWindowMs: number;
  /** Budget of the full resync sent to reconnected providers, bytes per second over all sockets; 0: off. */
  resyncBytesPerSecond: number;
  /** Changes kept for API v2 clients resuming with since. */
  v2RetainedChanges: number;
  pollConcurrency: number;
  requestTimeoutMs: number;
  backoffMaxMs: number;
  wsMaxBufferBytes: number;
  /** Unsent bytes of all sockets together (both pools); over it the largest holders are closed. */
  maxBufferedTotalBytes: number;
  maxConnections: number;
  /** Worker processes serving connections (src/cluster); 1: one process, as before workers. */
  workers: number;
  /** A worker that leaves the primary's messages unread this long is killed and replaced. */
  workerStallMs: number;
  wsPingIntervalMs: number;
  shutdownGraceMs: number;
  authFailureBurst: number;
  authFailureWindowMs: number;
  /** Peers whose X-Forwarded-For is believed (addresses and CIDRs); empty: none. */
  trustedProxies: string[];
  host: string;
  port: number;
  logLevel: LogLevel;
  /** A Redis named directly (redis:// or rediss://); unset with Sentinel. */
  redisUrl: string | undefined;
  /** Sentinels that name the current master (REDIS_SENTINELS or a redis+sentinel:// REDIS_URL). */
  redisSentinels: HostPort[] | undefined;
  /** The master's name in the sentinels' configuration; set exactly when redisSentinels is. */
  redisSentinelName: string | undefined;
  broker: "memory" | "redis";
  leaderTtlMs: number;
  redisPrefix: string;
  /** Where each secret came from, so it can be re-read (SIGHUP) and reported (doctor). */
  secretFiles: Partial<Record<SettingEnv, string>>;
}

/** Thrown with one line per bad key; the CLI prints them and exits 2. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/**
 * Shortest secret or token accepted. A short one can be guessed (the auth-failure limiter only
 * slows guessing down, and not at all across addresses), and the log scrubber cannot tell it from
 * ordinary text. `outlook-presence secret` makes 43 characters.
 */
export const MIN_SECRET_LENGTH = 16;

/** The settings held to MIN_SECRET_LENGTH (MATTERMOST_TOKEN is Mattermost's to make). */
export const STRENGTH_CHECKED = [
  "PRESENCE_SECRET",
  "PRESENCE_SECRET_PREVIOUS",
  "PRESENCE_ADMIN_TOKEN",
  "PRESENCE_METRICS_TOKEN",
] as const satisfies readonly SettingEnv[];

/** What to do about a short secret, said once for every place that refuses or warns. */
export const MAKE_A_SECRET =
  "`outlook-presence secret` makes one (for PRESENCE_SECRET, move the old value to PRESENCE_SECRET_PREVIOUS while desktops take the new one)";

/** Why `value` is too weak to be a secret, or undefined when it is long enough. */
export function secretWeakness(value: string): string | undefined {
  return value.length < MIN_SECRET_LENGTH
    ? `too short (${value.length} character${value.length === 1 ? "" : "s"}, at least ${MIN_SECRET_LENGTH} needed)`
    : undefined;
}

type SecretFields = Pick<Config, "secret" | "secretPrevious" | "adminToken" | "metricsToken">;

/** The secrets and tokens of `config` held to MIN_SECRET_LENGTH that are set, by key. */
export function checkedSecrets(config: SecretFields): [SettingEnv, string][] {
  const set: [SettingEnv, string][] = [];
  for (const env of STRENGTH_CHECKED) {
    const value = config[FIELD[env] as keyof SecretFields];
    if (value !== undefined) set.push([env, value]);
  }
  return set;
}

/** One line per secret or token of `config` that is too weak, naming its key and what to do. */
export function weakSecretProblems(config: SecretFields): string[] {
  const problems: string[] = [];
  for (const [env, value] of checkedSecrets(config)) {
    const weakness = secretWeakness(value);
    if (weakness) problems.push(`${describe(settingSpec(env))}: ${weakness}; ${MAKE_A_SECRET}`);
  }
  return problems;
}

function settingSpec(env: SettingEnv): SettingSpec {
  return (SETTINGS as readonly SettingSpec[]).find((s) => s.env === env)!;
}

export interface LoadOptions {
  /**
   * Load secrets shorter than MIN_SECRET_LENGTH instead of refusing them (`doctor`, which
   * reports them as a FAIL of its own rather than stopping at the configuration).
   */
  allowWeakSecrets?: boolean;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface LoadResult {
  config: Config;
  warnings: string[];
}

const FIELD: Record<SettingEnv, keyof Config> = {
  MATTERMOST_URL: "mattermostUrl",
  MATTERMOST_TOKEN: "mattermostToken",
  PRESENCE_SECRET: "secret",
  PRESENCE_SECRET_PREVIOUS: "secretPrevious",
  PRESENCE_METRICS_TOKEN: "metricsToken",
  PRESENCE_ADMIN_TOKEN: "adminToken",
  PRESENCE_SETTINGS_FROM_MATTERMOST: "settingsFromMattermost",
  PRESENCE_SECRET_OVERLAP_MS: "secretOverlapMs",
  PRESENCE_HINTS_PER_SECOND: "hintsPerSecond",
  PRESENCE_HINTS_PER_ADDRESS: "hintsPerAddress",
  PRESENCE_PAGE_SIZE: "pageSize",
  PRESENCE_POLL_INTERVAL_MS: "pollIntervalMs",
  PRESENCE_DIRECTORY_REFRESH_MS: "directoryRefreshMs",
  PRESENCE_KEEPALIVE_MS: "keepaliveMs",
  PRESENCE_REPLAY_WINDOW_MS: "replayWindowMs",
  PRESENCE_RESYNC_BYTES_PER_SECOND: "resyncBytesPerSecond",
  PRESENCE_V2_RETAINED_CHANGES: "v2RetainedChanges",
  PRESENCE_POLL_CONCURRENCY: "pollConcurrency",
  PRESENCE_REQUEST_TIMEOUT_MS: "requestTimeoutMs",
  PRESENCE_BACKOFF_MAX_MS: "backoffMaxMs",
  PRESENCE_WS_MAX_BUFFER_BYTES: "wsMaxBufferBytes",
  PRESENCE_MAX_BUFFERED_TOTAL_BYTES: "maxBufferedTotalBytes",
  PRESENCE_MAX_CONNECTIONS: "maxConnections",
  PRESENCE_WORKERS: "workers",
  PRESENCE_WORKER_STALL_MS: "workerStallMs",
  PRESENCE_WS_PING_INTERVAL_MS: "wsPingIntervalMs",
  PRESENCE_SHUTDOWN_GRACE_MS: "shutdownGraceMs",
  PRESENCE_AUTH_FAILURE_BURST: "authFailureBurst",
  PRESENCE_AUTH_FAILURE_WINDOW_MS: "authFailureWindowMs",
  PRESENCE_TRUSTED_PROXIES: "trustedProxies",
  HOST: "host",
  PORT: "port",
  LOG_LEVEL: "logLevel",
  REDIS_URL: "redisUrl",
  REDIS_SENTINELS: "redisSentinels",
  REDIS_SENTINEL_NAME: "redisSentinelName",
  PRESENCE_BROKER: "broker",
  PRESENCE_LEADER_TTL_MS: "leaderTtlMs",
  PRESENCE_REDIS_PREFIX: "redisPrefix",
};

function describe(spec: SettingSpec): string {
  const flag = `--${flagName(spec.env)}`;
  return spec.kind === "secret" ? `${spec.env} (${flag}, or ${spec.env}_FILE)` : `${spec.env} (${flag})`;
}

/** A zod schema per setting; its messages say what is expected, the caller adds the key. */
function valueSchema(spec: SettingSpec): z.ZodType<string | number | string[] | HostPort[]> {
  switch (spec.kind) {
    case "int": {
      const lo = spec.min ?? 0;
      const hi = spec.max ?? Number.MAX_SAFE_INTEGER;
      return z
        .string()
        .regex(/^\d+$/, `expected a whole number from ${lo} to ${hi}`)
        .transform(Number)
        .pipe(z.number().min(lo, `expected at least ${lo}`).max(hi, `expected at most ${hi}`));
    }
    case "url":
      if (spec.env === "REDIS_URL") {
        return z.string().superRefine((v, ctx) => {
          const problem = redisUrlProblem(v);
          if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
        });
      }
      return z.string().refine((v) => {
        try {
          const protocol = new URL(v).protocol;
          return protocol === "http:" || protocol === "https:";
        } catch {
          return false;
        }
      }, "expected an absolute URL such as https://chat.example.com");
    case "hostports":
      return z.string().transform((v, ctx) => {
        const parsed = parseHostPorts(v);
        if ("entries" in parsed) return parsed.entries;
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `expected host:port pairs separated by commas, such as 10.0.0.1:26379,10.0.0.2:26379, not ${JSON.stringify(parsed.bad)}`,
        });
        return z.NEVER;
      });
    case "bool":
      return z.enum(["auto", "true", "false"], {
        errorMap: () => ({ message: "expected true, false or auto" }),
      });
    case "enum": {
      const values = spec.values ?? [];
      return z.string().refine((v) => values.includes(v), `expected one of ${values.join(", ")}`);
    }
    case "secret":
      return z
        .string()
        .min(1, "expected a non-empty value")
        .refine((v) => !/\s/.test(v), "must not contain white space");
    case "string":
      return z.string().min(1, "expected a non-empty value");
    case "addresses":
      return z.string().transform((v, ctx) => {
        if (v.trim() === "none") return [];
        const parsed = parseTrustedProxies(v);
        if ("entries" in parsed) return parsed.entries;
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `expected IP addresses or CIDR ranges separated by commas (or none), not ${JSON.stringify(parsed.bad)}`,
        });
        return z.NEVER;
      });
  }
}

const SENTINEL_SCHEME = "redis+sentinel://";

/** Why a REDIS_URL cannot be used, or undefined when it can. */
function redisUrlProblem(v: string): string | undefined {
  if (v.startsWith(SENTINEL_SCHEME)) {
    const parsed = parseSentinelUrl(v);
    return "problem" in parsed ? parsed.problem : undefined;
  }
  try {
    const protocol = new URL(v).protocol;
    if (protocol === "redis:" || protocol === "rediss:") return undefined;
  } catch {
    // answered below
  }
  return "expected an absolute URL such as redis://127.0.0.1:6379 or redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster";
}

/**
 * Parses `redis+sentinel://host:port,host:port/name` (the form several Redis clients accept):
 * the sentinels to ask and the name of the master they monitor.
 */
export function parseSentinelUrl(v: string): { sentinels: HostPort[]; name: string } | { problem: string } {
  const rest = v.slice(SENTINEL_SCHEME.length);
  const slash = rest.indexOf("/");
  const hosts = slash < 0 ? rest : rest.slice(0, slash);
  const name = slash < 0 ? "" : decodeURIComponent(rest.slice(slash + 1));
  if (hosts.includes("@")) {
    return {
      problem: "credentials in a redis+sentinel:// URL are not supported; keep Sentinel on a private network",
    };
  }
  const parsed = parseHostPorts(hosts);
  if ("bad" in parsed) {
    return {
      problem: `expected redis+sentinel://host:port,host:port/name, not the address ${JSON.stringify(parsed.bad)}`,
    };
  }
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    return {
      problem:
        "expected the master's name after the addresses: redis+sentinel://host:port,host:port/mymaster",
    };
  }
  return { sentinels: parsed.entries, name };
}

/**
 * Parses `host:port` pairs separated by commas (`[::1]:26379` for IPv6): at least one, every port
 * from 1 to 65535. Returns them, or the first bad one.
 */
export function parseHostPorts(raw: string): { entries: HostPort[] } | { bad: string } {
  const parts = raw.split(",").map((s) => s.trim());
  const entries: HostPort[] = [];
  for (const part of parts) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(part);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (!host || (m?.[1] !== undefined && isIP(host) !== 6) || !(port >= 1 && port <= 65535)) {
      return { bad: part };
    }
    entries.push({ host, port });
  }
  return { entries };
}

/**
 * Parses `PRESENCE_TRUSTED_PROXIES`: addresses and CIDR ranges separated by commas
 * (`127.0.0.1, 10.0.0.0/8, fd00::/8`). Returns the entries, or the first bad one.
 */
export function parseTrustedProxies(raw: string): { entries: string[] } | { bad: string } {
  const entries = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const entry of entries) {
    const [address = "", bits, extra] = entry.split("/");
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    const bitsOk = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    if (family === 0 || !bitsOk || extra !== undefined) return { bad: entry };
  }
  return { entries };
}

function cliOptions() {
  const options: Record<string, { type: "string" }> = {};
  for (const spec of SETTINGS) {
    options[flagName(spec.env)] = { type: "string" };
    if (spec.kind === "secret") options[`${flagName(spec.env)}-file`] = { type: "string" };
  }
  return options;
}

/** Flag names accepted by `start` (and shared by other commands that need the config). */
export const CONFIG_FLAGS = Object.keys(cliOptions());

function readSecretFile(path: string): string {
  // A trailing newline is what editors and `echo` leave; it is never part of a token.
  return readFileSync(path, "utf8").replace(/[\r\n]+$/, "");
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function unknownPresenceVars(env: NodeJS.ProcessEnv): string[] {
  const known = new Set<string>();
  for (const s of SETTINGS) {
    known.add(s.env);
    if (s.kind === "secret") known.add(`${s.env}_FILE`);
  }
  const warnings: string[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith("PRESENCE_") || known.has(name)) continue;
    let best = "";
    let bestD = Infinity;
    for (const k of known) {
      const d = editDistance(name, k);
      if (d < bestD) [best, bestD] = [k, d];
    }
    warnings.push(`unknown setting ${name} is ignored${bestD <= 4 ? ` (did you mean ${best}?)` : ""}`);
  }
  return warnings;
}

/**
 * Reads the configuration from flags (first), environment variables and `*_FILE` files.
 * Every problem is collected so that one run names every bad key; throws ConfigError.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  opts: LoadOptions = {},
): LoadResult {
  const problems: string[] = [];
  let flags: Record<string, string | undefined> = {};
  try {
    flags = parseArgs({ args: [...argv], options: cliOptions(), strict: true, allowPositionals: false })
      .values as Record<string, string | undefined>;
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }

  const out: Record<string, unknown> = { secretFiles: {} };
  const secretFiles: Partial<Record<SettingEnv, string>> = {};
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const flag = flagName(spec.env);
    let raw = flags[flag] ?? env[spec.env];
    if (raw === "") raw = undefined; // an empty variable means unset, as in most shells' configs
    if (spec.kind === "secret") {
      const file = flags[`${flag}-file`] ?? (env[`${spec.env}_FILE`] || undefined);
      if (file !== undefined) {
        if (raw !== undefined) {
          problems.push(`${describe(spec)}: set either the value or ${spec.env}_FILE, not both`);
          continue;
        }
        try {
          raw = readSecretFile(file);
          secretFiles[spec.env as SettingEnv] = file;
        } catch (err) {
          problems.push(
            `${spec.env}_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
          );
          continue;
        }
      }
    }
    raw ??= spec.default;
    // The one setting whose default depends on the host: a worker per core the process may use.
    if (spec.env === "PRESENCE_WORKERS" && raw === "auto") raw = String(defaultWorkers());
    if (raw === undefined) {
      if (spec.required) problems.push(`${describe(spec)}: required, ${spec.help}`);
      continue;
    }
    const parsed = valueSchema(spec).safeParse(raw);
    if (!parsed.success) {
      const shown = spec.kind === "secret" ? "" : `, got ${JSON.stringify(raw)}`;
      problems.push(`${describe(spec)}: ${parsed.error.issues[0]?.message ?? "invalid"}${shown}`);
      continue;
    }
    out[FIELD[spec.env as SettingEnv]] = parsed.data;
  }

  redisTarget(out, problems);
  const redisSet = out.redisUrl !== undefined || out.redisSentinels !== undefined;
  if (out.broker === "auto") out.broker = redisSet ? "redis" : "memory";
  if (out.broker === "redis" && !redisSet && !problems.some((p) => p.startsWith("REDIS_"))) {
    problems.push(
      "REDIS_URL (--redis-url): required with PRESENCE_BROKER=redis, e.g. redis://127.0.0.1:6379 (or REDIS_SENTINELS and REDIS_SENTINEL_NAME)",
    );
  }

  if (out.secret !== undefined && out.secret === out.secretPrevious) {
    problems.push("PRESENCE_SECRET_PREVIOUS: is the same as PRESENCE_SECRET; unset it or set the old secret");
  }
  const fromMattermost = out.settingsFromMattermost as string | undefined;
  out.settingsFromMattermost =
    fromMattermost === "true" || (fromMattermost !== "false" && out.secret === undefined);
  if (fromMattermost === "false" && out.secret === undefined) {
    problems.push(
      "PRESENCE_SECRET (--secret, or PRESENCE_SECRET_FILE): required when PRESENCE_SETTINGS_FROM_MATTERMOST=false; `outlook-presence secret` makes one",
    );
  }
  out.pageSizeExplicit = (flags[flagName("PRESENCE_PAGE_SIZE")] ?? env.PRESENCE_PAGE_SIZE ?? "") !== "";
  if (!opts.allowWeakSecrets) problems.push(...weakSecretProblems(out as unknown as Config));
  if (problems.length > 0) throw new ConfigError(problems);
  if (typeof out.mattermostUrl === "string") out.mattermostUrl = out.mattermostUrl.replace(/\/+$/, "");
  out.secretFiles = secretFiles;
  return { config: out as unknown as Config, warnings: unknownPresenceVars(env) };
}

/**
 * PRESENCE_WORKERS=auto: one worker per core this process may use, that is the CPUs it may run
 * on, capped by a cgroup v2 CPU quota (a container's `--cpus`, Kubernetes' `limits.cpu`), which
 * availableParallelism() does not see: a 2-CPU pod on a 64-core node gets 2 workers, not 64.
 */
export function defaultWorkers(cpuMax = "/sys/fs/cgroup/cpu.max"): number {
  const cores = availableParallelism();
  let text: string;
  try {
    text = readFileSync(cpuMax, "utf8");
  } catch {
    return cores; // no cgroup v2 quota to read: not in a container, or cgroup v1
  }
  const [quota, period] = text.trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  if (quota === "max" || !(q > 0) || !(p > 0)) return cores;
  return Math.max(1, Math.min(cores, Math.ceil(q / p)));
}

/** Settles how Redis is reached: REDIS_URL, or Sentinel from the URL or from REDIS_SENTINELS. */
function redisTarget(out: Record<string, unknown>, problems: string[]): void {
  if (problems.some((p) => p.startsWith("REDIS_"))) return; // a bad value was named already
  const url = out.redisUrl as string | undefined;
  const name = out.redisSentinelName as string | undefined;
  const listed = out.redisSentinels !== undefined;
  if (url?.startsWith(SENTINEL_SCHEME)) {
    const parsed = parseSentinelUrl(url) as { sentinels: HostPort[]; name: string };
    out.redisUrl = undefined;
    if (listed || name !== undefined) {
      problems.push(
        "REDIS_SENTINELS (--redis-sentinels): REDIS_URL already names the sentinels and the master; unset REDIS_SENTINELS and REDIS_SENTINEL_NAME",
      );
      return;
    }
    out.redisSentinels = parsed.sentinels;
    out.redisSentinelName = parsed.name;
    return;
  }
  if (listed && url !== undefined) {
    problems.push(
      "REDIS_SENTINELS (--redis-sentinels): set either REDIS_URL (one Redis) or REDIS_SENTINELS (Sentinel), not both",
    );
  } else if (listed && name === undefined) {
    problems.push(
      "REDIS_SENTINEL_NAME (--redis-sentinel-name): required with REDIS_SENTINELS, the name in the sentinels' `sentinel monitor <name> ...`",
    );
  } else if (!listed && name !== undefined) {
    problems.push(
      "REDIS_SENTINEL_NAME (--redis-sentinel-name): set only with REDIS_SENTINELS, e.g. REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379",
    );
  }
}

/** `--help` text for the settings, generated from the same table. */
export function settingsHelp(): string {
  const lines: string[] = [];
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const flag = `--${flagName(spec.env)}`;
    const def =
      spec.default !== undefined ? ` [default ${spec.default}]` : spec.required ? " [required]" : "";
    lines.push(`  ${flag.padEnd(26)} ${spec.env}${spec.kind === "secret" ? " / _FILE" : ""}${def}`);
    lines.push(`  ${"".padEnd(26)} ${spec.help}`);
  }
  return lines.join("\n");
}
