/**
 * What the conformance suite runs against: any Mattermost given by URL and tokens, or the
 * built-in simulator. Assertions only talk HTTP/WebSocket to `url`; the setup they need (users,
 * statuses, settings) goes through an `Admin`: Mattermost's own admin API on a real server, the
 * simulator's methods on the simulator (which serves only what the gateway reads).
 *
 *   CONFORMANCE_MATTERMOST_URL    a Mattermost (unset: the simulator)
 *   CONFORMANCE_ADMIN_TOKEN       a system admin's token (session or personal access token): setup
 *   CONFORMANCE_GATEWAY_TOKEN     optional: the token the assertions read with, as the gateway
 *                                 would: a system-admin bot's access token (default: the admin's;
 *                                 bots cannot create the bots the setup needs, hence two)
 *   CONFORMANCE_BOT_TOKEN         optional: a token without manage_system (e.g. a plain bot's)
 *   CONFORMANCE_RATE_LIMIT_HEADER optional: RateLimitSettings.VaryByHeader of that server, which lets
 *                                 the 429 assertion exhaust a bucket of its own
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PLUGIN_ID } from "../../src/mattermost/plugin-settings.js";
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";

export interface TestUser {
  id: string;
  username: string;
  email: string;
  isBot: boolean;
}

/** Settings the suite flips, named by their place in Mattermost's config. */
export interface SettingsPatch {
  ShowEmailAddress?: boolean;
  EnableUserStatuses?: boolean;
  /** PluginSettings.Plugins[id] (undefined: remove it). */
  plugin?: { id: string; settings: Record<string, unknown> | undefined };
}

export interface Admin {
  createUser(opts?: { bot?: boolean }): Promise<TestUser>;
  /** PUT /users/{id}/status; dndEndTime in seconds since the epoch, as Mattermost takes it. */
  setStatus(userId: string, status: SimStatus, dndEndTime?: number): Promise<void>;
  /** Turns the user's auto-responder on, which is how Mattermost sets `ooo`. */
  setOutOfOffice(user: TestUser): Promise<void>;
  deactivate(user: TestUser): Promise<void>;
  reactivate(user: TestUser): Promise<void>;
  /** Changes a profile field (Mattermost broadcasts user_updated). */
  touch(user: TestUser): Promise<void>;
  /** Applies a settings patch; resolves with one that restores what was there. */
  patch(p: SettingsPatch): Promise<SettingsPatch>;
  /** Whether Mattermost has this plugin installed (its manifest known, enabled or not). */
  pluginInstalled(id: string): Promise<boolean>;
  /** Installs and enables this repository's plugin bundle; true, or why it cannot. */
  installPlugin(): Promise<true | string>;
  /** Deactivates the users this Admin created (a real server cannot delete them by default), and
   * removes the plugin bundle if it installed it. */
  cleanup(): Promise<void>;
}

