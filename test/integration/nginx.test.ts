/**
 * docs/DEPLOY.md's nginx configuration, as written there, in front of the real CLI: a provider
 * reaches /status and /ws through it (also with a server URL ending in "/"), nothing but the plugin
 * prefix is routed, a path that would resolve elsewhere is refused, and with loopback trusted the
 * gateway sees each desktop's own address. Needs Debian's nginx (`.ci/run` installs it); skipped
 * without it outside CI.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";
import { freePort, rawGet as rawGetFrom } from "../helpers/net.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const rawGet = (port: number, target: string) => rawGetFrom(port, target, "chat.example.com");

const NGINX = "/usr/sbin/nginx";
const TOKEN = `tok-${process.pid}-nginx`;
const SECRET = `secret-${process.pid}-nginx-x`;
const DEPLOY = new URL("../../../docs/DEPLOY.md", import.meta.url);

/** The first ```nginx block of DEPLOY.md: the one that routes the plugin path. */
function documentedConfig(): string {
  const doc = readFileSync(DEPLOY, "utf8");
  const m = /```nginx\n([\s\S]*?)```/.exec(doc);
  assert.ok(m, "DEPLOY.md has an nginx block");
  return m[1]!;
}

/** A GET from a given loopback source address, so that nginx sees a distinct desktop. */
function getFrom(localAddress: string, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, headers: { Host: "chat.example.com" } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

const noNginx = !existsSync(NGINX);

test("DEPLOY.md holds the one nginx configuration: every other doc links to it", () => {
  const root = new URL("../../../", import.meta.url);
  const docs = ["README.md", "CHANGELOG.md", ...readdirSync(new URL("docs/", root)).map((f) => `docs/${f}`)];
  for (const doc of docs.filter((f) => f.endsWith(".md") && f !== "docs/DEPLOY.md")) {
    const text = readFileSync(new URL(doc, root), "utf8");
    assert.doesNotMatch(
      text,
      /```nginx|proxy_pass/,
      `${doc} repeats nginx configuration; link to DEPLOY.md instead`,
    );
  }
  assert.equal(readFileSync(DEPLOY, "utf8").match(/```nginx/g)?.length, 1, "one nginx block in DEPLOY.md");
});

describe(
  "behind nginx, configured as docs/DEPLOY.md says",
  { skip: noNginx && !process.env.CI ? `${NGINX} is not installed` : false },
  () => {
    let sim: MattermostSimulator;
    let gw: GatewayProcess;
    let nginx: ChildProcess;
    let dir: string;
    let front: string;
    let port: number;

    before(async () => {
      assert.ok(!noNginx, `${NGINX} is missing; CI installs it (.ci/run)`);
      sim = new MattermostSimulator({ token: TOKEN, users: 60, seed: 21 });
      await sim.start(0, "127.0.0.1");
      gw = await GatewayProcess.start({
        MATTERMOST_URL: sim.url,
        MATTERMOST_TOKEN: TOKEN,
        PRESENCE_SECRET: SECRET,
        PRESENCE_POLL_INTERVAL_MS: "500",
        PRESENCE_AUTH_FAILURE_BURST: "3",
        // As the systemd unit in DEPLOY.md: nginx on the same host is the trusted proxy.
        PRESENCE_TRUSTED_PROXIES: "127.0.0.1,::1",
      });
      await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, "ready");

      port = await freePort();
      dir = mkdtempSync(join(tmpdir(), "op-nginx-"));
      for (const d of ["client", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, d));
      const site = documentedConfig()
        .replace("server 127.0.0.1:8080;", `server ${new URL(gw.url).host};`)
        .replace("/var/log/nginx/outlook-presence.error.log", join(dir, "outlook-presence.error.log"))
        .replace(
          "server_name chat.example.com;",
          `server_name chat.example.com;\n    listen 127.0.0.1:${port};`,
        )
        // Mattermost itself: anything not routed to the gateway.
        .replace(
          "# ... the existing Mattermost configuration ...",
          'location / { return 418 "mattermost\\n"; }',
        );
      assert.ok(
        site.includes(`listen 127.0.0.1:${port};`) &&
          site.includes("return 418") &&
          !site.includes("/var/log"),
        "the block was adapted",
      );
      writeFileSync(
        join(dir, "nginx.conf"),
        `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
          `events { worker_connections 256; }\nhttp {\n` +
          `  client_body_temp_path ${dir}/client; proxy_temp_path ${dir}/proxy;\n` +
          `  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;\n` +
          `${site}\n}\n`,
      );
      nginx = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      nginx.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      front = `http://127.0.0.1:${port}`;
      await waitUntil(
        async () => {
          assert.equal(nginx.exitCode, null, `nginx exited: ${stderr}`);
          try {
            return (await rawGet(port, "/")).includes("418");
          } catch {
            return false;
          }
        },
        10_000,
        "nginx listening",
      );
    });

    after(async () => {
      nginx?.kill("SIGTERM");
      await gw?.stop();
      await sim?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test("a provider pages /status and follows changes on /ws through it, also with a server URL ending in /", async (t) => {
      for (const base of [front, `${front}/`]) {
        const p = new FakeProvider(base, SECRET);
        t.after(() => p.close());
        await p.loadStatus();
        await p.connect();
        const u = sim.listUsers().find((x) => x.delete_at === 0 && x.email && !x.is_bot)!;
        const next = sim.getStatus(u.id) === "dnd" ? "online" : "dnd";
        sim.setStatus(u.id, next);
        await p.until((q) => q.store.get(u.email) === next, 10_000, `the change through nginx (${base})`);
        assert.deepEqual(p.violations, []);
        p.close();
      }
    });

    test("only the plugin path reaches the gateway; a path that would resolve elsewhere is refused", async () => {
      assert.match(
        await rawGet(port, "/metrics"),
        /^HTTP\/1\.1 418 /,
        "/metrics is Mattermost's, not routed",
      );
      assert.match(await rawGet(port, "/admin"), /^HTTP\/1\.1 418 /);
      for (const target of [
        `${BASE}/..\\..\\..\\..\\metrics`,
        `${BASE}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/metrics`,
        `${BASE}/..%2f..%2f..%2f..%2fmetrics`,
      ]) {
        const answer = await rawGet(port, target);
        assert.doesNotMatch(answer, /outlook_presence_/, `${target} must not reach /metrics`);
        // nginx resolves escaped dots itself (then it is Mattermost's path, 418); a backslash it
        // passes on as written, and the gateway refuses it (404).
        assert.match(answer, /^HTTP\/1\.1 (400|404|418) /, target);
      }
    });

    test("with nginx trusted, wrong secrets are limited per desktop, not for everyone behind it", async () => {
      const wrong = (from: string) => getFrom(from, `${front}${BASE}/status?secret=guess`);
      for (let i = 0; i < 3; i++) assert.equal(await wrong("127.0.0.2"), 403);
      assert.equal(await wrong("127.0.0.2"), 429, "that desktop is limited");
      assert.equal(await wrong("127.0.0.3"), 403, "another desktop is not");
      assert.equal(
        await getFrom("127.0.0.2", `${front}${BASE}/status?secret=${SECRET}`),
        200,
        "the right secret always works",
      );
      const limited = await gw.waitFor((l) => l.event === "auth_rate_limited");
      assert.equal(limited.remote, "127.0.0.2", "the gateway saw the desktop's address, not nginx's");
    });
    // Last: it stops the gateway.
    test("nginx's logs never hold the secret, also for requests that failed (the gateway down)", async () => {
      await gw.stop();
      for (const target of [`${BASE}/status?secret=${SECRET}&page=0`, `${BASE}/ws?secret=${SECRET}`]) {
        assert.match(await rawGet(port, target), /^HTTP\/1\.1 502 /, "nginx cannot reach the gateway");
      }
      const logs = readdirSync(dir)
        .filter((f) => f.endsWith(".log"))
        .map((f) => readFileSync(join(dir, f), "utf8"))
        .join("\n");
      assert.ok(!logs.includes(SECRET), `no secret in nginx's logs:\n${logs.slice(-2000)}`);
    });
  },
);
