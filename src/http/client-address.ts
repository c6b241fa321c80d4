import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";

/** The address a request comes from, as the per-address limits and the logs see it. */
export type ClientAddress = (req: IncomingMessage) => string;

/** The peer's own address: what the gateway uses when no proxy is trusted. */
export const peerAddress: ClientAddress = (req) => req.socket.remoteAddress ?? "";

/**
 * Behind a reverse proxy every desktop arrives from the proxy's address, so per-address limits
 * would become company-wide limits. When the peer is one of `trusted`, the client is the
 * right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to the left of it
 * are whatever the client claimed, never believed). Anything unparseable stops the walk at the
 * last trusted hop. With no trusted proxies, the header is ignored entirely. `trusted` holds
 * addresses and CIDR ranges as validated by the configuration.
 */
export function clientAddressFrom(trusted: readonly string[]): ClientAddress {
  if (trusted.length === 0) return peerAddress;
  const list = new BlockList();
  for (const entry of trusted) {
    const [address = "", bits] = entry.split("/");
    const type = isIP(address) === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  const isTrusted = (address: string): boolean => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
  };
  return (req) => {
    let client = peerAddress(req);
    const header = req.headers["x-forwarded-for"];
    if (header === undefined || !isTrusted(client)) return client;
    const hops = (Array.isArray(header) ? header.join(",") : header).split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.trim();
      if (isIP(hop) === 0) break;
      client = hop;
      if (!isTrusted(hop)) break;
    }
    return client;
  };
}

/** How logs name a connection: the client's address and the TCP port it came in on. */
export function remoteLabel(req: IncomingMessage, clientAddress: ClientAddress): string {
  return `${clientAddress(req)}:${req.socket.remotePort}`;
}
