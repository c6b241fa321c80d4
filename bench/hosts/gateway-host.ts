/**
 * The real `Gateway` class, in-process in its own child, for scenarios that need hooks:
 * - `{type:"seen", t, n}` is sent for every change batch, with `t` (ms, CLOCK_MONOTONIC, comparable
 *   across processes) taken the moment the snapshot emits it, before the WebSocket hub writes it;
 * - `{cmd:"mem"}` answers the memory after a full GC (run with --expose-gc).
 * Settings come from the environment exactly as `outlook-presence start` reads them.
 */
import { loadConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/gateway.js";
import { SecretScrubber, createLogger } from "../../src/log.js";

const { config } = loadConfig([]);
const log = createLogger(config.logLevel, new SecretScrubber());
const gateway = new Gateway(config, log);
const send = (m: Record<string, unknown>): void => void process.send!(m);

// Registered before start() (which subscribes the hub), so it runs before the broadcast.
gateway.snapshot.onChanges((changes) => {
  const t = Number(process.hrtime.bigint()) / 1e6;
  setImmediate(() => send({ type: "seen", t, n: changes.length }));
});

const url = await gateway.start();
const deadline = Date.now() + 120_000;
while (!gateway.snapshot.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
if (!gateway.snapshot.ready) {
  process.stderr.write("gateway-host: snapshot not ready within 120 s\n");
  process.exit(1);
}

process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "mem") {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    const mem = process.memoryUsage();
    send({ type: "mem", ...mem, sockets: gateway.hub.size, gc: gc !== undefined });
  }
});
const stop = (): void => void gateway.stop(2000).then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("disconnect", stop);
send({ type: "ready", url, users: gateway.snapshot.visible().length });
