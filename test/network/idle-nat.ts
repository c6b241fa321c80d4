import { EventEmitter, once } from "node:events";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

/** One TCP connection through the NAT, as the NAT sees it. */
export interface NatEntry {
  readonly id: number;
  readonly openedAt: number;
  /** Last time bytes went client → server, and server → client. */
  lastToServer: number;
  lastToClient: number;
  bytesToServer: number;
  bytesToClient: number;
  /** `forgotten`: idle past the limit, nothing forwarded any more and neither side told. */
  state: "open" | "forgotten" | "closed";
  forgottenAt?: number;
}

/**
 * A TCP relay that behaves like a home router's NAT: it forwards a connection while it is used
 * and silently forgets one that carried nothing, either way, for `idleMs`.
 *
 * Toxiproxy has no idle-timeout toxic, hence this. Any byte in either direction restarts a
 * connection's idle time, as any packet through a NAT refreshes its mapping. Once forgotten, a
 * real NAT drops the connection's packets: no FIN, no RST, neither end learns anything. Here the
 * relay stops reading both sockets and forwards nothing more, not even a close from one side to
 * the other. The one difference from a real NAT: each end's TCP peer is this relay's kernel, which
 * still acknowledges what fits in its receive buffer, so a sender sees its window close rather
 * than its retransmissions time out. To either application the connection just goes silent.
 *
 * It runs in the test process (the `ctl` namespace, where the providers are): a desktop connects
 * to it on loopback, and it connects on to a gateway over the clients' network.
 */
export class IdleNat extends EventEmitter<{ forgotten: [NatEntry] }> {
  readonly entries: NatEntry[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
    readonly idleMs: number,
  ) {
    super();
  }

  static async start(target: { host: string; port: number }, idleMs: number): Promise<IdleNat> {
    // allowHalfOpen: a FIN from one side is passed on by hand, and only while the entry is open.
    const server = createServer({ allowHalfOpen: true });
    const nat = new IdleNat(server, target, idleMs);
    server.on("connection", (client) => nat.relay(client));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return nat;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  forgotten(): NatEntry[] {
    return this.entries.filter((e) => e.state === "forgotten");
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    await once(this.server, "close");
  }

  private relay(client: Socket): void {
    const now = Date.now();
    const entry: NatEntry = {
      id: this.entries.length + 1,
      openedAt: now,
      lastToServer: now,
      lastToClient: now,
      bytesToServer: 0,
      bytesToClient: 0,
      state: "open",
    };
    this.entries.push(entry);
    const server = connect({ ...this.target, allowHalfOpen: true });
    for (const s of [client, server]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    }
    // Whatever the client sends before the server side is up waits in the kernel.
    client.pause();
    server.once("connect", () => {
      if (entry.state === "open") client.resume();
    });
    this.forward(entry, client, server, "toServer");
    this.forward(entry, server, client, "toClient");
    this.watchIdle(entry, client, server);
  }

  private forward(entry: NatEntry, from: Socket, to: Socket, dir: "toServer" | "toClient"): void {
    from.on("data", (chunk: Buffer) => {
      if (entry.state !== "open") return;
      if (dir === "toServer") {
        entry.lastToServer = Date.now();
        entry.bytesToServer += chunk.length;
      } else {
        entry.lastToClient = Date.now();
        entry.bytesToClient += chunk.length;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once("drain", () => {
          if (entry.state === "open") from.resume();
        });
      }
    });
    // A FIN or a reset passes through a NAT that still knows the connection, and not otherwise.
    from.on("end", () => {
      if (entry.state === "open") to.end();
    });
    from.on("error", () => undefined);
    from.on("close", () => {
      if (entry.state !== "open") return;
      entry.state = "closed";
      to.destroy();
    });
  }

  /** One timer per connection, re-armed for the time left whenever it fires early. */
  private watchIdle(entry: NatEntry, client: Socket, server: Socket): void {
    const check = (): void => {
      if (entry.state !== "open") return;
      const idle = Date.now() - Math.max(entry.lastToServer, entry.lastToClient);
      if (idle < this.idleMs) {
        setTimeout(check, this.idleMs - idle).unref();
        return;
      }
      entry.state = "forgotten";
      entry.forgottenAt = Date.now();
      // Stop reading both ends: nothing more is forwarded, and no FIN or RST is sent to either.
      client.pause();
      server.pause();
      this.emit("forgotten", entry);
    };
    setTimeout(check, this.idleMs).unref();
  }
}
