/**
 * Worker processes, the parts that need no process: PRESENCE_WORKERS parsing and its default, the
 * follower broker a worker runs (a fake IPC channel stands for the primary), and the sum of
 * several processes' metrics.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { PrimaryFollowerBroker } from "../../src/broker/primary-follower.js";
import type { PrimaryChannel, ToPrimary, ToWorker } from "../../src/cluster/messages.js";
import { ConfigError, defaultWorkers, loadConfig } from "../../src/config/load.js";
import { GatewayMetrics } from "../../src/metrics/index.js";
import { aggregateMetrics } from "../../src/metrics/cluster.js";
import { PresenceSnapshot, type Change } from "../../src/presence/snapshot.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";

const BASE = {
  MATTERMOST_URL: "https://chat.example.com/",
  MATTERMOST_TOKEN: "tok-abcdef",
  PRESENCE_SECRET: "sec-abcdef-0123456789",
};

test("PRESENCE_WORKERS: auto (the default) is one per usable core, 1 is one process, 0 is refused", () => {
  assert.equal(loadConfig([], BASE).config.workers, defaultWorkers());
  assert.equal(loadConfig([], { ...BASE, PRESENCE_WORKERS: "auto" }).config.workers, defaultWorkers());
  assert.equal(loadConfig(["--workers", "1"], BASE).config.workers, 1);
  assert.equal(loadConfig([], { ...BASE, PRESENCE_WORKERS: "4" }).config.workers, 4);
  assert.throws(
    () => loadConfig([], { ...BASE, PRESENCE_WORKERS: "0" }),
    (e: unknown) => e instanceof ConfigError && /PRESENCE_WORKERS.*at least 1/.test(e.problems.join()),
  );
});

test("the default number of workers follows a cgroup CPU quota, never above the cores", () => {
  const dir = mkdtempSync(join(tmpdir(), "cpu-max-"));
  const cpuMax = (text: string) => {
    const file = join(dir, `cpu.max.${Math.random()}`);
    writeFileSync(file, text);
    return file;
  };
  const cores = availableParallelism();
  assert.equal(defaultWorkers(cpuMax("max 100000\n")), cores);
  assert.equal(defaultWorkers(cpuMax("100000 100000\n")), 1);
  assert.equal(defaultWorkers(cpuMax("50000 100000\n")), 1, "half a CPU: still one worker");
  assert.equal(defaultWorkers(cpuMax("150000 100000\n")), Math.min(cores, 2));
  assert.equal(defaultWorkers(cpuMax(`${(cores + 8) * 100000} 100000`)), cores);
  assert.equal(defaultWorkers(join(dir, "absent")), cores);
});

/** A primary that only records what the worker sends; `deliver` plays its messages. */
function fakePrimary() {
  const sent: ToPrimary[] = [];
  let listener: ((msg: ToWorker) => void) | undefined;
  const channel: PrimaryChannel = {
    send: (msg) => sent.push(msg),
    onMessage: (fn) => {
      listener = fn;
      return () => (listener = undefined);
    },
  };
  return { channel, sent, deliver: (msg: ToWorker) => listener?.(msg) };
}

function primarySnapshot(n: number): PresenceSnapshot {
  const s = new PresenceSnapshot();
  s.applyDirectory(Array.from({ length: n }, (_, i) => user(i)));
  s.applyStatuses(new Map(Array.from({ length: n }, (_, i) => [id(i), "online"])), true);
  return s;
}

const view = (s: PresenceSnapshot) => s.visible().map((u) => `${u.email}=${u.status}`);

