import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { loadConfig, type Config } from "../../src/config/load.js";
import { Gateway } from "../../src/gateway.js";
import { SecretScrubber, createLogger } from "../../src/log.js";
import { PROVIDER_STATUSES } from "../../src/presence/status.js";
import type { MattermostSimulator, SimStatus } from "../../src/simulator/index.js";
import { NO_TELEMETRY, type Telemetry } from "../../src/telemetry.js";
import type { FakeProvider } from "./provider.js";

export interface Line {
  event?: string;
  level?: string;
  msg?: string;
  [k: string]: unknown;
}

export interface InProcessGateway {
  gateway: Gateway;
  config: Config;
  url: string;
  lines: Line[];
  /** Called with each log line as it is written (synchronously). */
  onLine: (fn: (l: Line) => void) => void;
  stop: () => Promise<void>;
}

/**
 * An in-process gateway against `sim` on 127.0.0.1:0, logging at debug into `lines`.
 * In-process so that tests can read the snapshot, the hub and the upstream counters directly.
 */
export async function startInProcess(
  sim: MattermostSimulator,
  token: string,
  secret: string,
  env: Record<string, string> = {},
  telemetry: Partial<Telemetry> = {},
): Promise<InProcessGateway> {
  const lines: Line[] = [];
  const listeners: ((l: Line) => void)[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const raw of String(chunk).split("\n")) {
        if (!raw) continue;
        const l = JSON.parse(raw) as Line;
        lines.push(l);
        for (const fn of listeners) fn(l);
      }
      cb();
    },
  });
  const { config } = loadConfig([], {
    MATTERMOST_URL: sim.url,
    MATTERMOST_TOKEN: token,
    PRESENCE_SECRET: secret,
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "debug",
    ...env,
  });
  const scrubber = new SecretScrubber();
  scrubber.set([token, secret]);
  const gateway = new Gateway(config, createLogger("debug", scrubber, sink), {
    ...NO_TELEMETRY,
    ...telemetry,
  });
  const url = await gateway.start();
  return {
    gateway,
    config,
    url,
    lines,
    onLine: (fn) => listeners.push(fn),
    stop: () => gateway.stop(1000),
  };
}

export async function waitUntil(
  pred: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The four statuses a provider shows, as simulator values: what tests cycle users through. */
export const STATUSES: readonly SimStatus[] = PROVIDER_STATUSES;

/** What Mattermost holds, as a provider should show it: email → one of the four statuses. */
export function expectedStatuses(sim: MattermostSimulator): Map<string, string> {
  const m = new Map<string, string>();
  for (const u of sim.listUsers()) {
    if (u.delete_at > 0 || !u.email) continue;
    const s = sim.getStatus(u.id);
    m.set(
      u.email,
      s === undefined ? "offline" : ["online", "away", "dnd", "offline"].includes(s) ? s : "away",
    );
  }
  return m;
}

/**
 * Differences between a provider's store and Mattermost: every active user with an email must
 * hold Mattermost's status; any other address the provider still holds must be offline.
 */
export function storeDiff(p: FakeProvider, want: Map<string, string>): string[] {
  const diff: string[] = [];
  for (const [email, status] of want) {
    if (p.store.get(email) !== status) diff.push(`${email}: has ${p.store.get(email)}, Mattermost ${status}`);
  }
  for (const [email, status] of p.store) {
    if (!want.has(email) && status !== "offline") diff.push(`${email}: left but still ${status}`);
  }
  return diff;
}

/** Waits until every provider's store equals Mattermost's; fails listing the differences. */
export async function assertConverged(
  sim: MattermostSimulator,
  providers: readonly FakeProvider[],
  timeoutMs = 10_000,
): Promise<void> {
  try {
    await waitUntil(
      () => providers.every((p) => storeDiff(p, expectedStatuses(sim)).length === 0),
      timeoutMs,
      "providers to converge",
    );
  } catch {
    const diffs = providers.map((p) => storeDiff(p, expectedStatuses(sim)).slice(0, 5));
    assert.fail(`providers did not converge on Mattermost's statuses: ${JSON.stringify(diffs)}`);
  }
  for (const p of providers) assert.deepEqual(p.violations, [], "only {user_id,email,status} messages");
}
