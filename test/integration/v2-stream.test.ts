import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator, type SimUser } from "../../src/simulator/index.js";
import { STATUSES, startInProcess, waitUntil, type InProcessGateway } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import { StreamConn } from "../helpers/v2-stream.js";

const TOKEN = `v2-stream-token-${process.pid}`;
const SECRET = `v2-stream-secret-${process.pid}`;

describe("API v2 stream against the simulator (in-process gateway)", () => {
  let sim: MattermostSimulator;
  let gw: InProcessGateway;
  let people: SimUser[];
  let provider: FakeProvider;
  const conns: StreamConn[] = [];
  const open = async (opts: Parameters<typeof StreamConn.open>[1] = { secret: SECRET }) => {
    const c = await StreamConn.open(gw.url, opts);
    conns.push(c);
    return c;
  };
  /** Moves each user to another status and waits until the gateway has published them all. */
  const change = async (users: readonly SimUser[]): Promise<void> => {
    const target = gw.gateway.snapshot.lastSeq + users.length;
    for (const u of users) {
      const from = sim.getStatus(u.id);
      sim.setStatus(u.id, STATUSES[(STATUSES.indexOf(from ?? "offline") + 1) % STATUSES.length]!);
    }
    await waitUntil(() => gw.gateway.snapshot.lastSeq >= target, 10_000, "the gateway to see the changes");
  };

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 1100, seed: 11 });
    await sim.start(0, "127.0.0.1");
    gw = await startInProcess(sim, TOKEN, SECRET, {
      PRESENCE_POLL_INTERVAL_MS: "250",
      PRESENCE_V2_RETAINED_CHANGES: "2000",
      LOG_LEVEL: "info",
    });
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
    people = sim.listUsers().filter((u) => u.delete_at === 0 && !u.is_bot && u.email);
    // A compat provider holds /ws throughout: it must never see a v2 message.
    provider = new FakeProvider(gw.url, SECRET);
    await provider.connect();
  });

  after(async () => {
    for (const c of conns) await c.close();
    provider?.close();
    await gw?.stop();
    await sim?.stop();
  });

  test("a client that disconnects for 10 s while 1,000 changes happen resumes with since: exactly those, in order, no duplicates", async () => {
    const witness = await open(); // stays connected: the reference for what happened
    await witness.nth("ready");
    const a = await open();
    const first = await a.nth("snapshot");
    const ready = await a.nth("ready");
    assert.equal(ready.resumed, false);
    assert.equal(first.seq, ready.seq);
    assert.equal(first.users.length, gw.gateway.snapshot.visible().length);
    const lastSeen = ready.seq;
    await a.close();
    const leftAt = Date.now();

    // 1,000 changes over four poll cycles, some users more than once, while `a` is away.
    await change(people.slice(0, 250));
    await change(people.slice(250, 500));
    await change(people.slice(100, 350));
    await change(people.slice(600, 850));
    await witness.until(() => witness.changes().length >= 1000, 10_000, "the witness to see 1,000 changes");
    // Away for 10 s in all, as in the acceptance (what matters is the retained window,
    // not the time, but the time is cheap to honour).
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - leftAt))));

    const b = await open({ secret: SECRET, since: `${ready.epoch}:${lastSeen}` });
    const resumed = await b.nth("ready");
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.epoch, ready.epoch, "one process, one epoch");
    assert.equal(
      b.messages.some((m) => m.type === "snapshot"),
      false,
      "a resume within the window sends no snapshot",
    );
    const got = b.changes();
    assert.equal(got.length, 1000);
    const want = witness.changes().slice(-1000);
    assert.deepEqual(
      got.map(({ user_id, email, status, at }) => ({ user_id, email, status, at })),
      want.map(({ user_id, email, status, at }) => ({ user_id, email, status, at })),
      "the same changes, in the same order, as a client that never left",
    );
    assert.equal(resumed.seq, lastSeen + 1000, "seq counts exactly the missed changes");
    // Message seqs only grow; the last catch-up message ends at the ready seq.
    const seqs = b.messages.filter((m) => m.type === "changes").map((m) => m.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((x, y) => x - y),
    );
    assert.equal(seqs.at(-1), resumed.seq);

    // Then live: the next change arrives as one batch message.
    const before = b.messages.length;
    await change(people.slice(900, 903));
    await b.until(() => b.changes().length === 1003, 5000, "live changes after the resume");
    const live = b.messages.slice(before);
    assert.equal(live.length, 1, "one poll cycle, one message");
    assert.deepEqual(witness.violations, []);
    assert.deepEqual(b.violations, []);
  });

  test("since too old, from the future, of another epoch or bare: a snapshot, then live", async () => {
    const { epoch, lastSeq } = gw.gateway.snapshot;
    const tooOld = await open({ secret: SECRET, since: `${epoch}:1` });
    const snap = await tooOld.nth("snapshot");
    assert.equal((await tooOld.nth("ready")).resumed, false);
    assert.equal(snap.users.length, gw.gateway.snapshot.visible().length);
    assert.equal(snap.epoch, epoch);
    const future = await open({ secret: SECRET, since: `${epoch}:${lastSeq + 100}` });
    await future.nth("snapshot");
    // The same number in another history (a restarted gateway) is not this position.
    const otherEpoch = await open({ secret: SECRET, since: `other-epoch:${lastSeq}` });
    await otherEpoch.nth("snapshot");
    assert.equal((await otherEpoch.nth("ready")).resumed, false);
    // A bare seq (a client older than epochs) cannot be tied to this history: a snapshot.
    const bare = await open({ secret: SECRET, since: lastSeq });
    await bare.nth("snapshot");
    assert.equal((await bare.nth("ready")).resumed, false);
    const upToDate = await open({ secret: SECRET, since: `${epoch}:${lastSeq}` });
    const r = await upToDate.nth("ready");
    assert.equal(r.resumed, true);
    assert.equal(upToDate.messages.length, 1, "nothing to catch up: only ready");
  });

  test("a subscribed client receives only its users' changes; the unsubscribed path gets everyone", async () => {
    const [p1, p2, p3, p4] = people.slice(10, 14) as [SimUser, SimUser, SimUser, SimUser];
    const everyone = await open();
    await everyone.nth("ready");
    const byMessage = await open();
    await byMessage.nth("ready");
    byMessage.send({ type: "subscribe", emails: [p1.email.toUpperCase()], user_ids: [p2.id] });
    const subSnap = await byMessage.nth("snapshot", 1);
    assert.deepEqual(subSnap.users.map((u) => u.user_id).sort(), [p1.id, p2.id].sort());
    const byQuery = await open({ secret: SECRET, query: `emails=${encodeURIComponent(p3.email)}` });
    const querySnap = await byQuery.nth("snapshot");
    assert.deepEqual(
      querySnap.users.map((u) => u.user_id),
      [p3.id],
    );
    await byQuery.nth("ready");

    await change([p1, p2, p3, p4, ...people.slice(20, 40)]);
    await everyone.until(() => everyone.changes().length >= 24, 5000, "everyone's changes");
    await byMessage.until(() => byMessage.changes().length >= 2, 5000, "subscribed changes");
    await byQuery.until(() => byQuery.changes().length >= 1, 5000, "query-subscribed changes");
    await change([people[50]!]); // one more batch: anything misrouted would have arrived by now
    await everyone.until(() => everyone.changes().length >= 25, 5000, "a later batch");
    assert.deepEqual(
      byMessage
        .changes()
        .map((c) => c.user_id)
        .sort(),
      [p1.id, p2.id].sort(),
    );
    assert.deepEqual(
      byQuery.changes().map((c) => c.user_id),
      [p3.id],
    );
    assert.equal(everyone.changes().length, 25);

    byMessage.send({ type: "unsubscribe" });
    const all = await byMessage.nth("snapshot", 2);
    assert.equal(all.users.length, gw.gateway.snapshot.visible().length);
  });

  test("auth: by the first message; a wrong secret closes 4401 or refuses the upgrade with 401", async () => {
    const byMessage = await open({});
    byMessage.send({ type: "auth", secret: SECRET });
    await byMessage.nth("snapshot");
    await byMessage.nth("ready");

    const wrong = await open({});
    wrong.send({ type: "auth", secret: "nope" });
    await wrong.until(() => wrong.closed !== undefined, 5000, "close");
    assert.equal(wrong.closed!.code, 4401);
    assert.equal(wrong.messages.length, 0);

    // The secret is judged before the filter: a wrong one closes whatever the filter says.
    const wrongAndBad = await open({});
    wrongAndBad.send({ type: "auth", secret: "nope", emails: "not-a-list" });
    await wrongAndBad.until(() => wrongAndBad.closed !== undefined, 5000, "close");
    assert.equal(wrongAndBad.closed!.code, 4401);
    assert.equal(wrongAndBad.messages.length, 0);

    const notAuth = await open({});
    notAuth.send({ type: "subscribe", emails: [] });
    await notAuth.until(() => notAuth.closed !== undefined, 5000, "close");
    assert.equal(notAuth.closed!.code, 4401);

    // The right secret with a bad filter: told so, and still not authenticated, so the auth
    // timeout (5 s) keeps running; a corrected auth message then goes live.
    const badFilter = await open({});
    badFilter.send({ type: "auth", secret: SECRET, emails: "not-a-list" });
    const error = await badFilter.nth("error");
    assert.equal(error.code, "invalid_subscription");
    badFilter.send({ type: "auth", secret: SECRET, emails: [] });
    await badFilter.nth("ready");
    const gaveUp = await open({});
    gaveUp.send({ type: "auth", secret: SECRET, user_ids: 42 });
    await gaveUp.nth("error");
    await gaveUp.until(() => gaveUp.closed !== undefined, 10_000, "closed by the auth timeout");
    assert.equal(gaveUp.closed!.code, 4401);

    await assert.rejects(open({ secret: "nope" }), /upgrade refused: 401/);
    await assert.rejects(open({ secret: SECRET, query: "since=abc" }), /upgrade refused: 400/);
    await assert.rejects(open({ secret: SECRET, query: "since=a:b:1" }), /upgrade refused: 400/);

    const junk = await open();
    await junk.nth("ready");
    junk.ws.send("not json");
    await junk.until(() => junk.closed !== undefined, 5000, "close");
    assert.equal(junk.closed!.code, 1008);
  });

  test("the compat /ws never carried a v2 message", () => {
    assert.deepEqual(provider.violations, []);
    assert.ok(provider.messages.length > 0, "it did receive the changes, as compat messages");
  });
});
