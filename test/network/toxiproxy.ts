import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { homedir } from "node:os";
import { join } from "node:path";
import { waitUntil } from "../helpers/in-process.js";

/**
 * Shopify's Toxiproxy (`go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0`), run as a
 * child process in this namespace and driven through its HTTP API on loopback.
 */
function findServer(): string | undefined {
  for (const bin of ["toxiproxy-server", join(homedir(), "go", "bin", "server")]) {
    const r = spawnSync(bin, ["-version"], { encoding: "utf8" });
    if (!r.error && /toxiproxy/.test(`${r.stdout}${r.stderr}`)) return bin;
  }
  return undefined;
}

export const toxiproxyServer = findServer();

export interface Toxic {
  name: string;
  type: "latency" | "bandwidth" | "timeout" | "limit_data" | "reset_peer" | "slow_close";
  stream: "upstream" | "downstream";
  attributes: Record<string, number>;
}

export class Toxiproxy {
  private constructor(
    private readonly child: ChildProcess,
    private readonly api: string,
  ) {}

  static async start(apiPort = 8474): Promise<Toxiproxy> {
    if (!toxiproxyServer) throw new Error("toxiproxy-server is not installed");
    const child = spawn(toxiproxyServer, ["-host", "127.0.0.1", "-port", String(apiPort)], {
      stdio: ["ignore", "ignore", "ignore"],
    });
    const t = new Toxiproxy(child, `http://127.0.0.1:${apiPort}`);
    await waitUntil(
      async () => (await fetch(`${t.api}/version`).catch(() => undefined))?.ok === true,
      5000,
      "toxiproxy API",
    );
    return t;
  }

  async proxy(name: string, listen: string, upstream: string): Promise<void> {
    await this.call("POST", "/proxies", { name, listen, upstream, enabled: true });
  }

  async add(proxy: string, toxic: Toxic): Promise<void> {
    await this.call("POST", `/proxies/${proxy}/toxics`, { ...toxic, toxicity: 1 });
  }

  async remove(proxy: string, toxic: string): Promise<void> {
    await this.call("DELETE", `/proxies/${proxy}/toxics/${toxic}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGKILL");
    await exited;
  }

  private async call(method: string, path: string, body?: unknown): Promise<void> {
    const res = await fetch(`${this.api}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`toxiproxy ${method} ${path}: ${res.status} ${await res.text()}`);
  }
}
