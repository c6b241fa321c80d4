import assert from "node:assert/strict";
import { test } from "node:test";
import { RecentReaders } from "../../src/http/recent-readers.js";

test("a full /status read exempts one socket from the same address, within the window", () => {
  let now = 1000;
  const readers = new RecentReaders(60_000, () => now);
  assert.equal(readers.take("10.0.0.1"), false, "no read: a reconnect");
  readers.readToEnd("10.0.0.1");
  assert.equal(readers.take("10.0.0.2"), false, "another address");
  assert.equal(readers.take("10.0.0.1"), true, "the socket after the read");
  assert.equal(readers.take("10.0.0.1"), false, "a second socket is a reconnect");
  readers.readToEnd("10.0.0.1");
  readers.readToEnd("10.0.0.1");
  assert.equal(readers.take("10.0.0.1"), true, "two reads (two desktops behind one address)...");
  assert.equal(readers.take("10.0.0.1"), true, "...two sockets");
  readers.readToEnd("10.0.0.1");
  now += 60_001;
  assert.equal(readers.take("10.0.0.1"), false, "too old: the replay may not cover the gap");
});

test("the window is the replay window when that is shorter; 0 means every socket is resynced", () => {
  let now = 0;
  const short = new RecentReaders(5000, () => now);
  short.readToEnd("a");
  now = 5001;
  assert.equal(short.take("a"), false);
  const none = new RecentReaders(0, () => now);
  none.readToEnd("a");
  assert.equal(none.take("a"), false);
});
