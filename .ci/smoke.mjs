/* global fetch, setTimeout, clearTimeout */
// Shared by the release checks in .ci/: start an installed `outlook-presence`, ask it what a
// desktop and a load balancer ask, stop it as its supervisor would. Loopback only, bounded waits.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";

export async function freePort() {
  const srv = createServer().listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/** A child process whose output is kept, with a wait for a line matching a pattern. */
export function run(cmd, args, opts) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  let output = "";
  const collect = (d) => (output += d.toString());
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  return {
    child,
    output: () => output,
    async waitFor(pattern, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(output);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`${cmd} exited ${child.exitCode}:\n${output}`);
        if (Date.now() > end) throw new Error(`${cmd}: no ${pattern} within ${timeoutMs} ms:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    /** The signal, then the exit code (SIGKILL after 15 s and a failure). */
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, "exit");
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const [code, sig] = await exited;
      clearTimeout(timer);
      if (code !== 0) throw new Error(`${cmd} ended with ${code ?? sig} after ${signal}:\n${output}`);
      return code;
    },
  };
}

export async function until(what, check, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await check().catch(() => undefined);
    if (got) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** /healthz, /readyz, then page 0 of /status with the secret: what a desktop reads first. */
export async function checkGateway(base, secret) {
  const health = await fetch(`${base}/healthz`);
  if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`);
  await until("/readyz 200", async () => (await fetch(`${base}/readyz`)).status === 200);
  const url = `${base}/plugins/com.mattermost.outlook-presence/api/v1/status?secret=${encodeURIComponent(secret)}&page=0`;
  const res = await fetch(url);
  const body = await res.json();
  if (res.status !== 200 || !Array.isArray(body) || body.length === 0 || !body[0].email)
    throw new Error(`/status answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
  console.log(`   /healthz 200, /readyz 200, /status page 0: ${body.length} users`);
}
