import { MAKE_A_SECRET, MIN_SECRET_LENGTH, secretWeakness, type Config } from "../config/load.js";
import type { Logger } from "../log.js";
import type { MattermostClient } from "../mattermost/client.js";
import {
  PluginSettingsError,
  PluginSettingsFollower,
  fetchPluginSettings,
} from "../mattermost/plugin-settings.js";
import type { SharedPluginSettings } from "../broker/types.js";

/**
 * Where the accepted secrets and the page size come from: PRESENCE_SECRET (and _PREVIOUS), or
 * the old plugin's settings in Mattermost, followed while this process leads and adopted from
 * the leader (or the primary) otherwise. Reloaded on SIGHUP.
 */
export class SecretSource {
  /** Set when the secret comes from the old plugin's settings in Mattermost. */
  readonly pluginSettings: PluginSettingsFollower | undefined;

  constructor(
    private readonly opts: {
      config: () => Config;
      client: MattermostClient;
      log: Logger;
      /** Told every accepted secret whenever they change, so the log scrubber knows them. */
      onSecrets: (secrets: readonly string[]) => void;
      /** Told the plugin's settings whenever they are read anew, to share with other replicas. */
      onShared: (shared: SharedPluginSettings) => void;
    },
  ) {
    const config = opts.config();
    if (config.settingsFromMattermost) {
      this.pluginSettings = new PluginSettingsFollower({
        client: opts.client,
        log: opts.log,
        overlapMs: config.secretOverlapMs,
        refreshMs: config.directoryRefreshMs,
        extra: () => staticSecrets(this.opts.config()),
        onChange: (settings) => {
          this.warnIfWeak(settings.secret);
          this.opts.onSecrets(this.secrets());
          this.share();
        },
      });
    }
  }

  /** Accepted secrets, current first. */
  secrets(): readonly string[] {
    return this.pluginSettings ? this.pluginSettings.accepted() : staticSecrets(this.opts.config());
  }

  /** PRESENCE_PAGE_SIZE when set, else the plugin's PerPageStatuses when read from Mattermost. */
  pageSize(): number {
    const config = this.opts.config();
    const fromMattermost = this.pluginSettings?.settings?.pageSize;
    return config.pageSizeExplicit || fromMattermost === undefined ? config.pageSize : fromMattermost;
  }

  /** Set while the secret comes from Mattermost and has not been read (or adopted) yet. */
  pending(): { lastError: string | undefined } | undefined {
    const p = this.pluginSettings;
    return p && !p.settings ? { lastError: p.lastError } : undefined;
  }

  /**
   * Reads the plugin's settings once before listening. A setting only an admin can fix (no
   * permission, no secret, masked) rejects with PluginSettingsError; an unreachable Mattermost
   * does not: the gateway starts, not ready, and keeps trying.
   */
  async seed(): Promise<void> {
    this.opts.onSecrets(this.secrets());
    if (!this.pluginSettings) return;
    try {
      this.pluginSettings.seed(await fetchPluginSettings(this.opts.client));
    } catch (err) {
      if (err instanceof PluginSettingsError) throw err;
      this.opts.log.warn(
        { event: "plugin_settings_failed", reason: "startup" },
        `cannot read the plugin's settings yet (${(err as Error).message}); retrying`,
      );
    }
  }

  /** While leading: follow the settings in Mattermost (and share what is read). */
  follow(): void {
    this.pluginSettings?.start();
    this.share();
  }

  unfollow(): void {
    this.pluginSettings?.stop();
  }

  /** Mattermost said its config changed: re-read now. */
  refresh(): void {
    void this.pluginSettings?.refresh("config_changed");
  }

  /** What the leader (or the primary) read, taken over by a replica that does not read it. */
  adopt(shared: SharedPluginSettings): void {
    this.pluginSettings?.adopt(shared);
  }

  shared(): SharedPluginSettings | undefined {
    return this.pluginSettings?.shared();
  }

  /** After the static secrets were replaced (SIGHUP): tell the scrubber. */
  reloaded(): void {
    this.opts.onSecrets(this.secrets());
  }

  private share(): void {
    const shared = this.pluginSettings?.shared();
    if (shared) this.opts.onShared(shared);
  }

  /**
   * The old plugin's secret is served even when too short: refusing it would lock out every
   * desktop of a drop-in migration. It is said loudly instead, on every change (and by `doctor`).
   */
  private warnIfWeak(secret: string): void {
    const weakness = secretWeakness(secret);
    if (!weakness) return;
    this.opts.log.error(
      { event: "weak_secret", source: "mattermost", length: secret.length, minLength: MIN_SECRET_LENGTH },
      `the old plugin's secret in Mattermost is ${weakness}: anyone can guess it and open /status and /admin; regenerate it in System Console › Plugins › Outlook Presence, or set PRESENCE_SECRET: ${MAKE_A_SECRET}`,
    );
  }
}

/** PRESENCE_SECRET and PRESENCE_SECRET_PREVIOUS, those that are set. */
export function staticSecrets(config: Config): string[] {
  return [config.secret, config.secretPrevious].filter((s): s is string => s !== undefined);
}
