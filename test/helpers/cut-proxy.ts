import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A loopback TCP relay that can be cut like a partitioned link: while cut, bytes in either
 * direction are dropped (no FIN, no RST) and new connections are accepted but never relayed, so
 * the peers only see silence. `heal` destroys every connection made or used while cut (their
 * streams lost bytes) and relays again.
 */
export class CutProxy {
  private cut = false;
  private readonly pairs = new Set<[Socket, Socket | undefined]>();
  private spoiled = new Set<[Socket, Socket | undefined]>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<CutProxy> {
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const proxy = new CutProxy(server, (server.address() as { port: number }).port);
    server.on("connection", (down) => proxy.onConnection(down, target));
    return proxy;
  }

  private onConnection(down: Socket, target: { host: string; port: number }): void {
    down.on("error", () => undefined);
    const pair: [Socket, Socket | undefined] = [down, undefined];
    this.pairs.add(pair);
    down.on("close", () => {
      pair[1]?.destroy();
      this.pairs.delete(pair);
      this.spoiled.delete(pair);
    });
    if (this.cut) {
      this.spoiled.add(pair);
      down.on("data", () => undefined); // swallowed
      return;
    }
    const up = connect(target.port, target.host);
    pair[1] = up;
    up.on("error", () => undefined);
    up.on("close", () => down.destroy());
    down.on("data", (d: Buffer) => {
      if (this.cut) this.spoiled.add(pair);
      else up.write(d);
    });
    up.on("data", (d: Buffer) => {
      if (this.cut) this.spoiled.add(pair);
      else down.write(d);
    });
  }

  /** Drops every byte from now on, silently. */
  cutLink(): void {
    this.cut = true;
    for (const p of this.pairs) this.spoiled.add(p);
  }

  heal(): void {
    this.cut = false;
    for (const [down, up] of this.spoiled) {
      down.destroy();
      up?.destroy();
    }
    this.spoiled.clear();
  }

  async close(): Promise<void> {
    for (const [down, up] of this.pairs) {
      down.destroy();
      up?.destroy();
    }
    this.server.close();
    await once(this.server, "close");
  }
}
