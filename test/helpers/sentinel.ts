import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./net.js";

export const SENTINEL_MASTER = "op-test-master";

/** Why Sentinel tests cannot run here, or undefined when they can. */
export function sentinelMissing(): string | undefined {
  for (const bin of ["redis-server", "redis-sentinel"]) {
    if (spawnSync(bin, ["--version"], { stdio: "ignore" }).error) return `${bin} is not installed`;
  }
  return undefined;
}

/**
 * A master, one replica and three sentinels on loopback, each a child process with its own
 * config in a temporary directory; nothing kept on disk past stop().
 */
export class SentinelCluster {
  readonly redis: { port: number; child: ChildProcess }[] = [];
  readonly sentinels: { port: number; child: ChildProcess }[] = [];
  private constructor(private readonly dir: string) {}

  static async start(opts: { downAfterMs?: number } = {}): Promise<SentinelCluster> {
    const c = new SentinelCluster(mkdtempSync(join(tmpdir(), "op-sentinel-")));
    try {
      const master = await freePort();
      await c.startRedis(master, []);
      const replica = await freePort();
      await c.startRedis(replica, ["--replicaof", "127.0.0.1", String(master)]);
      await c.until(async () => {
        const info = await c.ask(replica, (r) => r.info("replication"));
        return /master_link_status:up/.test(info);
      }, "the replica to sync");
      for (let i = 0; i < 3; i++) {
        const port = await freePort();
        const conf = join(c.dir, `sentinel-${port}.conf`);
        writeFileSync(
          conf,
          [
            `port ${port}`,
            "bind 127.0.0.1",
            `dir ${c.dir}`,
            `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${master} 2`,
            `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${opts.downAfterMs ?? 1000}`,
            `sentinel failover-timeout ${SENTINEL_MASTER} 5000`,
            "",
          ].join("\n"),
        );
        c.sentinels.push({ port, child: c.spawnLogged("redis-sentinel", [conf], `sentinel ${port}`) });
      }
      for (const s of c.sentinels) {
        await c.until(async () => {
          const slaves = await c.ask(s.port, (r) => r.call("SENTINEL", "replicas", SENTINEL_MASTER));
          return Array.isArray(slaves) && slaves.length === 1;
        }, `sentinel ${s.port} to find the replica`);
      }
      return c;
    } catch (err) {
      await c.stop();
      throw err;
    }
  }

  get sentinelList(): string {
    return this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(",");
  }

  /** The port the sentinels name as master now. */
  async masterPort(): Promise<number> {
    const addr = (await this.ask(this.sentinels[0]!.port, (r) =>
      r.call("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER),
    )) as [string, string];
    return Number(addr[1]);
  }

  /** SIGKILLs the current master and resolves once the sentinels name the replica instead. */
  async killMaster(timeoutMs = 30_000): Promise<{ old: number; now: number }> {
    const old = await this.masterPort();
    const proc = this.redis.find((r) => r.port === old)!;
    const exited = once(proc.child, "exit");
    proc.child.kill("SIGKILL");
    await exited;
    let now = old;
    await this.until(
      async () => {
        now = await this.masterPort();
        return now !== old;
      },
      "Sentinel to promote the replica",
      timeoutMs,
    );
    return { old, now };
  }

  /** A direct connection to the current master (tests read the stream with it). */
  async master(): Promise<Redis> {
    const r = new Redis(await this.masterPort(), "127.0.0.1", { maxRetriesPerRequest: 1 });
    return r;
  }

  async stop(): Promise<void> {
    for (const p of [...this.sentinels, ...this.redis]) {
      const c = p.child;
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = once(c, "exit");
      c.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async startRedis(port: number, extra: string[]): Promise<void> {
    const child = this.spawnLogged(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        ...extra,
      ],
      `redis ${port}`,
    );
    this.redis.push({ port, child });
    await this.until(async () => (await this.ask(port, (r) => r.ping())) === "PONG", `redis ${port}`);
  }

  private spawnLogged(bin: string, args: string[], what: string): ChildProcess {
    const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => {
      if (code !== null && code !== 0) process.stderr.write(`${what} exited ${code}: ${err}\n`);
    });
    return child;
  }

  private async ask<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = new Redis(port, "127.0.0.1", {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on("error", () => undefined);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }

  private async until(pred: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (await pred().catch(() => false)) return;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