export interface Target {
  kind: "real" | "simulator";
  url: string;
  /** What the assertions read with (the gateway's kind of token, with manage_system). */
  token: string;
  tokenUserId: string;
  /** What the setup (Admin) writes with. */
  adminToken: string;
  /** undefined: the assertions about a non-admin's view are skipped, saying why. */
  plainToken: string | undefined;
  rateLimitHeader: string | undefined;
  admin: Admin;
  /** The simulator, in simulator mode (to inject the 429 it cannot produce otherwise). */
  sim: MattermostSimulator | undefined;
  api(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  close(): Promise<void>;
}

export const SIM_ADMIN_TOKEN = "confadmintoken00000000000a";
export const SIM_PLAIN_TOKEN = "confplaintoken00000000000b";

/** A short random tag so names never collide with earlier runs on a long-lived server. */
export function tag(): string {
  return randomBytes(4).toString("hex");
}

function apiFn(url: string, defaultToken: string): Target["api"] {
  return (path, init = {}) => {
    const { token = defaultToken, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (token !== null) headers.set("Authorization", `Bearer ${token}`);
    if (typeof rest.body === "string" && !headers.has("Content-Type"))
      headers.set("Content-Type", "application/json");
    return fetch(`${url}/api/v4/${path}`, { ...rest, headers });
  };
}

export async function openTarget(env: NodeJS.ProcessEnv = process.env): Promise<Target> {
  const url = env.CONFORMANCE_MATTERMOST_URL?.replace(/\/+$/, "");
  if (url) {
    const adminToken = env.CONFORMANCE_ADMIN_TOKEN;
    if (!adminToken) throw new Error("CONFORMANCE_MATTERMOST_URL is set but CONFORMANCE_ADMIN_TOKEN is not");
    const token = env.CONFORMANCE_GATEWAY_TOKEN || adminToken;
    const api = apiFn(url, token);
    const me = await api("users/me");
    if (me.status !== 200) throw new Error(`the suite's token: users/me answered ${me.status}`);
    const tokenUserId = ((await me.json()) as { id: string }).id;
    return {
      kind: "real",
      url,
      token,
      tokenUserId,
      adminToken,
      plainToken: env.CONFORMANCE_BOT_TOKEN || undefined,
      rateLimitHeader: env.CONFORMANCE_RATE_LIMIT_HEADER || undefined,
      admin: new RestAdmin(apiFn(url, adminToken)),
      sim: undefined,
      api,
      close: async () => undefined,
    };
  }
  const sim = new MattermostSimulator({ token: SIM_ADMIN_TOKEN, plainToken: SIM_PLAIN_TOKEN, users: 5 });
  const simUrl = await sim.start(0);
  return {
    kind: "simulator",
    url: simUrl,
    token: SIM_ADMIN_TOKEN,
    tokenUserId: sim.botUser.id,
    adminToken: SIM_ADMIN_TOKEN,
    plainToken: SIM_PLAIN_TOKEN,
    rateLimitHeader: undefined,
    admin: new SimAdmin(sim),
    sim,
    api: apiFn(simUrl, SIM_ADMIN_TOKEN),
    close: () => sim.stop(),
  };
}

/** How many times a setup request answered 429 is tried before the setup fails. */
const SETUP_429_RETRIES = 30;

class RestAdmin implements Admin {
  private readonly created: TestUser[] = [];
  private installedPlugin = false;

  constructor(private readonly api: Target["api"]) {}

  /**
   * One setup write or read. A 429 is waited out (Retry-After, else 1 s) and retried, a bounded
   * number of times: setup is not what is asserted, and with the server's rate limiter on (CI
   * starts it so, for the 429 assertion) creating 200+ bots with one token outruns it.
   */
  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.api(path, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status === 429 && attempt < SETUP_429_RETRIES) {
        const wait = Number(res.headers.get("Retry-After"));
        await sleep(Number.isFinite(wait) && wait > 0 ? Math.min(wait, 10) * 1000 : 1000);
        continue;
      }
      if (!res.ok) throw new Error(`setup ${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
      return (text ? JSON.parse(text) : null) as T;
    }
  }

  async createUser(opts: { bot?: boolean } = {}): Promise<TestUser> {
    const username = `conf-${tag()}`;
    let u: TestUser;
    if (opts.bot) {
      const b = await this.call<{ user_id: string; username: string }>("POST", "bots", {
        username,
        display_name: username,
      });
      const p = await this.call<{ email: string }>("GET", `users/${b.user_id}`);
      u = { id: b.user_id, username: b.username, email: p.email, isBot: true };
    } else {
      const p = await this.call<{ id: string; username: string; email: string }>("POST", "users", {
        username,
        email: `${username}@Example.com`,
        password: `Pw-${tag()}-${tag()}!`,
      });
      u = { id: p.id, username: p.username, email: p.email, isBot: false };
    }
    this.created.push(u);
    return u;
  }

  async setStatus(userId: string, status: SimStatus, dndEndTime?: number): Promise<void> {
    await this.call("PUT", `users/${userId}/status`, {
      user_id: userId,
      status,
      ...(dndEndTime === undefined ? {} : { dnd_end_time: dndEndTime }),
    });
  }

  async setOutOfOffice(user: TestUser): Promise<void> {
    const p = await this.call<{ notify_props: Record<string, string> }>("GET", `users/${user.id}`);
    await this.call("PUT", `users/${user.id}/patch`, {
      notify_props: {
        ...p.notify_props,
        auto_responder_active: "true",
        auto_responder_message: "Out of office",
      },
    });
  }

  async deactivate(user: TestUser): Promise<void> {
    if (user.isBot) await this.call("POST", `bots/${user.id}/disable`);
    // What the System Console does (DELETE users/{id} also deactivates, without user_activation_status_change).
    else await this.call("PUT", `users/${user.id}/active`, { active: false });
  }

  async reactivate(user: TestUser): Promise<void> {
    if (user.isBot) await this.call("POST", `bots/${user.id}/enable`);
    else await this.call("PUT", `users/${user.id}/active`, { active: true });
  }

  async touch(user: TestUser): Promise<void> {
    if (user.isBot) await this.call("PUT", `bots/${user.id}`, { display_name: `touched ${tag()}` });
    else await this.call("PUT", `users/${user.id}/patch`, { first_name: `Touched${tag()}` });
  }

  async patch(p: SettingsPatch): Promise<SettingsPatch> {
    const cfg = await this.call<{
      PrivacySettings: { ShowEmailAddress: boolean };
      ServiceSettings: { EnableUserStatuses: boolean };
      PluginSettings: { Plugins: Record<string, Record<string, unknown>> };
    }>("GET", "config");
    const undo: SettingsPatch = {};
    const body: Record<string, Record<string, unknown>> = {};
    if (p.ShowEmailAddress !== undefined) {
      undo.ShowEmailAddress = cfg.PrivacySettings.ShowEmailAddress;
      body.PrivacySettings = { ShowEmailAddress: p.ShowEmailAddress };
    }
    if (p.EnableUserStatuses !== undefined) {
      undo.EnableUserStatuses = cfg.ServiceSettings.EnableUserStatuses;
      body.ServiceSettings = { EnableUserStatuses: p.EnableUserStatuses };
    }
    if (p.plugin) {
      // GET /config leaves out the settings of plugins that are not installed, and a save replaces
      // the whole Plugins map with the one sent: so those are lost (what the System Console does too).
      undo.plugin = { id: p.plugin.id, settings: cfg.PluginSettings.Plugins[p.plugin.id] };
      const plugins = { ...cfg.PluginSettings.Plugins };
      if (p.plugin.settings === undefined) delete plugins[p.plugin.id];
      else plugins[p.plugin.id] = p.plugin.settings;
      body.PluginSettings = { Plugins: plugins };
    }
    await this.call("PUT", "config/patch", body);
    return undo;
  }

  async pluginInstalled(id: string): Promise<boolean> {
    const p = await this.call<{ active: { id: string }[]; inactive: { id: string }[] }>("GET", "plugins");
    return [...p.active, ...p.inactive].some((m) => m.id === id);
  }

  async installPlugin(): Promise<true | string> {
    if (await this.pluginInstalled(PLUGIN_ID)) return true;
    const cfg = await this.call<{ PluginSettings: { Enable: boolean; EnableUploads: boolean } }>(
      "GET",
      "config",
    );
    if (!cfg.PluginSettings.Enable) return "PluginSettings.Enable is off on this server";
    if (!cfg.PluginSettings.EnableUploads) {
      return "PluginSettings.EnableUploads is off on this server (Mattermost lets only config.json change it)";
    }
    // The bundle is built by plugin/bundle.ts (compiled next to this file's tree in dist/).
    const bundlePath = new URL("../../plugin/bundle.js", import.meta.url);
    if (!existsSync(bundlePath))
      return `no compiled plugin bundler at ${bundlePath.pathname}: run npm run build`;
    const { bundle } = (await import(bundlePath.href)) as { bundle: (outDir: string) => string };
    const out = mkdtempSync(join(tmpdir(), "conf-plugin-"));
    try {
      const form = new FormData();
      form.set("plugin", new Blob([readFileSync(bundle(out))]), "plugin.tar.gz");
      form.set("force", "true");
      const res = await this.api("plugins", { method: "POST", body: form });
      if (res.status !== 201)
        return `POST /plugins answered ${res.status}: ${(await res.text()).slice(0, 300)}`;
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    this.installedPlugin = true;
    await this.call("POST", `plugins/${PLUGIN_ID}/enable`);
    return true;
  }

  async cleanup(): Promise<void> {
    for (const u of this.created.splice(0)) await this.deactivate(u).catch(() => undefined);
    if (this.installedPlugin) await this.call("DELETE", `plugins/${PLUGIN_ID}`).catch(() => undefined);
    this.installedPlugin = false;
  }
}

class SimAdmin implements Admin {
  constructor(private readonly sim: MattermostSimulator) {}

  async createUser(opts: { bot?: boolean } = {}): Promise<TestUser> {
    const username = `conf-${tag()}`;
    const u = this.sim.addUser({
      username,
      is_bot: opts.bot ?? false,
      email: opts.bot ? `${username}@localhost` : `${username}@Example.com`,
    });
    return { id: u.id, username: u.username, email: u.email, isBot: u.is_bot };
  }

  async setStatus(userId: string, status: SimStatus, dndEndTime?: number): Promise<void> {
    this.sim.setStatus(userId, status, dndEndTime);
  }

  async setOutOfOffice(user: TestUser): Promise<void> {
    this.sim.setStatus(user.id, "ooo");
  }

  async deactivate(user: TestUser): Promise<void> {
    this.sim.deactivateUser(user.id);
  }

  async reactivate(user: TestUser): Promise<void> {
    this.sim.reactivateUser(user.id);
  }

  async touch(user: TestUser): Promise<void> {
    this.sim.updateUser(user.id, { first_name: `Touched${tag()}` });
  }

  async patch(p: SettingsPatch): Promise<SettingsPatch> {
    const undo: SettingsPatch = {};
    const cfg = this.sim.config;
    if (p.ShowEmailAddress !== undefined) {
      undo.ShowEmailAddress = cfg.showEmailAddress;
      this.sim.setEmailsVisible(p.ShowEmailAddress);
    }
    if (p.EnableUserStatuses !== undefined) {
      undo.EnableUserStatuses = cfg.enableUserStatuses;
      this.sim.setEnableUserStatuses(p.EnableUserStatuses);
    }
    if (p.plugin) {
      undo.plugin = { id: p.plugin.id, settings: cfg.pluginSettings[p.plugin.id] };
      this.sim.setPluginSettings(p.plugin.id, p.plugin.settings, {
        installed: cfg.installedPlugins.includes(p.plugin.id),
      });
    }
    return undo;
  }

  async pluginInstalled(id: string): Promise<boolean> {
    return this.sim.config.installedPlugins.includes(id);
  }

  async installPlugin(): Promise<true | string> {
    this.sim.setPluginInstalled(PLUGIN_ID, true);
    return true;
  }

  async cleanup(): Promise<void> {}
}
