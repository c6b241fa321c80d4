import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test, type TestContext } from "node:test";
import { SecretScrubber, createLogger } from "../../src/log.js";
import type { DirectoryUser, RawStatus } from "../../src/mattermost/client.js";
import { UpstreamError } from "../../src/mattermost/errors.js";
import { PresenceSync, type SyncEvent, type SyncOptions } from "../../src/mattermost/sync.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { directoryUser, userId as id } from "../helpers/directory.js";
import { nextEvent, record } from "../helpers/events.js";

const T0 = 1_700_000_000_000;
const POLL_MS = 1000;

/** Mattermost as PresenceSync sees it: answers at once (promises only, no timers). */
class FakeMattermost {
  users: DirectoryUser[] = Array.from({ length: 5 }, (_, i) => directoryUser(i));
  statuses = new Map<string, string>();
  /** The ids of each status request, in order. */
  statusRequests: string[][] = [];
  /** Thrown by every request while set. */
  failure: UpstreamError | undefined;

  getTotalUsers = async (): Promise<number> => {
    if (this.failure) throw this.failure;
    return this.users.length;
  };
  getActiveUsers = async (page: number, perPage: number): Promise<DirectoryUser[]> => {
    if (this.failure) throw this.failure;
    return this.users.slice(page * perPage, (page + 1) * perPage);
  };
  getStatuses = async (ids: readonly string[]): Promise<RawStatus[]> => {
    if (this.failure) throw this.failure;
    this.statusRequests.push([...ids]);
    return ids.map((userId) => ({
      userId,
      status: this.statuses.get(userId) ?? "online",
      manual: false,
      lastActivityAt: 1,
    }));
  };
}

/** Lets every promise the fake Mattermost resolves run: it does no I/O, so this is no wait on time. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A sync on mock timers and a mocked Date starting at T0; stopped when the test ends. */
function setup(t: TestContext, opts: Partial<SyncOptions> = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const mm = new FakeMattermost();
  const snapshot = new PresenceSnapshot();
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const sync = new PresenceSync({
    client: mm,
    snapshot,
    log: createLogger("silent", new SecretScrubber(), sink),
    pollIntervalMs: POLL_MS,
    directoryRefreshMs: 3_600_000,
    concurrency: 2,
    backoffMaxMs: 8000,
    random: () => 0,
    ...opts,
  });
  t.after(() => sync.stop());
  const subscribe = (fn: (e: SyncEvent) => void) => sync.onEvent(fn);
  /** Events with the (mocked) time each was told at. */
  const log = record<SyncEvent & { at: number }>((fn) => sync.onEvent((e) => fn({ ...e, at: Date.now() })));
  const next = <K extends SyncEvent["kind"]>(kind: K) =>
    nextEvent(subscribe, (e) => e.kind === kind, kind) as Promise<Extract<SyncEvent, { kind: K }>>;
  /**
   * Moves the mocked clock on a millisecond at a time, letting each timer's work finish before the
   * next: an event is told at the mocked time its timer fired, as with an instant Mattermost.
   */
  const advance = async (ms: number) => {
    t.mock.timers.tick(0);
    await drain();
    for (let i = 0; i < ms; i++) {
      t.mock.timers.tick(1);
      await drain();
    }
  };
  /** Starts and waits for the first cycle (due at once). */
  const started = async () => {
    const first = next("cycle");
    sync.start();
    await advance(0);
    assert.deepEqual(await first, { kind: "cycle", ok: true, changes: mm.users.length }); // the first load
    assert.equal(snapshot.ready, true);
  };
  return { mm, snapshot, sync, log: log.events, next, advance, started };
}

test("the first cycle runs at start, the next ones a poll interval apart and not before", async (t) => {
  const { mm, log, next, started, advance } = setup(t);
  await started();
  assert.equal(mm.statusRequests.length, 1);
  mm.statuses.set(id(3), "dnd");
  await advance(POLL_MS - 1);
  const second = next("cycle");
  await advance(1);
  assert.deepEqual(await second, { kind: "cycle", ok: true, changes: 1 });
  const third = next("cycle");
  await advance(POLL_MS);
  await third;
  // The later cycles arrived, so a cycle due before its time would be in the log too.
  assert.deepEqual(
    log.map((e) => e.at - T0),
    [0, POLL_MS, 2 * POLL_MS],
  );
  assert.equal(mm.statusRequests.length, 3);
});

test("hints are batched over 50 ms into one request, and the event comes once it is applied", async (t) => {
  const { mm, snapshot, sync, log, next, started, advance } = setup(t);
  await started();
  mm.statuses.set(id(1), "away");
  assert.equal(sync.hintUser(id(1)), true);
  assert.equal(sync.hintUser(id(2)), true);
  assert.equal(sync.hintUser("not-a-known-user-id-at-all"), false, "only known users");
  await advance(49);
  const hint = next("hint");
  await advance(1);
  assert.deepEqual(await hint, { kind: "hint", outcome: "applied", users: 2, changes: 1 });
  assert.equal(snapshot.get(id(1))?.status, "away", "applied when told");
  assert.deepEqual(mm.statusRequests.at(-1), [id(1), id(2)]);
  assert.deepEqual(
    log.map((e) => [e.kind, e.at - T0]),
    [
      ["cycle", 0],
      ["hint", 50],
    ],
  );
});

