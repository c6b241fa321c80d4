import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { Redis } from "ioredis";
import { freePort } from "./net.js";

/** The machine's Redis (CI starts it when it is not running); TEST_REDIS_URL points elsewhere. */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * A client that reports a refused connection through its promise only: ioredis emits "error" on
 * every failed attempt, and an emitter without a listener prints "[ioredis] Unhandled error event"
 * into the test output.
 */
function quietClient(url: string): Redis {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on("error", () => {});
  return r;
}

/** True when a Redis answers PING at `url`. */
export async function redisAnswers(url: string): Promise<boolean> {
  const r = quietClient(url);
  try {
    await r.connect();
    return (await r.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/**
 * The `skip` option for a suite that needs the Redis at REDIS_URL: outside CI it is skipped with
 * the reason when nothing answers there; in CI (which starts Redis) it runs, and fails.
 */
export async function skipWithoutRedis(): Promise<string | false> {
  if (process.env.CI || (await redisAnswers(REDIS_URL))) return false;
  return `no Redis answers at ${REDIS_URL} (start one, or set TEST_REDIS_URL)`;
}

/** The `skip` option for a suite that starts its own redis-server (PrivateRedis). */
export function skipWithoutRedisServer(): string | false {
  if (process.env.CI) return false;
  const found = spawnSync("redis-server", ["--version"], { stdio: "ignore" });
  return found.error ? "redis-server is not installed" : false;
}

/** A key prefix no other test or run shares. */
export function uniquePrefix(name: string): string {
  return `op-test:${name}:${process.pid}:${Date.now()}`;
}

/** Deletes every key under a prefix (tests clean up after themselves). */
export async function dropPrefix(url: string, prefix: string): Promise<void> {
  const r = quietClient(url);
  try {
    await r.connect();
    const keys = await r.keys(`${prefix}:*`);
    if (keys.length > 0) await r.del(...keys);
  } catch {
    // Redis gone (a test stopped it): nothing to clean.
  } finally {
    r.disconnect();
  }
}

/** A private redis-server this test can kill and restart, keeping nothing on disk. */
export class PrivateRedis {
  child: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort());
    await r.restart();
    return r;
  }

  async restart(): Promise<void> {
    this.child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    this.child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 5000;
    while (!out.includes("Ready to accept connections")) {
      if (this.child.exitCode !== null || Date.now() > end)
        throw new Error(`redis-server did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, "exit");
    c.kill("SIGKILL");
    await exited;
  }
}
