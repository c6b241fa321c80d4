import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { bundle } from "../../plugin/bundle.js";

const PLUGIN_ID = "com.mattermost.outlook-presence";

interface Registered {
  id: string;
  plugin: { initialize(registry: unknown, store: unknown): void };
}

/** Loads the compiled web app script with a fake `window`, as Mattermost's web app would. */
async function loadWebapp(): Promise<{
  handlers: Map<string, (msg: unknown) => void>;
  posts: { url: string; body: unknown }[];
}> {
  let registered: Registered | undefined;
  const posts: { url: string; body: unknown }[] = [];
  const g = globalThis as Record<string, unknown>;
  g.window = { registerPlugin: (id: string, plugin: Registered["plugin"]) => (registered = { id, plugin }) };
  g.fetch = async (url: string, init: { body: string }) => {
    posts.push({ url, body: JSON.parse(init.body) });
    return new Response("{}");
  };
  // A fresh copy each time (query string), since the script registers itself on load.
  await import(new URL(`../../plugin/webapp/main.js?${Math.random()}`, import.meta.url).href);
  assert.ok(registered, "the script registers a plugin");
  assert.equal(registered.id, PLUGIN_ID);
  const handlers = new Map<string, (msg: unknown) => void>();
  const registry = {
    registerWebSocketEventHandler: (event: string, fn: (msg: unknown) => void) => handlers.set(event, fn),
  };
  const store = { getState: () => ({ entities: { users: { currentUserId: "me".padEnd(26, "0") } } }) };
  registered.plugin.initialize(registry, store);
  return { handlers, posts };
}

const realFetch = globalThis.fetch;
after(() => {
  globalThis.fetch = realFetch;
  delete (globalThis as Record<string, unknown>).window;
});

test("the web app forwards the signed-in user's own status changes to /status/publish", async () => {
  const { handlers, posts } = await loadWebapp();
  const onStatus = handlers.get("status_change");
  assert.ok(onStatus, "listens to status_change");
  const me = "me".padEnd(26, "0");
  onStatus({ event: "status_change", data: { user_id: me, status: "dnd" } });
  onStatus({ event: "status_change", data: { user_id: "someone".padEnd(26, "0"), status: "away" } });
  onStatus({ event: "status_change", data: { user_id: me, status: "ooo" } });
  onStatus({ event: "status_change", data: {} });
  onStatus({ event: "status_change" });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(posts, [
    { url: `/plugins/${PLUGIN_ID}/api/v1/status/publish`, body: { user_id: me, status: "dnd" } },
  ]);
});

test("the web app honours Mattermost's subpath", async () => {
  const { handlers, posts } = await loadWebapp();
  (globalThis as unknown as { window: { basename?: string } }).window.basename = "/chat";
  handlers.get("status_change")!({
    event: "status_change",
    data: { user_id: "me".padEnd(26, "0"), status: "away" },
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(posts[0]?.url, `/chat/plugins/${PLUGIN_ID}/api/v1/status/publish`);
});

test("the bundle: one top folder named by the id, a manifest with the old settings, a web app and no server", () => {
  const out = mkdtempSync(join(tmpdir(), "op-bundle-"));
  try {
    const tarball = bundle(out);
    assert.match(tarball, /com\.mattermost\.outlook-presence-\d+\.\d+\.\d+\.tar\.gz$/);
    const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const f of files) assert.ok(f.startsWith(`${PLUGIN_ID}/`), f);
    assert.ok(files.includes(`${PLUGIN_ID}/plugin.json`));
    assert.ok(files.includes(`${PLUGIN_ID}/webapp/dist/main.js`));
    const manifest = JSON.parse(
      execFileSync("tar", ["-xzOf", tarball, `${PLUGIN_ID}/plugin.json`], { encoding: "utf8" }),
    ) as {
      id: string;
      version: string;
      server?: unknown;
      webapp: { bundle_path: string };
      settings_schema: { settings: { key: string; type: string; default: unknown }[] };
    };
    assert.equal(manifest.id, PLUGIN_ID);
    assert.equal(manifest.server, undefined, "no server part");
    assert.equal(manifest.webapp.bundle_path, "webapp/dist/main.js");
    assert.deepEqual(
      manifest.settings_schema.settings.map((s) => [s.key, s.type, s.default]),
      [
        ["Secret", "generated", null],
        ["PerPageStatuses", "number", 100],
      ],
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("npm run plugin:bundle prints the file alone on stdout and where to upload it on stderr", async () => {
  const out = mkdtempSync(join(tmpdir(), "op-bundle-"));
  try {
    const script = fileURLToPath(new URL("../../plugin/bundle.js", import.meta.url));
    const r = await promisify(execFile)(process.execPath, [script, out]);
    const tarball = join(out, r.stdout.trim().split("/").pop()!);
    assert.equal(r.stdout, `${tarball}\n`);
    assert.match(r.stderr, /System Console > Plugins > Plugin Management > Upload Plugin/);
    assert.ok(
      r.stderr.includes(`-F plugin=@${tarball} -F force=true https://chat.example.com/api/v4/plugins`),
    );
    assert.ok(r.stderr.includes(`/api/v4/plugins/${PLUGIN_ID}/enable`));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
