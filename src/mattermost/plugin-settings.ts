import type { SharedPluginSettings } from "../broker/types.js";
import type { Logger } from "../log.js";
import type { MattermostClient } from "./client.js";
import { UpstreamError } from "./errors.js";

/** The old plugin's id: its settings live under PluginSettings.Plugins[PLUGIN_ID]. */
export const PLUGIN_ID = "com.mattermost.outlook-presence";

/**
 * Mattermost's config API replaces the values of settings an installed plugin's manifest marks
 * `secret` with a fixed run of asterisks, and leaves out every setting of a plugin that is not
 * installed (Mattermost 11.4, conformance suite).
 */
const MASKED = /^\*{8,}$/;

export interface PluginSettings {
  secret: string;
  /** PerPageStatuses, when set to a positive whole number. */
  pageSize: number | undefined;
}

export type PluginSettingsProblem = "forbidden" | "missing" | "obfuscated" | "no-secret";

/** A problem that restarting will not fix: the admin must change a setting. Says which. */
export class PluginSettingsError extends Error {
  constructor(
    readonly problem: PluginSettingsProblem,
    message: string,
  ) {
    super(message);
    this.name = "PluginSettingsError";
  }
}

/** Looks a key up ignoring case: Mattermost keeps plugin setting keys as `secret` or `Secret`. */
function pick(settings: Record<string, unknown>, key: string): unknown {
  const want = key.toLowerCase();
  for (const [k, v] of Object.entries(settings)) if (k.toLowerCase() === want) return v;
  return undefined;
}

/** Reads the plugin's two settings out of GET /api/v4/config's answer. Pure; throws PluginSettingsError. */
export function parsePluginSettings(config: unknown): PluginSettings {
  const plugins = (config as { PluginSettings?: { Plugins?: Record<string, unknown> } } | null)
    ?.PluginSettings?.Plugins;
  const raw = plugins?.[PLUGIN_ID];
  if (typeof raw !== "object" || raw === null) {
    throw new PluginSettingsError(
      "missing",
      `Mattermost's config has no settings for ${PLUGIN_ID} (its config API leaves out the settings of a plugin that is not installed): set PRESENCE_SECRET (\`outlook-presence secret\` makes one), or install the plugin bundle and generate its secret in the System Console`,
    );
  }
  const settings = raw as Record<string, unknown>;
  const secret = pick(settings, "Secret");
  if (typeof secret === "string" && MASKED.test(secret)) {
    throw new PluginSettingsError(
      "obfuscated",
      `Mattermost hides ${PLUGIN_ID}'s secret from its config API (the installed plugin's manifest marks it secret): set PRESENCE_SECRET to the secret your desktops use (MattermostSecret in the provider's config.json)`,
    );
  }
  if (typeof secret !== "string" || secret.trim() === "") {
    throw new PluginSettingsError(
      "no-secret",
      `${PLUGIN_ID} has no secret in Mattermost: generate one in System Console → Plugins → Outlook Presence, or set PRESENCE_SECRET`,
    );
  }
  const perPage = Number(pick(settings, "PerPageStatuses"));
  return { secret: secret.trim(), pageSize: Number.isInteger(perPage) && perPage > 0 ? perPage : undefined };
}

/** Reads the settings; a 403 becomes a PluginSettingsError naming what to set instead. */
export async function fetchPluginSettings(client: MattermostClient): Promise<PluginSettings> {
  try {
    return parsePluginSettings(await client.getConfig());
  } catch (err) {
    if (err instanceof UpstreamError && err.kind === "forbidden") {
      throw new PluginSettingsError(
        "forbidden",
        "reading the plugin's settings from Mattermost needs a token with manage_system (a system admin's or a system-admin bot's): use such a token, or set PRESENCE_SECRET (and PRESENCE_PAGE_SIZE)",
      );
    }
    throw err;
  }
}

export interface SecretSet {
  /** Accepted secrets, current first. */
  accepted(): readonly string[];
}

/**
 * Follows the plugin's settings in Mattermost: re-read on `config_changed` and periodically. A
 * regenerated secret takes effect at once; the previous one stays accepted for `overlapMs`.
 */
export class PluginSettingsFollower implements SecretSet {
  private current: PluginSettings | undefined;
  private previous: { secret: string; until: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  lastError: string | undefined;

  constructor(
    private readonly opts: {
      client: MattermostClient;
      log: Logger;
      overlapMs: number;
      refreshMs: number;
      /** Extra secrets always accepted (PRESENCE_SECRET / _PREVIOUS when set as well). */
      extra: () => readonly string[];
      onChange?: (s: PluginSettings) => void;
      now?: () => number;
    },
  ) {}

  get settings(): PluginSettings | undefined {
    return this.current;
  }

  /** Seeds the follower with settings read at startup. */
  seed(s: PluginSettings): void {
    this.current = s;
    this.opts.onChange?.(s);
  }

  /** The state to share with other replicas (undefined until read). */
  shared(): SharedPluginSettings | undefined {
    return this.current && { current: this.current, previous: this.previous };
  }

  /** Takes over what the leading replica read (a follower does not read Mattermost itself). */
  adopt(shared: SharedPluginSettings): void {
    const changed =
      this.current?.secret !== shared.current.secret || this.current?.pageSize !== shared.current.pageSize;
    this.current = shared.current;
    this.previous = shared.previous;
    this.lastError = undefined;
    if (changed) this.opts.onChange?.(shared.current);
  }

  accepted(): readonly string[] {
    const now = (this.opts.now ?? Date.now)();
    const out: string[] = [];
    if (this.current) out.push(this.current.secret);
    if (this.previous && this.previous.until > now) out.push(this.previous.secret);
    for (const s of this.opts.extra()) if (s && !out.includes(s)) out.push(s);
    return out;
  }

  start(): void {
    this.timer = setInterval(() => void this.refresh("periodic"), this.opts.refreshMs).unref();
    if (!this.current) void this.refresh("startup");
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Re-reads now (coalescing concurrent calls); failures keep the settings we have. */
  refresh(reason: string): Promise<void> {
    this.reading ??= this.read(reason).finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async read(reason: string): Promise<void> {
    let next: PluginSettings;
    try {
      next = await fetchPluginSettings(this.opts.client);
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastError) {
        this.opts.log.error(
          { event: "plugin_settings_failed", reason },
          `cannot read the plugin's settings: ${msg}`,
        );
      }
      this.lastError = msg;
      return;
    }
    this.lastError = undefined;
    const before = this.current;
    if (before && before.secret === next.secret && before.pageSize === next.pageSize) return;
    if (before && before.secret !== next.secret && this.opts.overlapMs > 0) {
      this.previous = { secret: before.secret, until: (this.opts.now ?? Date.now)() + this.opts.overlapMs };
    }
    this.current = next;
    this.opts.log.info(
      {
        event: "plugin_settings_changed",
        reason,
        secretChanged: before ? before.secret !== next.secret : true,
        pageSize: next.pageSize,
        overlapMs: before ? this.opts.overlapMs : 0,
      },
      before
        ? "the plugin's settings changed in Mattermost"
        : "read the secret from the plugin's settings in Mattermost",
    );
    this.opts.onChange?.(next);
  }
}
