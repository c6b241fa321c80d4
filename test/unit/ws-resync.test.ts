import assert from "node:assert/strict";
import { test } from "node:test";
import type { WebSocket } from "ws";
import { ResyncPacer } from "../../src/http/ws-resync.js";
import { PresenceSnapshot } from "../../src/presence/snapshot.js";
import { directoryUser as user, userId as id } from "../helpers/directory.js";

const MiB = 1024 * 1024;

function snapshotOf(n: number, status = "online"): PresenceSnapshot {
  const s = new PresenceSnapshot();
  s.applyDirectory(Array.from({ length: n }, (_, i) => user(i)));
  s.applyStatuses(new Map(Array.from({ length: n }, (_, i) => [id(i), status])), true);
  return s;
}

/** Just what the pacer touches of a `ws` socket: its state, its buffer and the raw socket. */
class FakeSocket {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly writes: Buffer[] = [];
  readonly _socket = {
    destroyed: false,
    writable: true,
    write: (b: Buffer) => this.writes.push(Buffer.from(b)),
  };
  get ws(): WebSocket {
    return this as unknown as WebSocket;
  }
  /** The status messages written, decoded from the (unmasked, short) text frames. */
  messages(): { email: string; status: string }[] {
    const out: { email: string; status: string }[] = [];
    const all = Buffer.concat(this.writes);
    for (let i = 0; i < all.length;) {
      assert.equal(all[i], 0x81, "a final text frame");
      let len = all[i + 1]!;
      let at = i + 2;
      if (len === 126) {
        len = all.readUInt16BE(i + 2);
        at = i + 4;
      }
      const text = all.subarray(at, at + len).toString();
      assert.ok(text.endsWith("\n"));
      const m = JSON.parse(text) as { email: string; status: string };
      out.push({ email: m.email, status: m.status });
      i = at + len;
    }
    return out;
  }
}

test("each socket gets every user once, in order, within the budget per tick, oldest socket first", () => {
  const snapshot = snapshotOf(100);
  const sent: number[] = [];
  // 1,000 bytes per tick, whole frames only (each about 80 bytes here).
  const pacer = new ResyncPacer(snapshot, 10_000, MiB, (messages) => sent.push(messages));
  const a = new FakeSocket();
  const b = new FakeSocket();
  pacer.add(a.ws);
  pacer.add(b.ws);
  pacer.tick();
  const first = Buffer.concat(a.writes).length;
  assert.ok(first <= 1000 && first > 900, `${first} bytes: the tick's budget, to the oldest socket first`);
  assert.equal(b.writes.length, 0);
  for (let i = 0; i < 40 && pacer.size > 0; i++) pacer.tick();
  assert.equal(pacer.size, 0, "both passes finished, then the pacer stops");
  const expected = snapshot.visible().map((u) => ({ email: u.email, status: u.status! }));
  assert.deepEqual(a.messages(), expected);
  assert.deepEqual(b.messages(), expected);
  assert.equal(
    sent.reduce((x, y) => x + y, 0),
    200,
  );
  pacer.stop();
});

test("what is written is the status at the time of writing, never an older one", () => {
  const snapshot = snapshotOf(30);
  const pacer = new ResyncPacer(snapshot, 10_000, MiB);
  const a = new FakeSocket();
  pacer.add(a.ws);
  pacer.tick(); // the first dozen users
  snapshot.applyStatuses(new Map([[id(20), "dnd"]]), true);
  pacer.tick();
  pacer.tick();
  assert.equal(pacer.size, 0);
  const got = a.messages();
  assert.equal(got.length, 30);
  assert.deepEqual(got[20], { email: "user20@example.com", status: "dnd" });
});

