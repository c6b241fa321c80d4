import cluster from "node:cluster";
import { ConfigError, loadConfig, type Config } from "../config/load.js";
import { Gateway } from "../gateway.js";
import { watchSecretFiles } from "../config/watch-secrets.js";
import { destination as pinoDestination } from "pino";
import { SecretScrubber, createLogger, defaultDestination, type Logger } from "../log.js";
import { PluginSettingsError } from "../mattermost/plugin-settings.js";
import { BrokerError } from "../broker/index.js";
import { ClusterPrimary } from "../cluster/primary.js";
import { runWorker } from "../cluster/worker.js";

export function secretsOf(config: Config): string[] {
  return [
    config.mattermostToken,
    config.secret ?? "",
    config.secretPrevious ?? "",
    config.metricsToken ?? "",
    config.adminToken ?? "",
  ];
}

type ReloadReason = "SIGHUP" | "file_changed";

/**
 * `outlook-presence start`: the gateway, until SIGTERM or SIGINT. With PRESENCE_WORKERS=1, one
 * process does everything; above that, this process is the primary (it alone talks to Mattermost
 * and Redis) and forks the workers, which run this same command (see src/cluster).
 */
export async function runStart(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(
      "Usage: outlook-presence start [flags]; see outlook-presence --help for the settings\n",
    );
    return 0;
  }
  let config: Config;
  let warnings: string[];
  try {
    ({ config, warnings } = loadConfig(argv));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`outlook-presence: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const scrubber = new SecretScrubber();
  scrubber.set(secretsOf(config));
  const onSecrets = (secrets: readonly string[]) => scrubber.add(secrets);

  /** Re-reads the token and secrets (SIGHUP: always; a changed file: only when a value differs). */
  const reloader =
    (log: Logger) =>
    (gateway: Gateway, reason: ReloadReason): boolean => {
      try {
        const next = loadConfig(argv).config;
        if (reason === "file_changed" && secretsOf(next).join("\n") === secretsOf(config).join("\n")) {
          return false;
        }
        scrubber.add(secretsOf(next));
        log.info({ event: "reload", reason }, `re-reading the secret and token (${reason})`);
        gateway.reload(next);
        config = next;
        return true;
      } catch (err) {
        log.error(
          { event: "reload_failed", reason, err: (err as Error).message },
          "reload failed; keeping the current settings",
        );
        return false;
      }
    };

  // With workers, every process writes to the same stdout: one write per line (atomic on a pipe
  // up to 4 KiB) so that lines of different processes never interleave mid-line.
  const destination =
    config.workers > 1 && !process.stdout.isTTY
      ? pinoDestination({ dest: 1, sync: true })
      : defaultDestination();
  if (cluster.isWorker) {
    const id = process.env.PRESENCE_WORKER_ID ?? String(cluster.worker?.id ?? 0);
    const log = createLogger(config.logLevel, scrubber, destination).child({ worker: id });
    const reload = reloader(log);
    return runWorker(config, log, onSecrets, (gateway, reason) => void reload(gateway, reason));
  }

  const log = createLogger(config.logLevel, scrubber, destination);
  for (const w of warnings) log.warn({ event: "config_warning" }, w);
  const workers = config.workers > 1 ? config.workers : 0;
  const gateway = new Gateway(config, log, undefined, onSecrets, {
    kind: workers > 0 ? "primary" : "single",
  });
  const primary =
    workers > 0
      ? new ClusterPrimary({
          gateway,
          log,
          workers,
          authFailureBurst: config.authFailureBurst,
          authFailureWindowMs: config.authFailureWindowMs,
          workerStallMs: config.workerStallMs,
        })
      : undefined;
  try {
    await gateway.start();
  } catch (err) {
    return startFailed(err, log, config);
  }
  if (primary) {
    try {
      const port = await primary.start();
      log.info(
        { event: "listening", host: config.host, port, workers },
        `gateway listening on ${config.host}:${port} with ${workers} workers`,
      );
    } catch (err) {
      await gateway.stop(1000);
      return startFailed(err, log, config);
    }
  }

  const reloadOne = reloader(log);
  const reload = (reason: ReloadReason): void => {
    // The workers read the same files and environment, so each reloads itself.
    if (reloadOne(gateway, reason) || reason === "SIGHUP") primary?.reload(reason);
  };
  const unwatch = watchSecretFiles(Object.values(config.secretFiles), () => reload("file_changed"), {
    onError: (err) =>
      log.warn(
        { event: "secret_watch_failed", err: err.message },
        "cannot watch the secret files; use SIGHUP",
      ),
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      unwatch();
      const sockets = primary ? primary.sockets : gateway.hub.size;
      log.info({ event: "stopping", signal, sockets }, "stopping");
      const graceMs = config.shutdownGraceMs;
      void Promise.all([gateway.stop(graceMs), primary?.stop(graceMs)]).then(() => {
        log.info({ event: "stopped" }, "stopped");
        log.flush();
        resolve(0);
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    process.on("SIGHUP", () => reload("SIGHUP"));
  });
}

/** The exit code (and the one fatal line) for a gateway that could not start. */
function startFailed(err: unknown, log: Logger, config: Config): number {
  if (err instanceof PluginSettingsError) {
    log.fatal({ event: "plugin_settings_unusable", problem: err.problem }, err.message);
    log.flush();
    process.stderr.write(`outlook-presence: ${err.message}\n`);
    return 2;
  }
  if (err instanceof BrokerError) {
    log.fatal({ event: "broker_unreachable" }, err.message);
    log.flush();
    process.stderr.write(`outlook-presence: ${err.message}\n`);
    return 1;
  }
  log.fatal(
    { event: "listen_failed", err: (err as Error).message },
    `cannot listen on ${config.host}:${config.port}`,
  );
  log.flush();
  return 1;
}
