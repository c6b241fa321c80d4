/**
 * `npm run plugin:bundle`: packs the web-app-only plugin into
 * dist/com.mattermost.outlook-presence-<version>.tar.gz, the layout Mattermost's plugin upload
 * expects (one top folder named after the plugin id, plugin.json at its root).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url)); // dist/plugin
const root = resolve(here, "../..");

export function bundle(outDir = join(root, "dist")): string {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const manifest = JSON.parse(readFileSync(join(root, "plugin/plugin.json"), "utf8")) as Record<
    string,
    unknown
  >;
  manifest.version = pkg.version;
  const id = manifest.id as string;
  const script = join(here, "webapp/main.js");
  const staging = join(outDir, "plugin-staging");
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, id, "webapp/dist"), { recursive: true });
  writeFileSync(join(staging, id, "plugin.json"), JSON.stringify(manifest, null, 2) + "\n");
  copyFileSync(script, join(staging, id, "webapp/dist/main.js"));
  const tarball = join(outDir, `${id}-${pkg.version}.tar.gz`);
  execFileSync("tar", ["-czf", tarball, "-C", staging, id]);
  rmSync(staging, { recursive: true, force: true });
  return tarball;
}

/** What to do with the file, for the admin who just built it. */
export function uploadHint(tarball: string, id: string): string {
  return [
    `Upload ${tarball} to Mattermost:`,
    "  System Console > Plugins > Plugin Management > Upload Plugin (needs PluginSettings.EnableUploads),",
    "  then Enable it on the same page. Or with a system admin's token, through the API:",
    `    curl -H "Authorization: Bearer $TOKEN" -F plugin=@${tarball} -F force=true https://chat.example.com/api/v4/plugins`,
    `    curl -X POST -H "Authorization: Bearer $TOKEN" https://chat.example.com/api/v4/plugins/${id}/enable`,
    "",
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = process.argv[2] ? resolve(process.argv[2]) : undefined;
  const tarball = bundle(out);
  // stdout stays the path alone, for scripts; the hint goes to stderr.
  process.stdout.write(`${tarball}\n`);
  const id = (JSON.parse(readFileSync(join(root, "plugin/plugin.json"), "utf8")) as { id: string }).id;
  process.stderr.write(uploadHint(tarball, id));
}
