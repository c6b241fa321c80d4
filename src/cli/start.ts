import { ConfigError, loadConfig, type Config } from "../config/load.js";
import { Gateway } from "../gateway.js";
import { watchSecretFiles } from "../config/watch-secrets.js";
import { SecretScrubber, createLogger } from "../log.js";
import { PluginSettingsError } from "../mattermost/plugin-settings.js";
import { BrokerError } from "../broker/index.js";

export function secretsOf(config: Config): string[] {
  return [
    config.mattermostToken,
    config.secret ?? "",
    config.secretPrevious ?? "",
    config.metricsToken ?? "",
    config.adminToken ?? "",
  ];
}

/** `outlook-presence start`: the gateway, until SIGTERM or SIGINT. */
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
  const log = createLogger(config.logLevel, scrubber);
  for (const w of warnings) log.warn({ event: "config_warning" }, w);

  const gateway = new Gateway(config, log, undefined, (secrets) => scrubber.add(secrets));
  try {
    await gateway.start();
  } catch (err) {
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

  /** Re-reads the token and secrets (SIGHUP: always; a changed file: only when a value differs). */
  const reload = (reason: "SIGHUP" | "file_changed"): void => {
    try {
      const next = loadConfig(argv).config;
      if (reason === "file_changed" && secretsOf(next).join("\n") === secretsOf(config).join("\n")) return;
      scrubber.add(secretsOf(next));
      log.info({ event: "reload", reason }, `re-reading the secret and token (${reason})`);
      gateway.reload(next);
      config = next;
    } catch (err) {
      log.error(
        { event: "reload_failed", reason, err: (err as Error).message },
        "reload failed; keeping the current settings",
      );
    }
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
      log.info({ event: "stopping", signal, sockets: gateway.hub.size }, "stopping");
      void gateway.stop().then(() => {
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