test("hint re-reads keep to their budget: the next one waits out the gap after the last", async (t) => {
  const { sync, log, next, started, advance } = setup(t, { hintRequestsPerSecond: 2 }); // one per 500 ms
  await started();
  sync.hintUser(id(1));
  let hint = next("hint");
  await advance(50);
  await hint;
  sync.hintUser(id(2));
  hint = next("hint");
  await advance(499);
  await advance(1);
  await hint;
  assert.deepEqual(
    log.filter((e) => e.kind === "hint").map((e) => e.at - T0),
    [50, 550],
  );
});

test("a failing Mattermost: the cycles back off, hints are skipped, and it recovers", async (t) => {
  const { mm, sync, log, next, started, advance } = setup(t);
  await started();
  mm.failure = new UpstreamError("network", "connection refused", "statuses");
  let cycle = next("cycle");
  await advance(POLL_MS);
  assert.deepEqual(await cycle, { kind: "cycle", ok: false, changes: 0 });
  assert.equal(sync.health.consecutiveFailures, 1);
  sync.hintUser(id(1));
  const skipped = next("hint");
  await advance(50);
  assert.deepEqual(await skipped, { kind: "hint", outcome: "skipped", users: 1, changes: 0 });
  // random() = 0: the n-th failure waits half of min(max, interval × 2^(n-1)).
  cycle = next("cycle");
  await advance(POLL_MS / 2 - 50);
  assert.equal((await cycle).kind, "cycle");
  cycle = next("cycle");
  mm.failure = undefined;
  await advance(POLL_MS);
  assert.deepEqual(await cycle, { kind: "cycle", ok: true, changes: 0 });
  assert.equal(sync.health.consecutiveFailures, 0);
  assert.deepEqual(
    log.map((e) => [e.kind, e.at - T0]),
    [
      ["cycle", 0],
      ["cycle", POLL_MS],
      ["hint", POLL_MS + 50],
      ["cycle", POLL_MS + POLL_MS / 2],
      ["cycle", POLL_MS + POLL_MS / 2 + POLL_MS],
    ],
  );
});

test("a 429 waits its Retry-After before the next cycle", async (t) => {
  const { mm, log, next, started, advance } = setup(t);
  await started();
  mm.failure = new UpstreamError("rate-limited", "429", "statuses", 429, 5000);
  let cycle = next("cycle");
  await advance(POLL_MS);
  await cycle;
  mm.failure = undefined;
  cycle = next("cycle");
  await advance(4999);
  await advance(1);
  assert.equal((await cycle).kind, "cycle");
  assert.deepEqual(
    log.map((e) => e.at - T0),
    [0, POLL_MS, POLL_MS + 5000],
  );
});

test("a cycle mayPoll refuses is skipped and tried again a poll interval later", async (t) => {
  let may = false;
  const { mm, snapshot, sync, log, next, advance } = setup(t, { mayPoll: () => may });
  let skipped = next("cycle-skipped");
  sync.start();
  await advance(0);
  await skipped;
  skipped = next("cycle-skipped");
  await advance(POLL_MS);
  await skipped;
  assert.equal(mm.statusRequests.length, 0, "no request while refused");
  assert.equal(snapshot.ready, false);
  may = true;
  const cycle = next("cycle");
  await advance(POLL_MS);
  await cycle;
  assert.deepEqual(
    log.map((e) => [e.kind, e.at - T0]),
    [
      ["cycle-skipped", 0],
      ["cycle-skipped", POLL_MS],
      ["cycle", 2 * POLL_MS],
    ],
  );
});

test("stopped, it schedules nothing; started again (leadership regained) it polls and flushes hints", async (t) => {
  const { mm, sync, log, next, started, advance } = setup(t);
  await started();
  sync.hintUser(id(1)); // its flush is due in 50 ms, after the stop
  await sync.stop();
  await advance(10 * POLL_MS);
  const cycle = next("cycle");
  sync.start();
  await advance(0);
  await cycle;
  // The restart's cycle arrived: anything scheduled while stopped would have been told before it.
  assert.deepEqual(
    log.map((e) => [e.kind, e.at - T0]),
    [
      ["cycle", 0],
      ["cycle", 10 * POLL_MS],
    ],
  );
  const hint = next("hint");
  sync.hintUser(id(2));
  await advance(50);
  const applied = await hint;
  assert.equal(applied.outcome, "applied");
  assert.deepEqual(
    mm.statusRequests.at(-1)?.sort(),
    [id(1), id(2)].sort(),
    "the hint held over the stop too",
  );
});
