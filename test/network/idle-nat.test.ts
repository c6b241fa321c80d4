import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { expectedStatuses, sleep, storeDiff, waitUntil } from "../helpers/in-process.js";
import { FakeProvider } from "../helpers/provider.js";
import { NetCluster, SECRET, notInside, type Replica } from "./cluster.js";
import { IdleNat } from "./idle-nat.js";
import { GATEWAY_PORT, hostAddress } from "./topology.js";

/*
 * A NAT that forgets connections idle for 60 s, scaled by a tenth like the settings it meets:
 * the gateway's keepalive (20 s by default) becomes 2 s, the NAT's limit 6 s. The provider's
 * reconnect after silence (30 s by default) is 10 s here, above the negative control's 8 s
 * keepalive, so that only the NAT can make it fire. Pings (30 s by default, and they cross the
 * NAT too) are pushed past the test so that the keepalive alone holds the NAT open.
 */
const NAT_IDLE_MS = 6000;
const KEEPALIVE_MS = 2000;
const LONG_KEEPALIVE_MS = 8000;
const SILENCE_MS = 10_000;
const PING_MS = 120_000;
const OPEN = 1;

/**
 * A desktop as the Windows provider behaves: it pages /status once, holds /ws, and when no message
 * came for `silenceMs` it drops the socket and opens a new one, never re-reading /status.
 * /status is read without the NAT (the NAT is about the long-lived socket); both come from this
 * namespace's address, so the gateway treats the first socket as a start and the others as
 * reconnects (which it resyncs).
 */
class WatchfulDesktop {
  /** When each message arrived, one list per socket opened. */
  readonly arrivals: number[][] = [];
  readonly reconnects: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly provider: FakeProvider,
    private readonly silenceMs: number,
  ) {}

  static async open(statusUrl: string, wsUrl: string, silenceMs: number): Promise<WatchfulDesktop> {
    const reader = new FakeProvider(statusUrl, SECRET);
    await reader.loadStatus();
    const p = new FakeProvider(wsUrl, SECRET);
    for (const [email, status] of reader.store) p.store.set(email, status);
    const d = new WatchfulDesktop(p, silenceMs);
    await d.connect();
    return d;
  }

  converged(want: Map<string, string>): boolean {
    return storeDiff(this.provider, want).length === 0;
  }

  /** The longest time one socket went without a message (from its opening). */
  longestSilence(now = Date.now()): number {
    let worst = 0;
    for (const [i, list] of this.arrivals.entries()) {
      const end = this.reconnects[i] ?? now;
      const times = [...list, end];
      for (let k = 1; k < times.length; k++) worst = Math.max(worst, times[k]! - times[k - 1]!);
    }
    return worst;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.provider.ws?.terminate();
  }

  private async connect(): Promise<void> {
    await this.provider.connect();
    const list = [Date.now()];
    this.arrivals.push(list);
    this.provider.ws!.on("message", () => {
      list.push(Date.now());
      this.arm();
    });
    this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.silent(), this.silenceMs);
    this.timer.unref();
  }

  private async silent(): Promise<void> {
    if (this.closed) return;
    this.provider.ws?.terminate();
    this.reconnects.push(Date.now());
    await this.connect().catch(() => this.arm());
  }
}

const skip = notInside;

