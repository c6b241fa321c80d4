/**
 * Every setting the gateway reads, with its environment variable, its CLI flag and its default.
 * This table is the single source for parsing, validation, `--help` and the docs.
 */
export type SettingKind = "string" | "url" | "int" | "secret" | "enum" | "bool" | "addresses" | "hostports";

export interface SettingSpec {
  /** Environment variable name; the CLI flag is derived from it (see flagName). */
  env: string;
  /** Secrets (kind "secret") may also be read from a file named by `<env>_FILE` / `--<flag>-file`. */
  kind: SettingKind;
  help: string;
  default?: string;
  required?: boolean;
  min?: number;
  max?: number;
  values?: readonly string[];
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export const SETTINGS = [
  {
    env: "MATTERMOST_URL",
    kind: "url",
    required: true,
    help: "Mattermost base URL, e.g. https://chat.example.com",
  },
  {
    env: "MATTERMOST_TOKEN",
    kind: "secret",
    required: true,
    help: "bot or personal access token (a system admin's sees emails)",
  },
  {
    env: "PRESENCE_SECRET",
    kind: "secret",
    help: "secret the Outlook providers send, at least 16 characters (`outlook-presence secret` makes one); unset: read from the old plugin's settings in Mattermost",
  },
  {
    env: "PRESENCE_SETTINGS_FROM_MATTERMOST",
    kind: "bool",
    default: "auto",
    help: "read the secret and page size from the old plugin's System Console settings (auto: when PRESENCE_SECRET is unset)",
  },
  {
    env: "PRESENCE_SECRET_OVERLAP_MS",
    kind: "int",
    default: "0",
    min: 0,
    max: 2_592_000_000,
    help: "after the secret is regenerated in Mattermost, the old one is still accepted this long",
  },
  {
    env: "PRESENCE_HINTS_PER_SECOND",
    kind: "int",
    default: "5",
    min: 1,
    max: 1000,
    help: "at most this many re-read requests per second for /status/publish hints (each covers up to 200 users)",
  },
  {
    env: "PRESENCE_HINTS_PER_ADDRESS",
    kind: "int",
    default: "20",
    min: 1,
    max: 100_000,
    help: "hints accepted per remote address per second (burst twice that); more get 429",
  },
  {
    env: "PRESENCE_SECRET_PREVIOUS",
    kind: "secret",
    help: "previous secret, still accepted while desktops move to the new one",
  },
  {
    env: "PRESENCE_METRICS_TOKEN",
    kind: "secret",
    help: "when set, GET /metrics needs `Authorization: Bearer <token>`",
  },
  {
    env: "PRESENCE_ADMIN_TOKEN",
    kind: "secret",
    help: "opens the /admin page; unset: the presence secret opens it",
  },
  {
    env: "PRESENCE_PAGE_SIZE",
    kind: "int",
    default: "100",
    min: 1,
    max: 10000,
    help: "users per /status page (the old plugin's PerPageStatuses)",
  },
  {
    env: "PRESENCE_POLL_INTERVAL_MS",
    kind: "int",
    default: "3000",
    min: 250,
    max: 3_600_000,
    help: "how often statuses are read from Mattermost",
  },
  {
    env: "PRESENCE_DIRECTORY_REFRESH_MS",
    kind: "int",
    default: "60000",
    min: 1000,
    max: 86_400_000,
    help: "full re-read of the active user list",
  },
  {
    env: "PRESENCE_KEEPALIVE_MS",
    kind: "int",
    default: "20000",
    min: 100,
    max: 600_000,
    help: "every socket gets a real status at least this often (providers reconnect after 30 s of silence)",
  },
  {
    env: "PRESENCE_REPLAY_WINDOW_MS",
    kind: "int",
    default: "120000",
    min: 0,
    max: 86_400_000,
    help: "on connect, replay the latest status of users changed within this window",
  },
  {
    env: "PRESENCE_RESYNC_BYTES_PER_SECOND",
    kind: "int",
    default: "8388608",
    min: 0,
    max: 1_073_741_824,
    help: "a provider that reconnects (no /status read just before) is sent every status again, paced to this many bytes per second over all sockets (0: off)",
  },
  {
    env: "PRESENCE_V2_RETAINED_CHANGES",
    kind: "int",
    default: "10000",
    min: 1,
    max: 10_000_000,
    help: "changes kept for /api/v2/stream clients resuming with since (older: they get a snapshot)",
  },
  {
    env: "PRESENCE_POLL_CONCURRENCY",
    kind: "int",
    default: "4",
    min: 1,
    max: 64,
    help: "status requests in flight at once during a poll cycle",
  },
  {
    env: "PRESENCE_REQUEST_TIMEOUT_MS",
    kind: "int",
    default: "10000",
    min: 100,
    max: 300_000,
    help: "timeout of one request to Mattermost",
  },
  {
    env: "PRESENCE_BACKOFF_MAX_MS",
    kind: "int",
    default: "60000",
    min: 100,
    max: 3_600_000,
    help: "longest wait between retries while Mattermost is failing",
  },
  {
    env: "PRESENCE_WS_MAX_BUFFER_BYTES",
    kind: "int",
    default: "1048576",
    min: 1024,
    max: 1_073_741_824,
    help: "a socket with more unsent bytes than this is closed (1013); the provider reconnects",
  },
  {
    env: "PRESENCE_MAX_BUFFERED_TOTAL_BYTES",
    kind: "int",
    default: "268435456",
    min: 1024,
    max: 68_719_476_736,
    help: "unsent bytes of all WebSockets together; over it, the sockets holding the most are closed (1013) until the rest hold 90%",
  },
  {
    env: "PRESENCE_MAX_CONNECTIONS",
    kind: "int",
    default: "50000",
    min: 1,
    max: 10_000_000,
    help: "WebSocket connections (/ws and /api/v2/stream together) accepted at once; more get 503",
  },
  {
    env: "PRESENCE_WS_PING_INTERVAL_MS",
    kind: "int",
    default: "30000",
    min: 100,
    max: 600_000,
    help: "server pings every socket this often; one without a pong by the next ping is dropped",
  },
  {
    env: "PRESENCE_WORKERS",
    kind: "int",
    default: "auto",
    min: 1,
    max: 256,
    help: "processes accepting connections on the port, fed by one primary that alone talks to Mattermost (auto: one per core); 1: a single process, no cluster",
  },
  {
    env: "PRESENCE_WORKER_STALL_MS",
    kind: "int",
    default: "10000",
    min: 100,
    max: 600_000,
    help: "with workers: a worker that leaves the primary's messages unread this long (its backlog growing in the primary) is killed and replaced",
  },
  {
    env: "PRESENCE_SHUTDOWN_GRACE_MS",
    kind: "int",
    default: "10000",
    min: 0,
    max: 600_000,
    help: "on SIGTERM/SIGINT, how long in-flight work may take before the process exits",
  },
  {
    env: "PRESENCE_AUTH_FAILURE_BURST",
    kind: "int",
    default: "20",
    min: 0,
    max: 1_000_000,
    help: "wrong secrets accepted per remote address per window before they get 429 (0: no limit)",
  },
  {
    env: "PRESENCE_AUTH_FAILURE_WINDOW_MS",
    kind: "int",
    default: "60000",
    min: 1000,
    max: 86_400_000,
    help: "window of PRESENCE_AUTH_FAILURE_BURST; a limited address is answered 429 until it ends",
  },
  {
    env: "PRESENCE_TRUSTED_PROXIES",
    kind: "addresses",
    default: "none",
    help: "reverse proxies (addresses or CIDRs, comma separated; none: no proxy) whose X-Forwarded-For names the client for per-address limits and logs",
  },
  { env: "HOST", kind: "string", default: "0.0.0.0", help: "address to listen on" },
  {
    env: "PORT",
    kind: "int",
    default: "8080",
    min: 0,
    max: 65535,
    help: "port to listen on (0: any free port)",
  },
  { env: "LOG_LEVEL", kind: "enum", default: "info", values: LOG_LEVELS, help: "log level" },
  {
    env: "REDIS_URL",
    kind: "url",
    help: "Redis shared by several replicas (unset: one instance, all state in memory); redis+sentinel://host:port,host:port/name goes through Redis Sentinel",
  },
  {
    env: "REDIS_SENTINELS",
    kind: "hostports",
    help: "Redis Sentinel addresses (host:port, comma separated) instead of REDIS_URL; the master is the one named by REDIS_SENTINEL_NAME",
  },
  {
    env: "REDIS_SENTINEL_NAME",
    kind: "string",
    help: "name of the master the sentinels monitor (their `sentinel monitor <name> ...`)",
  },
  {
    env: "PRESENCE_BROKER",
    kind: "enum",
    default: "auto",
    values: ["auto", "memory", "redis"],
    help: "how replicas share state: memory (one instance) or redis (auto: redis when REDIS_URL or REDIS_SENTINELS is set)",
  },
  {
    env: "PRESENCE_LEADER_TTL_MS",
    kind: "int",
    default: "10000",
    min: 1000,
    max: 600_000,
    help: "lease of the replica that polls Mattermost; another takes over this long after it dies",
  },
  {
    env: "PRESENCE_REDIS_PREFIX",
    kind: "string",
    default: "outlook-presence",
    help: "prefix of every Redis key, so deployments can share one Redis",
  },
] as const satisfies readonly SettingSpec[];

export type SettingEnv = (typeof SETTINGS)[number]["env"];

/** `PRESENCE_POLL_INTERVAL_MS` → `poll-interval-ms`; `MATTERMOST_URL` → `mattermost-url`. */
export function flagName(env: string): string {
  return env
    .replace(/^PRESENCE_/, "")
    .toLowerCase()
    .replace(/_/g, "-");
}
