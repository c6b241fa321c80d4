// The release as a user installs it: `npm pack`, then `npm install -g` of that tarball into an
// empty prefix (no dev dependencies, no build on the target), then the installed
// `outlook-presence demo` on a free loopback port: /healthz, /readyz, /status, and SIGTERM.
// Usage: node .ci/tarball-check.mjs (from the repository root).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkGateway, freePort, run } from "./smoke.mjs";

const tmp = mkdtempSync(join(tmpdir(), "op-tarball-"));
try {
  execFileSync("npm", ["pack", "--silent", "--pack-destination", tmp], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const tarball = join(
    tmp,
    readdirSync(tmp).find((f) => f.endsWith(".tgz")),
  );
  const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n");
  const stray = files.filter(
    (f) => !/^package\/(package\.json|README\.md|CHANGELOG\.md|LICENSE|dist\/src\/.*\.(js|d\.ts))$/.test(f),
  );
  if (stray.length > 0) throw new Error(`the tarball holds files a user does not need:\n${stray.join("\n")}`);
  if (!files.includes("package/dist/src/cli/main.js")) throw new Error("the tarball has no CLI");
  console.log(`   ${tarball}: ${files.length} files`);

  const prefix = join(tmp, "prefix");
  execFileSync(
    "npm",
    ["install", "-g", "--prefix", prefix, "--omit=dev", "--no-audit", "--no-fund", tarball],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const bin = join(prefix, "bin", "outlook-presence");
  if (!existsSync(bin)) throw new Error(`no ${bin} after the install`);
  const installed = join(prefix, "lib", "node_modules", "mattermost-outlook-presence", "node_modules");
  for (const dev of ["typescript", "eslint", "playwright-core", "autocannon"]) {
    if (existsSync(join(installed, dev))) throw new Error(`dev dependency ${dev} was installed`);
  }

  const port = await freePort();
  const demo = run(bin, ["demo", "--port", String(port), "--users", "50"], { cwd: tmp });
  try {
    const [, secret] = await demo.waitFor(/"MattermostSecret": "([^"]+)"/);
    await checkGateway(`http://127.0.0.1:${port}`, secret);
  } finally {
    await demo.stop("SIGTERM");
  }
  console.log("   installed tarball: demo served /status and stopped on SIGTERM with exit 0");
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