test("a socket with unsent bytes is skipped until it drains; a closed one is dropped; a new layout restarts a pass", () => {
  const snapshot = snapshotOf(30);
  const pacer = new ResyncPacer(snapshot, 1_000_000, MiB);
  const slow = new FakeSocket();
  const gone = new FakeSocket();
  const moved = new FakeSocket();
  slow.bufferedAmount = 1 << 20;
  pacer.add(slow.ws);
  pacer.add(gone.ws);
  gone.readyState = 3;
  pacer.tick();
  assert.equal(slow.writes.length, 0);
  assert.equal(gone.writes.length, 0);
  assert.equal(pacer.size, 1, "only the slow socket still waits");
  slow.bufferedAmount = 0;
  pacer.tick();
  assert.equal(slow.messages().length, 30);

  const small = new ResyncPacer(snapshot, 10_000, MiB);
  small.add(moved.ws);
  small.tick(); // some of the 30
  const before = moved.messages().length;
  assert.ok(before > 0 && before < 30);
  snapshot.applyDirectory([...Array.from({ length: 30 }, (_, i) => user(i)), user(30)]);
  snapshot.applyStatuses(new Map([[id(30), "away"]]), true);
  for (let i = 0; i < 10 && small.size > 0; i++) small.tick();
  const got = moved.messages();
  assert.equal(got.length, before + 31, "the pass restarted on the new layout and covered everyone");
  assert.deepEqual(got.at(-1), { email: "user30@example.com", status: "away" });
});

test("a budget of 0 turns it off", () => {
  const pacer = new ResyncPacer(snapshotOf(5), 0, MiB);
  const a = new FakeSocket();
  pacer.add(a.ws);
  assert.equal(pacer.size, 0);
  assert.equal(pacer.enabled, false);
});

test("a small buffer cap makes small chunks; a message larger than any chunk still goes, alone", () => {
  const snapshot = new PresenceSnapshot();
  // Go's escaping makes each & six bytes: this one message is larger than a 512-byte chunk.
  const wide = `${"a&".repeat(120)}@example.com`;
  snapshot.applyDirectory([user(0), user(1, wide), user(2)]);
  snapshot.applyStatuses(new Map([0, 1, 2].map((i) => [id(i), "online"])), true);
  const pacer = new ResyncPacer(snapshot, 1_000_000, 2048); // chunks of at most 512 bytes
  const a = new FakeSocket();
  pacer.add(a.ws);
  for (let i = 0; i < 10 && pacer.size > 0; i++) pacer.tick();
  assert.equal(pacer.size, 0, "the pass finished");
  assert.deepEqual(
    a.messages().map((m) => m.email),
    ["user0@example.com", wide, "user2@example.com"],
  );
  assert.equal(
    a.writes.filter((w) => w.length > 512).length,
    1,
    "chunks of at most a quarter of the cap, but for the one wide message",
  );
});

test("sockets at the same place in their pass share one chunk within a tick; their messages are unchanged", () => {
  const snapshot = snapshotOf(100);
  const writes: { ws: WebSocket; frames: Buffer; messages: number }[] = [];
  const received = new Map<WebSocket, number>();
  // A 4,000-byte cap makes 1,000-byte chunks (about 12 messages); the budget serves everyone each tick.
  const pacer = new ResyncPacer(snapshot, 100 * MiB, 4000, undefined, (ws, frames, messages) => {
    writes.push({ ws, frames, messages });
    received.set(ws, (received.get(ws) ?? 0) + messages);
    return true;
  });
  const [a, b, c, d] = [new FakeSocket(), new FakeSocket(), new FakeSocket(), new FakeSocket()];
  for (const s of [a, b, c]) pacer.add(s.ws);
  pacer.tick();
  assert.equal(writes.length, 3);
  assert.ok(writes[0]!.messages > 1 && writes[0]!.messages < 100);
  assert.ok(
    writes[1]!.frames === writes[0]!.frames && writes[2]!.frames === writes[0]!.frames,
    "one chunk, shared",
  );
  const first = Buffer.from(writes[0]!.frames);
  pacer.add(d.ws); // starts from the beginning, behind the others
  writes.length = 0;
  pacer.tick();
  assert.equal(writes.length, 4);
  assert.ok(writes[1]!.frames === writes[0]!.frames && writes[2]!.frames === writes[0]!.frames);
  assert.notEqual(writes[3]!.frames, writes[0]!.frames, "a socket elsewhere in its pass gets its own chunk");
  assert.deepEqual(writes[3]!.frames, first, "the same bytes as the others got at that place");
  // Every socket still gets every user exactly once.
  for (let i = 0; i < 50 && pacer.size > 0; i++) pacer.tick();
  assert.equal(pacer.size, 0);
  for (const s of [a, b, c, d]) assert.equal(received.get(s.ws), 100);
});