test("the worker's broker: the state at hello, then each batch in order; a gap asks for the state again", async () => {
  const primary = primarySnapshot(6);
  const batches: Change[][] = [];
  primary.onChanges((c) => batches.push([...c]));
  const { channel, sent, deliver } = fakePrimary();
  const worker = new PresenceSnapshot();
  const seen: Change[] = [];
  worker.onChanges((c) => seen.push(...c));
  const broker = new PrimaryFollowerBroker(channel, pino({ level: "silent" }));
  await broker.start(worker);
  assert.deepEqual(sent, [{ t: "hello" }]);
  assert.equal(broker.isLeader, false);
  assert.equal(worker.ready, false, "nothing before the state");

  deliver({ t: "state", state: primary.exportState() });
  assert.deepEqual(view(worker), view(primary));

  primary.applyStatuses(new Map([[id(1), "dnd"]]), false);
  primary.applyStatuses(new Map([[id(2), "away"]]), false);
  const [first, second] = batches as [Change[], Change[]];
  deliver({ t: "batch", epoch: primary.epoch, changes: first });
  deliver({ t: "batch", epoch: primary.epoch, changes: second });
  assert.deepEqual(view(worker), view(primary));
  assert.deepEqual(
    seen.map((c) => [c.seq, c.status]),
    [...first, ...second].map((c) => [c.seq, c.status]),
    "the primary's numbering",
  );

  // A lost batch: nothing applied, the state asked for once, later batches ignored until it comes.
  primary.applyStatuses(new Map([[id(3), "dnd"]]), false);
  primary.applyStatuses(new Map([[id(4), "dnd"]]), false);
  deliver({ t: "batch", epoch: primary.epoch, changes: batches[3]! });
  assert.deepEqual(sent.slice(1), [{ t: "need_state" }]);
  assert.equal(worker.get(id(4))?.status, "online", "not applied over a gap");
  primary.applyStatuses(new Map([[id(5), "away"]]), false);
  deliver({ t: "batch", epoch: primary.epoch, changes: batches[4]! });
  assert.deepEqual(sent.slice(1), [{ t: "need_state" }], "asked once");
  deliver({ t: "state", state: primary.exportState() });
  assert.deepEqual(view(worker), view(primary), "converged on the state");
  assert.equal(worker.lastSeq, primary.lastSeq);

  // A new epoch at the primary (a new leader term that could not continue the numbering).
  primary.startEpoch();
  primary.applyStatuses(new Map([[id(0), "away"]]), false);
  deliver({ t: "batch", epoch: primary.epoch, changes: batches.at(-1)! });
  assert.deepEqual(sent.slice(2), [{ t: "need_state" }], "another epoch is never resumed");

  assert.equal(broker.forwardHint(id(2)), true);
  assert.deepEqual(sent.at(-1), { t: "hint", userId: id(2) });
  const settings: unknown[] = [];
  broker.onPluginSettings((s) => settings.push(s));
  const shared = { current: { secret: "from-mattermost-0123456789", pageSize: 50 } };
  deliver({ t: "settings", shared });
  assert.deepEqual(settings, [shared]);
  await broker.stop();
});

test("the instance's metrics: counters and connections summed, the snapshot's gauges not, process metrics per worker", async () => {
  const processes = ["primary", "1", "2"].map((worker) => new GatewayMetrics({ worker }));
  const [primary, w1, w2] = processes as [GatewayMetrics, GatewayMetrics, GatewayMetrics];
  const source = (sockets: number, leader: boolean, ready = true) => ({
    countsByStatus: () => ({ online: 3, away: 1, dnd: 0, offline: 2 }),
    directoryUsers: () => 6,
    sockets: () => sockets,
    health: () => ({ tokenRejected: false, consecutiveFailures: 0 }) as never,
    ready: () => ready,
    lastSeq: () => 42,
    leader: () => leader,
  });
  primary.observe(source(0, true));
  w1.observe(source(3, false));
  w2.observe(source(4, false, false));
  primary.upstreamRequest("status/ids", 200, 5);
  w1.httpRequest("/status", 200);
  w2.httpRequest("/status", 200);
  const text = await aggregateMetrics(
    await Promise.all(processes.map(async (m) => (await m.registry.getMetricsAsJSON()) as unknown[])),
  );
  const value = (line: string) => {
    const found = text.split("\n").find((l) => l.startsWith(`${line} `));
    assert.ok(found, `${line} in ${text.slice(0, 200)}`);
    return Number(found.slice(line.length + 1));
  };
  assert.equal(value("outlook_presence_ws_connections"), 7);
  assert.equal(value('outlook_presence_worker_connections{worker="1"}'), 3);
  assert.equal(value('outlook_presence_worker_connections{worker="2"}'), 4);
  assert.ok(!text.includes('worker_connections{worker="primary"}'), "the primary holds no sockets");
  assert.equal(value('outlook_presence_http_requests_total{route="/status",code="200"}'), 2);
  assert.equal(value('outlook_presence_upstream_requests_total{endpoint="status/ids",code="200"}'), 1);
  assert.equal(value('outlook_presence_users{status="online"}'), 3, "the same snapshot, not 3 times it");
  assert.equal(value("outlook_presence_directory_users"), 6);
  assert.equal(value("outlook_presence_change_seq"), 42);
  assert.equal(value("outlook_presence_leader"), 1, "the primary polls");
  assert.equal(value("outlook_presence_ready"), 0, "ready only when every process is");
  for (const w of ["primary", "1", "2"]) {
    assert.ok(value(`process_start_time_seconds{worker="${w}"}`) > 0, `start time of ${w} kept`);
  }
});
