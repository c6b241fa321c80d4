/**
 * Conformance: GET config as the gateway reads it for the old plugin's settings
 * (PluginSettings.Plugins["com.mattermost.outlook-presence"]), installed or not, in both key casings.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { PLUGIN_ID, parsePluginSettings } from "../../src/mattermost/plugin-settings.js";
import { jsonOf, useTarget } from "./suite.js";
import { tag } from "./target.js";

const target = useTarget();

interface Config {
  PluginSettings: { Enable: boolean; Plugins: Record<string, Record<string, unknown>> };
  ServiceSettings: { EnableUserStatuses: boolean };
  PrivacySettings: { ShowEmailAddress: boolean };
}

const getConfig = async (): Promise<Config> => jsonOf<Config>(await target().api("config"));

test("GET config (admin) answers PluginSettings.Plugins as an object of objects", async () => {
  const cfg = await getConfig();
  assert.equal(typeof cfg.PluginSettings.Plugins, "object");
  for (const v of Object.values(cfg.PluginSettings.Plugins)) assert.equal(typeof v, "object");
});

test("GET config (admin) answers ServiceSettings.EnableUserStatuses and PrivacySettings.ShowEmailAddress as booleans", async () => {
  const cfg = await getConfig();
  assert.equal(typeof cfg.ServiceSettings.EnableUserStatuses, "boolean");
  assert.equal(typeof cfg.PrivacySettings.ShowEmailAddress, "boolean");
});

test("settings saved for a plugin that is not installed are left out of GET config", async (c) => {
  const t = target();
  if (await t.admin.pluginInstalled(PLUGIN_ID)) return c.skip(`${PLUGIN_ID} is installed on this server`);
  const undo = await t.admin.patch({ plugin: { id: PLUGIN_ID, settings: { Secret: `s${tag()}` } } });
  c.after(() => t.admin.patch(undo));
  const cfg = await getConfig();
  assert.equal(cfg.PluginSettings.Plugins[PLUGIN_ID], undefined);
});

test("the gateway reads a not-installed plugin's settings as missing, and says what to do", async (c) => {
  const t = target();
  if (await t.admin.pluginInstalled(PLUGIN_ID)) return c.skip(`${PLUGIN_ID} is installed on this server`);
  const undo = await t.admin.patch({ plugin: { id: PLUGIN_ID, settings: { Secret: `s${tag()}` } } });
  c.after(() => t.admin.patch(undo));
  const cfg = await getConfig();
  assert.throws(
    () => parsePluginSettings(cfg),
    (err: Error & { problem?: string }) => {
      assert.equal(err.problem, "missing");
      assert.match(err.message, /PRESENCE_SECRET/);
      assert.match(err.message, /install/);
      assert.match(err.message, /not installed/, "says why the settings are missing");
      return true;
    },
  );
});

for (const key of ["Secret", "secret"]) {
  test(`with the plugin bundle installed, a "${key}" setting comes back under that key, unmasked`, async (c) => {
    const t = target();
    const installed = await t.admin.installPlugin();
    if (installed !== true) return c.skip(installed);
    const secret = `s${tag()}${tag()}`;
    const undo = await t.admin.patch({
      plugin: { id: PLUGIN_ID, settings: { [key]: secret, PerPageStatuses: 50 } },
    });
    c.after(() => t.admin.patch(undo));
    const cfg = await getConfig();
    assert.equal(cfg.PluginSettings.Plugins[PLUGIN_ID]?.[key], secret);
  });

  test(`with the plugin bundle installed, the gateway reads a "${key}" setting and PerPageStatuses`, async (c) => {
    const t = target();
    const installed = await t.admin.installPlugin();
    if (installed !== true) return c.skip(installed);
    const secret = `s${tag()}${tag()}`;
    const undo = await t.admin.patch({
      plugin: { id: PLUGIN_ID, settings: { [key]: secret, PerPageStatuses: 50 } },
    });
    c.after(() => t.admin.patch(undo));
    assert.deepEqual(parsePluginSettings(await getConfig()), { secret, pageSize: 50 });
  });
}
