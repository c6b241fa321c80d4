import type { WebSocket } from "ws";
import type { PresenceSnapshot } from "../presence/snapshot.js";
import type { ProviderStatus } from "../presence/status.js";
import { encodeStatus } from "../presence/wire.js";
import { textFrame, writeFrames } from "./ws-frames.js";

/** How often the pacer hands out its budget. */
const TICK_MS = 100;
/**
 * Most bytes written to one socket in one go, and the unsent bytes above which it is skipped
 * (smaller when the buffer cap is small: see the constructor).
 */
const MAX_CHUNK_BYTES = 64 * 1024;

interface Pending {
  /** Index of the next user to send, in the snapshot's visible order. */
  next: number;
  /** The layout `next` counts in; a different one restarts the socket's pass. */
  layout: number;
}

/** A user's status message as last framed. */
interface Framed {
  email: string;
  status: string;
  frame: Buffer;
}

/**
 * Sends every user's current status to sockets that may have missed changes, paced.
 *
 * The Outlook provider reads `/status` once, when it starts; after a reconnect (a laptop waking
 * up, a network change, a gateway restart) it only hears new changes, and the replay on connect
 * covers just the last PRESENCE_REPLAY_WINDOW_MS. Whatever changed while it was away would stay
 * wrong until the keepalive's round-robin reached each user, which at one user per keepalive can
 * take days. So a socket that did not just page `/status` is sent the whole snapshot again, as
 * ordinary status messages (the provider only ever sees the messages it already knows).
 *
 * The cost is bounded across all sockets: at most `bytesPerSecond`, handed out every 100 ms to
 * the sockets in the order they connected, each in chunks of up to 64 KiB made of frames built
 * once per user and status (nothing is serialized per socket). A socket with more than a chunk
 * unsent is skipped until it drains, and a chunk is at most a quarter of the buffer cap
 * (PRESENCE_WS_MAX_BUFFER_BYTES), so a pass never trips the cap. After a gateway restart
 * every socket reconnects: a 10,000-user directory (about 0.9 MB) to 10,000 sockets at the default
 * 8 MiB/s takes about 18 minutes in the background; one laptop waking up is served at once.
 *
 * Each chunk is built from the snapshot as it is when written, and live changes are written in
 * the same thread, so a resync message never overtakes a newer change.
 */
export class ResyncPacer {
  private readonly pending = new Map<WebSocket, Pending>();
  private timer: NodeJS.Timeout | undefined;
  /** Frames by user id; a user's is rebuilt when their status or email changed. */
  private framed = new Map<string, Framed>();
  private framedLayout = -1;

  private readonly chunkBytes: number;

  /** `maxBufferBytes`: the cap a socket is closed at (1013); chunks stay well under it. */
  constructor(
    private readonly snapshot: PresenceSnapshot,
    private readonly bytesPerSecond: number,
    maxBufferBytes: number,
    private readonly onSent: (messages: number, bytes: number, ws: WebSocket) => void = () => undefined,
    /** How a chunk of `messages` messages is written (the pool's, through its unsent-bytes cap); false: not written. */
    private readonly write: (ws: WebSocket, frames: Buffer, messages: number) => boolean = writeFrames,
  ) {
    this.chunkBytes = Math.max(512, Math.min(MAX_CHUNK_BYTES, Math.floor(maxBufferBytes / 4)));
  }

  get enabled(): boolean {
    return this.bytesPerSecond > 0;
  }

  /** Sockets still waiting for (part of) their pass. */
  get size(): number {
    return this.pending.size;
  }

  add(ws: WebSocket): void {
    if (!this.enabled) return;
    this.pending.set(ws, { next: 0, layout: this.snapshot.layout });
    this.timer ??= setInterval(() => this.tick(), TICK_MS).unref();
  }

  delete(ws: WebSocket): void {
    this.pending.delete(ws);
    if (this.pending.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.pending.clear();
    this.framed.clear();
    this.framedLayout = -1;
  }

  /** One round: up to a tenth of the per-second budget, oldest sockets first. Public for tests. */
  tick(): void {
    // At least 1 KiB a tick, so the largest possible status message (a 254-character email) fits.
    let budget = Math.max(1024, Math.floor((this.bytesPerSecond * TICK_MS) / 1000));
    const visible = this.snapshot.visible();
    const layout = this.snapshot.layout;
    if (layout !== this.framedLayout) {
      this.framed.clear(); // users may have left: start over rather than keep their frames
      this.framedLayout = layout;
    }
    // Sockets that connected together (a reconnect storm) are at the same place in their pass:
    // the chunk built for one is written to the next ones too, one allocation a tick rather than
    // one a socket. Only within this tick: the snapshot cannot change during it.
    let last: { from: number; limit: number; to: number; chunk: Buffer; messages: number } | undefined;
    for (const [ws, p] of this.pending) {
      if (budget <= 0) break;
      if (ws.readyState !== ws.OPEN) {
        this.pending.delete(ws);
        continue;
      }
      if (ws.bufferedAmount > this.chunkBytes) continue;
      if (p.layout !== layout) {
        p.layout = layout;
        p.next = 0;
      }
      const limit = Math.min(this.chunkBytes, budget);
      let chunk: Buffer | undefined;
      let messages = 0;
      if (last && last.from === p.next && last.limit === limit) {
        ({ chunk, messages } = last);
        p.next = last.to;
      } else {
        const from = p.next;
        const frames: Buffer[] = [];
        let bytes = 0;
        // Whole frames only, within the budget left; a frame larger than any chunk goes alone.
        while (p.next < visible.length) {
          const frame = this.frameOf(visible[p.next]!);
          const alone = frames.length === 0 && frame.length > this.chunkBytes;
          if (bytes + frame.length > limit && !alone) break;
          frames.push(frame);
          bytes += frame.length;
          p.next++;
          if (alone) break;
        }
        if (frames.length === 0 && p.next < visible.length) break; // this tick's budget is spent
        if (frames.length > 0) {
          chunk = frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes);
          messages = frames.length;
          last = { from, limit, to: p.next, chunk, messages };
        }
      }
      if (chunk && this.write(ws, chunk, messages)) {
        budget -= chunk.length;
        this.onSent(messages, chunk.length, ws);
      }
      if (p.next >= visible.length) this.pending.delete(ws);
    }
    if (this.pending.size === 0) this.stop();
  }

  private frameOf(u: { id: string; email: string; status?: ProviderStatus }): Buffer {
    const known = this.framed.get(u.id);
    if (known && known.status === u.status && known.email === u.email) return known.frame;
    const frame = textFrame(`${encodeStatus(u.id, u.email, u.status!)}\n`);
    this.framed.set(u.id, { email: u.email, status: u.status!, frame });
    return frame;
  }
}
