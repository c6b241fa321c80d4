import { execFileSync } from "node:child_process";

/**
 * The hosts of the network fault tests, each a network namespace, and the three networks that
 * join them. Every bridge lives in the `hub` namespace, which has no other link: nothing these
 * tests send can leave the namespaces they made. Addresses are 10.231.<net>.<host>, routed only
 * on these bridges.
 *
 *   net r (Redis)       1: ctl   2: redis   11-13: gw1-gw3
 *   net m (Mattermost)  1: ctl (the simulator)          11-13: gw1-gw3
 *   net c (clients)     1: ctl (the providers)          11-13: gw1-gw3
 *
 * The test process runs in `ctl`: it is the simulator (on net m), the providers (on net c) and
 * the operator (reading Redis on net r). Cutting one link (a veth in the hub) is a partition
 * between one host and one network, the others untouched.
 */
export const PREFIX = "opnf-";
export const NETS = { r: 1, m: 2, c: 3 } as const;
export type Net = keyof typeof NETS;
export const GATEWAYS = ["gw1", "gw2", "gw3"] as const;
export type GatewayHost = (typeof GATEWAYS)[number];

interface Host {
  name: string;
  nets: Partial<Record<Net, number>>;
}

export const HOSTS: Host[] = [
  { name: "ctl", nets: { r: 1, m: 1, c: 1 } },
  { name: "redis", nets: { r: 2 } },
  ...GATEWAYS.map((g, i) => ({ name: g, nets: { r: 11 + i, m: 11 + i, c: 11 + i } })),
];

export const ns = (host: string): string => `${PREFIX}${host}`;
export const HUB = ns("hub");
export const address = (net: Net, host: number): string => `10.231.${NETS[net]}.${host}`;
export const hostAddress = (host: string, net: Net): string => {
  const h = HOSTS.find((x) => x.name === host)?.nets[net];
  if (h === undefined) throw new Error(`${host} is not on net ${net}`);
  return address(net, h);
};
/** The hub's end of a host's link to a network (at most 15 characters). */
export const linkName = (host: string, net: Net): string => `${host}-${net}`;

export const REDIS_PORT = 6379;
export const GATEWAY_PORT = 8080;
export const SIM_PORT = 8065;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Namespaces left by an earlier run (a killed runner): their processes and links go too. */
export function removeStale(): string[] {
  const names = ip("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(PREFIX));
  for (const name of names) removeNamespace(name);
  return names;
}

function removeNamespace(name: string): void {
  let pids: string[] = [];
  try {
    pids = ip("netns", "pids", name).split("\n").filter(Boolean);
  } catch {
    // already gone
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  try {
    ip("netns", "delete", name);
  } catch {
    // already gone
  }
}

export function create(): void {
  ip("netns", "add", HUB);
  ip("-n", HUB, "link", "set", "lo", "up");
  for (const net of Object.keys(NETS) as Net[]) {
    ip("-n", HUB, "link", "add", `br-${net}`, "type", "bridge");
    ip("-n", HUB, "link", "set", `br-${net}`, "up");
  }
  for (const host of HOSTS) {
    ip("netns", "add", ns(host.name));
    ip("-n", ns(host.name), "link", "set", "lo", "up");
    for (const [net, h] of Object.entries(host.nets) as [Net, number][]) {
      const outer = linkName(host.name, net);
      ip(
        "link",
        "add",
        outer,
        "netns",
        HUB,
        "type",
        "veth",
        "peer",
        "name",
        `${net}0`,
        "netns",
        ns(host.name),
      );
      ip("-n", HUB, "link", "set", outer, "master", `br-${net}`);
      ip("-n", HUB, "link", "set", outer, "up");
      ip("-n", ns(host.name), "addr", "add", `${address(net, h)}/24`, "dev", `${net}0`);
      ip("-n", ns(host.name), "link", "set", `${net}0`, "up");
    }
  }
}

export function destroy(): void {
  for (const host of HOSTS) removeNamespace(ns(host.name));
  removeNamespace(HUB);
}

/** Cuts (or restores) one host's link to one network: packets vanish, no FIN, no RST. */
export function setLink(host: string, net: Net, up: boolean): void {
  ip("-n", HUB, "link", "set", linkName(host, net), up ? "up" : "down");
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function cannotMakeNamespaces(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  const probe = `${PREFIX}probe`;
  try {
    ip("netns", "add", probe);
    ip("netns", "delete", probe);
    return undefined;
  } catch (err) {
    return `ip netns add failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`;
  }
}
