/**
 * An instance with worker processes (PRESENCE_WORKERS > 1) for the fan-out bench: this process is
 * the primary (the real ClusterPrimary over a primary-role Gateway), the workers are this same
 * script forked by node:cluster. Like gateway-host, `{type:"seen", t, n}` is sent for every
 * change batch, with `t` (ms, CLOCK_MONOTONIC) taken when the primary's snapshot emits it, before
 * the batch is shipped to the workers: the fan-out is timed from the primary seeing a change to
 * the last socket of any worker receiving it. Settings come from the environment.
 * `{cmd:"pids"}` answers `{type:"pids", primary, workers}` (for CPU and RSS from /proc).
 */
import cluster from "node:cluster";
import { pino } from "pino";
import { ClusterPrimary } from "../../src/cluster/primary.js";
import { runWorker } from "../../src/cluster/worker.js";
import { loadConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/gateway.js";
import { NO_TELEMETRY } from "../../src/telemetry.js";
import { nowMs } from "../lib/ping-window.js";

const { config } = loadConfig([]);
const log = pino({ level: "silent" });

if (cluster.isWorker) {
  process.exitCode = await runWorker(
    config,
    log,
    () => undefined,
    () => undefined,
  );
} else {
  const send = (m: Record<string, unknown>): void => void process.send!(m);
  const gateway = new Gateway(config, log, NO_TELEMETRY, () => undefined, { kind: "primary" });
  // Registered before ClusterPrimary subscribes, so the time is taken before the batch is shipped.
  gateway.snapshot.onChanges((changes) => {
    const t = nowMs();
    setImmediate(() => send({ type: "seen", t, n: changes.length }));
  });
  const primary = new ClusterPrimary({
    gateway,
    log,
    workers: config.workers,
    authFailureBurst: config.authFailureBurst,
    authFailureWindowMs: config.authFailureWindowMs,
    workerStallMs: config.workerStallMs,
  });
  await gateway.start();
  const port = await primary.start();
  const deadline = Date.now() + 120_000;
  while (!gateway.snapshot.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  // The workers have the state one tick after the primary is ready.
  await new Promise((r) => setTimeout(r, 500));
  const stop = (): void =>
    void Promise.all([gateway.stop(2000), primary.stop(2000)]).then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
  process.on("message", (m: { cmd?: string }) => {
    if (m.cmd !== "pids") return;
    const workers = Object.values(cluster.workers ?? {}).map((w) => w!.process.pid);
    send({ type: "pids", primary: process.pid, workers });
  });
  send({ type: "ready", url: `http://127.0.0.1:${port}`, users: gateway.snapshot.visible().length });
}