describe("a NAT that forgets idle connections between desktops and the gateway", { skip }, () => {
  let c: NetCluster;
  const nats: IdleNat[] = [];
  const desktops: WatchfulDesktop[] = [];
  let offset = 0;

  before(async () => {
    c = await NetCluster.start({
      ttlMs: 3000,
      pollMs: 500,
      users: 150,
      env: { PRESENCE_WS_PING_INTERVAL_MS: String(PING_MS), PRESENCE_KEEPALIVE_MS: String(KEEPALIVE_MS) },
      // gw3 is the negative control's gateway.
      hostEnv: { gw3: { PRESENCE_KEEPALIVE_MS: String(LONG_KEEPALIVE_MS) } },
    });
  });

  after(async () => {
    for (const d of desktops) d.close();
    for (const n of nats) await n.close();
    await c?.stop();
  });

  async function behindNat(r: Replica): Promise<{ nat: IdleNat; desktop: WatchfulDesktop }> {
    const nat = await IdleNat.start({ host: hostAddress(r.host, "c"), port: GATEWAY_PORT }, NAT_IDLE_MS);
    nats.push(nat);
    const desktop = await WatchfulDesktop.open(r.gw.url, nat.url, SILENCE_MS);
    desktops.push(desktop);
    return { nat, desktop };
  }

  async function allConverged(ds: WatchfulDesktop[], timeoutMs: number, what: string): Promise<void> {
    await waitUntil(() => ds.every((d) => d.converged(expectedStatuses(c.sim))), timeoutMs, what);
    await c.converged(c.replicas, timeoutMs, what);
  }

  test("with the keepalive, sockets through the NAT outlive several idle limits and get every change", async (t) => {
    const behind = [await behindNat(c.replicas[0]!), await behindNat(c.replicas[1]!)];
    const ds = behind.map((b) => b.desktop);
    const start = Date.now();
    const lags: number[] = [];
    for (let round = 0; round < 2; round++) {
      // No change anywhere for 1.5 idle limits: only the keepalive crosses the NAT.
      await sleep(1.5 * NAT_IDLE_MS);
      const at = Date.now();
      c.flip(10, offset);
      offset += 10;
      await allConverged(ds, 15_000, `round ${round + 1}`);
      lags.push(Date.now() - at);
    }
    const openMs = Date.now() - start;
    for (const { nat, desktop } of behind) {
      assert.deepEqual(nat.forgotten(), [], "the NAT forgot a connection");
      assert.equal(nat.entries.length, 1, "one connection through the NAT, the socket's");
      assert.deepEqual(desktop.reconnects, [], "the desktop reconnected");
      assert.equal(desktop.provider.ws?.readyState, OPEN);
      assert.deepEqual(desktop.provider.violations, []);
    }
    t.diagnostic(
      `measured: ${behind.length} sockets through a NAT with a ${NAT_IDLE_MS} ms idle limit stayed open ` +
        `${openMs} ms (${(openMs / NAT_IDLE_MS).toFixed(1)} limits), keepalive ${KEEPALIVE_MS} ms, ` +
        `longest silence on a socket ${Math.max(...ds.map((d) => d.longestSilence()))} ms, ` +
        `${Math.min(...ds.map((d) => d.arrivals[0]!.length - 1))}+ messages each; ` +
        `changes converged in ${lags.join(", ")} ms`,
    );
    await c.assertV2(t, "through the keepalive run");
  });

  test("negative control: with a keepalive longer than the NAT's limit the socket goes silent; the desktop reconnects and converges", async (t) => {
    const r = c.replicas[2]!;
    const { nat, desktop } = await behindNat(r);
    // The same gateway and settings without the NAT: the keepalive alone keeps it from reconnecting.
    const direct = await WatchfulDesktop.open(r.gw.url, r.gw.url, SILENCE_MS);
    desktops.push(direct);
    const opened = Date.now();
    await waitUntil(
      () => nat.forgotten().length > 0,
      LONG_KEEPALIVE_MS + NAT_IDLE_MS + 5000,
      "the NAT forgot",
    );
    const lost = nat.forgotten()[0]!;
    const forgottenAt = lost.forgottenAt!;
    const at = Date.now();
    c.flip(10, offset);
    offset += 10;
    await waitUntil(() => desktop.reconnects.length > 0, SILENCE_MS + 5000, "the desktop reconnected");
    const reconnectedAt = desktop.reconnects[0]!;
    await allConverged([desktop, direct], 15_000, "after the reconnect");
    const convergedAt = Date.now();

    // Nothing reached the desktop once the NAT forgot: the changes went into the void.
    assert.ok(
      desktop.arrivals[0]!.every((a) => a < forgottenAt),
      "a message crossed the NAT after it forgot the connection",
    );
    // Neither side was told: the NAT never saw a close on the forgotten connection.
    assert.equal(lost.state, "forgotten");
    assert.equal(nat.entries.length, 2, "the reconnect is a new connection through the NAT");
    assert.equal(nat.entries[1]!.state, "open");
    assert.equal(desktop.provider.ws?.readyState, OPEN);
    assert.deepEqual(direct.reconnects, [], "the desktop without the NAT reconnected");
    assert.deepEqual(desktop.provider.violations, []);
    const lastMessage = desktop.arrivals[0]!.at(-1)!;
    t.diagnostic(
      `measured: keepalive ${LONG_KEEPALIVE_MS} ms, NAT limit ${NAT_IDLE_MS} ms: forgotten ` +
        `${forgottenAt - opened} ms after the socket opened (${forgottenAt - Math.max(lost.lastToClient, lost.lastToServer)} ms idle); ` +
        `the desktop heard nothing for ${reconnectedAt - lastMessage} ms and reconnected ` +
        `${reconnectedAt - forgottenAt} ms after the NAT forgot (the changes were made ${reconnectedAt - at} ms before); ` +
        `it held every status ${convergedAt - reconnectedAt} ms after reconnecting; the desktop without the NAT kept its socket ` +
        `(longest silence ${direct.longestSilence()} ms)`,
    );
    await c.assertV2(t, "after the negative control");
  });
});
