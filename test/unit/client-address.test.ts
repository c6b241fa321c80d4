import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { test } from "node:test";
import { clientAddressFrom, peerAddress } from "../../src/http/client-address.js";

/** Just what the resolver reads of a request: the peer's address and the headers. */
function req(peer: string, forwardedFor?: string | string[]): IncomingMessage {
  const headers = forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor };
  return { socket: { remoteAddress: peer }, headers } as unknown as IncomingMessage;
}

test("with no trusted proxy the header is ignored: the peer is the client", () => {
  const resolve = clientAddressFrom([]);
  assert.equal(resolve, peerAddress);
  assert.equal(resolve(req("127.0.0.1", "10.1.2.3")), "127.0.0.1");
});

test("a trusted peer's X-Forwarded-For names the client: the right-most hop that is not a proxy", () => {
  const resolve = clientAddressFrom(["127.0.0.1", "10.0.0.0/8"]);
  assert.equal(resolve(req("127.0.0.1", "192.0.2.7")), "192.0.2.7");
  // A second proxy (10.x) in between is skipped; what the client claimed to the left is not believed.
  assert.equal(resolve(req("127.0.0.1", "6.6.6.6, 192.0.2.7, 10.4.4.4")), "192.0.2.7");
  // Several header lines count as one list, in order.
  assert.equal(resolve(req("127.0.0.1", ["6.6.6.6", "192.0.2.8"])), "192.0.2.8");
  // No header: the proxy itself (its own requests, health checks).
  assert.equal(resolve(req("127.0.0.1")), "127.0.0.1");
});

test("an untrusted peer cannot choose its address by sending the header", () => {
  const resolve = clientAddressFrom(["10.0.0.0/8"]);
  assert.equal(resolve(req("192.0.2.9", "10.0.0.1")), "192.0.2.9");
  assert.equal(resolve(req("192.0.2.9", "203.0.113.5")), "192.0.2.9");
});

test("garbage in the header stops the walk at the last hop that was believed", () => {
  const resolve = clientAddressFrom(["127.0.0.1", "10.0.0.0/8"]);
  assert.equal(resolve(req("127.0.0.1", "not-an-ip")), "127.0.0.1");
  assert.equal(resolve(req("127.0.0.1", "192.0.2.7, unknown, 10.0.0.3")), "10.0.0.3");
  assert.equal(resolve(req("127.0.0.1", "")), "127.0.0.1");
  assert.equal(resolve(req("127.0.0.1", "192.0.2.7:5555")), "127.0.0.1");
});

test("IPv6 ranges and IPv4-mapped peers (a server listening on ::) are matched", () => {
  const resolve = clientAddressFrom(["127.0.0.1", "::1", "fd00::/8"]);
  assert.equal(resolve(req("::ffff:127.0.0.1", "2001:db8::5")), "2001:db8::5");
  assert.equal(resolve(req("::1", "2001:db8::6, fd12::1")), "2001:db8::6");
  assert.equal(resolve(req("2001:db8::9", "2001:db8::6")), "2001:db8::9");
});
