import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type { Logger } from "../log.js";
import type { Change, ChangeMeta, PresenceSnapshot, SnapshotState } from "../presence/snapshot.js";
import type { ProviderStatus } from "../presence/status.js";
import { BrokerError, type Broker, type SharedPluginSettings } from "./types.js";

export interface RedisBrokerOptions {
  /** One Redis named directly; or `sentinels` and `sentinelName`, which name the current master. */
  url?: string;
  sentinels?: { host: string; port: number }[];
  sentinelName?: string;
  /** Key prefix, so several deployments (or tests) can share one Redis. */
  prefix: string;
  leaderTtlMs: number;
  log: Logger;
  /** Stream entries kept (each is one poll cycle's batch). */
  maxEntries?: number;
  /** The leader rewrites the full state at least this often, so a reload needs few entries. */
  stateEveryMs?: number;
}

/**
 * One stream entry: a batch, and whether the directory changed (then the state was rewritten
 * first). `e`: the epoch the batch's seqs belong to (absent in entries written before epochs).
 */
interface Entry {
  dir: boolean;
  e?: string;
  changes: [seq: number, userId: string, email: string, status: ProviderStatus, at: number][];
}

// Fenced writes: done only while the lease still names this replica, atomically.
const FENCED_XADD = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('NOTLEADER') end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], ARGV[3], 'd', ARGV[4])`;
const FENCED_SET = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('NOTLEADER') end
return redis.call('SET', KEYS[2], ARGV[2])`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
// The highest seq any replica has seen, so a leader elected after a failover numbers past
// batches that reached replicas but not the promoted Redis (replication is asynchronous).
const SEEN_MAX = `local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
// Read once: a handover proves continuity to the next leader only (see promote).
const TAKE = `local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return v`;

/** The leader's snapshot as stored: `id` is the last stream entry whose effect it includes. */
interface StoredState extends SnapshotState {
  id: string;
}

/**
 * Several replicas over one Redis (see Broker for the guarantees):
 * - `<prefix>:leader`: the lease, SET NX PX, renewed every ttl/3 by its holder.
 * - `<prefix>:state`: the leader's full snapshot (JSON) with the id of the last entry it
 *   includes; rewritten before every directory entry and every stateEveryMs.
 * - `<prefix>:changes`: a capped stream of change batches, entry id `<last seq>-<n>` chosen by
 *   the leader, so a follower reads exactly the entries after the state it loaded.
 * - `<prefix>:hints`: pub/sub channel for /status/publish hints from followers to the leader.
 * - `<prefix>:handover`: `<epoch>:<seq>` written by a leader that stops cleanly with every change
 *   it numbered in Redis; the next leader continues that epoch only if it finds it (promote).
 * - `<prefix>:seen`: the highest seq any replica saw (see SEEN_MAX).
 * Three connections: commands, the blocking stream reader, and the hint subscriber.
 */
export class RedisBroker implements Broker {
  readonly kind = "redis";
  private leading = false;
  /** When our lease surely ends if we cannot renew it (a paused process must not keep polling). */
  private leaseValidUntil = 0;
  private readonly id = randomUUID();
  private readonly keys: {
    leader: string;
    state: string;
    changes: string;
    hints: string;
    settings: string;
    seen: string;
    handover: string;
  };
  /** No lease is taken before this: a lease granted by the Redis we lost may still be running. */
  private holdUntil = 0;
  private settingsListener: (s: SharedPluginSettings) => void = () => undefined;
  private lastSettings = "";
  private cmd!: Redis;
  private reader!: Redis;
  private sub!: Redis;
  private snapshot!: PresenceSnapshot;
  private onLeadership: (leader: boolean) => void = () => undefined;
  private hintListener: (userId: string) => void = () => undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private connected = false;
  /** When Redis last answered a lease round or a stream read. */
  private lastContact = 0;
  private following = false;
  /** Last stream id this replica has (applied, or published as leader). */
  private lastId = "0-0";
  private publishing: Promise<void> = Promise.resolve();
  private lastStateAt = 0;
  private needState = true;
  /**
   * Leader: `<epoch>:<seq>` of the last batch Redis accepted, and whether one of this term's
   * writes failed. Every position a leader hands out is in Redis only when both say so.
   */
  private published = "";
  private termBroken = false;
  private unsubscribe: (() => void) | undefined;
  private lastError: string | undefined;

  constructor(private readonly opts: RedisBrokerOptions) {
    const p = opts.prefix;
    this.keys = {
      leader: `${p}:leader`,
      state: `${p}:state`,
      changes: `${p}:changes`,
      hints: `${p}:hints`,
      settings: `${p}:settings`,
      seen: `${p}:seen`,
      handover: `${p}:handover`,
    };
  }

  get isLeader(): boolean {
    return this.leading && Date.now() < this.leaseValidUntil;
  }

  async start(snapshot: PresenceSnapshot, onLeadership: (leader: boolean) => void): Promise<void> {
    this.snapshot = snapshot;
    this.onLeadership = onLeadership;
    // A partition drops packets without closing the socket: without a timeout a command waits
    // for TCP to give up (minutes). Destroying the socket makes ioredis reconnect afresh.
    const socketTimeout = Math.max(1000, Math.floor(this.opts.leaderTtlMs / 3));
    const common = {
      lazyConnect: true,
      maxRetriesPerRequest: 1, // fail fast while Redis is away; the loops retry
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
      connectTimeout: Math.max(2000, socketTimeout),
    };
    const { sentinels, sentinelName } = this.opts;
    const conn = (name: string, timeout = socketTimeout) =>
      sentinels
        ? new Redis({
            ...common,
            socketTimeout: timeout,
            connectionName: `outlook-presence-${name}`,
            sentinels,
            name: sentinelName,
            // Sentinel's +switch-master moves us at once, also off an old master that is only cut off.
            failoverDetector: true,
            // At start no sentinel is a startup error, as an unreachable REDIS_URL is; later, retry.
            sentinelRetryStrategy: (n: number) => (this.connected ? Math.min(100 * n, 2000) : null),
          })
        : new Redis(this.opts.url!, {
            ...common,
            socketTimeout: timeout,
            connectionName: `outlook-presence-${name}`,
          });
    this.cmd = conn("cmd");
    this.reader = conn("reader", BLOCK_MS + socketTimeout); // XREAD waits BLOCK_MS for data
    this.sub = conn("sub");
    for (const c of [this.cmd, this.reader, this.sub]) c.on("error", (err: Error) => this.noteError(err));
    try {
      await Promise.all([this.cmd.connect(), this.reader.connect(), this.sub.connect()]);
      this.connected = true;
      this.lastContact = Date.now();
    } catch (err) {
      this.disconnect();
      const where = sentinels ? "through REDIS_SENTINELS" : "at REDIS_URL";
      throw new BrokerError(
        `cannot reach Redis ${where} (${this.lastError ?? (err as Error).message}): start Redis, or unset REDIS_URL to run one instance`,
      );
    }
    await this.sub.subscribe(this.keys.hints);
    this.sub.on("message", (_channel: string, userId: string) => {
      if (this.isLeader) this.hintListener(userId);
    });
    this.cmd.on("ready", () => {
      // Redis came back (maybe empty, it keeps nothing on disk here): republish our state.
      this.needState = true;
      // It may be another Redis (a promoted replica) that lacks the lease some replica holds
      // from the old one: wait until that lease has surely ended before taking one.
      this.holdUntil = Date.now() + this.opts.leaderTtlMs;
      this.cmd
        .eval(SEEN_MAX, 1, this.keys.seen, String(this.snapshot.lastSeq))
        .catch((err: Error) => this.noteError(err));
    });
    this.unsubscribe = snapshot.onChanges((changes, meta) => {
      if (this.leading) this.publish(changes, meta);
    });
    await this.leaseRound();
    this.scheduleLease();
    if (!this.isLeader) this.follow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.leaseTimer);
    clearTimeout(this.expiryTimer);
    this.unsubscribe?.();
    this.following = false;
    if (this.leading) {
      await this.publishing;
      // Every change we numbered is in Redis: the next leader may continue our epoch, and
      // positions our clients hold stay resumable on every replica.
      const here = this.position();
      if (!this.termBroken && this.published === here) {
        await this.cmd
          .eval(FENCED_SET, 2, this.keys.leader, this.keys.handover, this.id, here)
          .catch((err: Error) => this.noteError(err));
      }
      // Hand over now rather than after the TTL.
      await this.cmd.eval(RELEASE, 1, this.keys.leader, this.id).catch(() => undefined);
      this.leading = false;
    }
    this.disconnect();
  }

  problem(): string | undefined {
    const silent = Date.now() - this.lastContact;
    if (!this.connected || silent <= this.opts.leaderTtlMs) return undefined;
    return `Redis has not answered for ${Math.round(silent / 1000)} s: this replica's statuses may be stale`;
  }

  forwardHint(userId: string): boolean {
    if (this.cmd.status !== "ready") return false;
    this.cmd.publish(this.keys.hints, userId).catch(() => undefined);
    return true;
  }

  onHint(fn: (userId: string) => void): void {
    this.hintListener = fn;
  }

  sharePluginSettings(settings: SharedPluginSettings): void {
    const json = JSON.stringify(settings);
    this.lastSettings = json;
    this.publishing = this.publishing.then(() =>
      this.cmd
        .eval(FENCED_SET, 2, this.keys.leader, this.keys.settings, this.id, json)
        .then(() => undefined)
        .catch((err: Error) => this.noteError(err)),
    );
  }

  onPluginSettings(fn: (settings: SharedPluginSettings) => void): void {
    this.settingsListener = fn;
  }

  /** Followers: picks up settings the leader shared (checked every lease round, TTL/3). */
  private async readPluginSettings(): Promise<void> {
    const json = await this.cmd.get(this.keys.settings);
    if (!json || json === this.lastSettings) return;
    this.lastSettings = json;
    this.settingsListener(JSON.parse(json) as SharedPluginSettings);
  }

  private disconnect(): void {
    for (const c of [this.cmd, this.reader, this.sub]) c?.disconnect();
  }

  private noteError(err: Error): void {
    // ioredis puts the growing retry delay in Sentinel's message: one line per kind of problem.
    if (err.message.replace(/\d+/g, "#") === this.lastError?.replace(/\d+/g, "#")) return;
    this.lastError = err.message;
    this.opts.log.warn({ event: "redis_error", err: err.message }, "Redis connection problem; retrying");
  }

  private scheduleLease(): void {
    if (this.stopped) return;
    this.leaseTimer = setTimeout(async () => {
      await this.leaseRound();
      this.scheduleLease();
    }, this.opts.leaderTtlMs / 3);
  }

  /** Leader: renew or step down. Follower: take the lease if it is free. */
  private async leaseRound(): Promise<void> {
    const ttl = String(this.opts.leaderTtlMs);
    try {
      const asked = Date.now();
      if (this.leading) {
        const renewed = await this.cmd.eval(RENEW, 1, this.keys.leader, this.id, ttl);
        this.lastContact = Date.now();
        if (renewed !== 1 || !this.isLeader) return this.stepDown("lease lost");
        this.extendLease(asked);
        if (this.needState) this.writeState();
        return;
      }
      if (Date.now() < this.holdUntil) {
        await this.cmd.ping();
        this.lastContact = Date.now();
        return;
      }
      const took = await this.cmd.set(this.keys.leader, this.id, "PX", this.opts.leaderTtlMs, "NX");
      this.lastContact = Date.now();
      if (took !== "OK") await this.readPluginSettings();
      if (took === "OK") {
        this.extendLease(asked);
        await this.promote();
      }
    } catch (err) {
      this.noteError(err as Error);
      if (this.leading) this.stepDown("Redis unreachable");
    }
  }

  private async promote(): Promise<void> {
    this.following = false;
    // Take over from exactly where the previous leader stopped.
    await this.catchUp();
    const handover = await this.takeHandover();
    const renumbered = await this.numberPastSeen();
    if (!renumbered && handover !== this.position()) {
      // The previous leader did not hand over (it crashed, was cut off, or lost its lease): it
      // may have numbered changes after what Redis holds and given them to its clients, the
      // same numbers we would give other changes. A new epoch keeps those positions from ever
      // resuming here; their holders get a snapshot.
      this.snapshot.startEpoch();
      this.opts.log.info(
        { event: "leader_new_epoch", seq: this.snapshot.lastSeq, handover: handover ?? null },
        "no clean handover from the previous leader: its positions cannot be trusted, a new epoch",
      );
    }
    this.published = this.position();
    this.termBroken = false;
    this.leading = true;
    this.needState = true;
    this.writeState();
    this.opts.log.info(
      { event: "leader_acquired", seq: this.snapshot.lastSeq, epoch: this.snapshot.epoch },
      "this replica now polls Mattermost",
    );
    this.onLeadership(true);
  }

  /** The handover the last leader left (undefined when there is none or Redis did not answer). */
  private async takeHandover(): Promise<string | undefined> {
    try {
      return ((await this.cmd.eval(TAKE, 1, this.keys.handover)) as string | null) ?? undefined;
    } catch (err) {
      this.noteError(err as Error);
      return undefined;
    }
  }

  private position(): string {
    return `${this.snapshot.epoch}:${this.snapshot.lastSeq}`;
  }

  /**
   * A replica saw a higher seq than this Redis holds: the old leader's last batches were lost
   * in a failover. Numbering on from here would give other changes the numbers those replicas
   * (and their API v2 clients) already have, so jump past them: followers reload, clients resync.
   * True when it did (and started a new epoch).
   */
  private async numberPastSeen(): Promise<boolean> {
    try {
      const seen = Number((await this.cmd.get(this.keys.seen)) ?? 0);
      if (!(seen > this.snapshot.lastSeq)) return false;
      this.opts.log.warn(
        { event: "leader_renumbered", seq: this.snapshot.lastSeq, seen },
        "replicas saw changes this Redis lost (a failover): a new epoch, numbered past them",
      );
      // seen + 1, not seen: a follower holding the lost batch up to `seen` must find a gap at our
      // next batch and reload, rather than apply it on top of statuses we never had.
      this.snapshot.advanceSeq(seen + 1);
      // Clients hold positions of the lost batches that our numbers will now differ from.
      this.snapshot.startEpoch();
      this.lastId = `${seen + 1}-0`;
      return true;
    } catch (err) {
      this.noteError(err as Error);
      return false;
    }
  }

  /**
   * Our lease lasts until ttl after we asked for it. A renewal can hang far longer on a
   * partitioned link (ioredis holds the command for a reconnect): step down when the lease
   * ends rather than when Redis finally answers, so the role we report is the one we act on.
   */
  private extendLease(asked: number): void {
    this.leaseValidUntil = asked + this.opts.leaderTtlMs;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (Date.now() >= this.leaseValidUntil) this.stepDown("the lease ended before Redis renewed it");
    }, this.leaseValidUntil - Date.now());
  }

  private stepDown(reason: string): void {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.expiryTimer);
    // validUntil: when polling stopped (isLeader), which may be before this line is written.
    this.opts.log.warn(
      { event: "leader_lost", reason, validUntil: this.leaseValidUntil },
      "this replica stops polling and follows",
    );
    this.onLeadership(false);
    this.follow();
  }

  // ---- leader side ----

  private publish(changes: readonly Change[], meta: ChangeMeta): void {
    const dir = meta.directoryChanged || meta.resync;
    const seq = this.snapshot.lastSeq;
    // Ids grow with seq; a batch without changes (directory only) gets the next one of the same seq.
    const [lastMs, lastPart] = this.lastId.split("-").map(BigInt) as [bigint, bigint];
    const id = BigInt(seq) > lastMs ? `${seq}-0` : `${lastMs}-${lastPart + 1n}`;
    const epoch = this.snapshot.epoch;
    const entry: Entry = {
      dir,
      e: epoch,
      changes: changes.map((c) => [c.seq, c.userId, c.email, c.status, c.at]),
    };
    const stale = Date.now() - this.lastStateAt > (this.opts.stateEveryMs ?? 10_000);
    // A directory entry needs the state written first: followers load it when they read the entry.
    const state = dir || stale || this.needState ? this.snapshot.exportState() : undefined;
    if (changes.length === 0 && !dir) return;
    this.lastId = id;
    this.publishing = this.publishing.then(async () => {
      try {
        if (state) await this.fencedSetState({ ...state, id });
        await this.cmd.eval(
          FENCED_XADD,
          2,
          this.keys.leader,
          this.keys.changes,
          this.id,
          String(this.opts.maxEntries ?? 10_000),
          id,
          JSON.stringify(entry),
        );
        this.published = `${epoch}:${seq}`;
      } catch (err) {
        this.termBroken = true; // positions our clients got may be missing from Redis
        this.needState = true; // followers will see a gap and reload: make sure the state is current
        const msg = (err as Error).message;
        if (msg.includes("NOTLEADER")) this.stepDown("another replica holds the lease");
        else if (msg.includes("equal or smaller")) this.stepDown("the stream is ahead of this replica");
        else this.noteError(err as Error);
      }
    });
  }

  private writeState(): void {
    const state = { ...this.snapshot.exportState(), id: this.lastId };
    this.publishing = this.publishing.then(() =>
      this.fencedSetState(state).catch((err: Error) => this.noteError(err)),
    );
  }

  private async fencedSetState(state: StoredState): Promise<void> {
    if (!this.snapshot.ready) return; // nothing worth sharing yet
    await this.cmd.eval(FENCED_SET, 2, this.keys.leader, this.keys.state, this.id, JSON.stringify(state));
    this.lastStateAt = Date.now();
    this.needState = false;
  }

  // ---- follower side ----

  private follow(): void {
    if (this.following || this.stopped) return;
    this.following = true;
    void this.followLoop();
  }

  private async followLoop(): Promise<void> {
    let reload = true;
    let failures = 0;
    while (this.following && !this.stopped) {
      try {
        if (reload) reload = !(await this.reload());
        if (reload) {
          await sleep(Math.min(1000, 100 * ++failures)); // no state in Redis yet: wait for a leader
          continue;
        }
        const res = (await this.reader.xread(
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          this.keys.changes,
          this.lastId,
        )) as [string, [string, string[]][]][] | null;
        failures = 0;
        this.lastContact = Date.now();
        for (const [id, fields] of res?.[0]?.[1] ?? []) {
          if (!this.following) break;
          if (!this.applyEntry(id, fields)) {
            reload = true;
            break;
          }
        }
      } catch (err) {
        if (!this.following || this.stopped) break;
        this.noteError(err as Error);
        reload = true; // whatever we missed, the state has it
        await sleep(Math.min(2000, 100 * ++failures));
      }
    }
  }

  /** Applies one stream entry; false when the snapshot must be reloaded instead. */
  private applyEntry(id: string, fields: string[]): boolean {
    if (compareIds(id, this.lastId) <= 0) return true; // included in the state we loaded
    const entry = JSON.parse(fields[1] ?? "{}") as Entry;
    if (entry.dir) return false; // the leader rewrote the state just before this entry: load it
    // Another history (a new leader's epoch): our numbers may not be its numbers. The leader wrote
    // its state (with the epoch) before its first entry: load it.
    if (entry.e !== undefined && entry.e !== this.snapshot.epoch) return false;
    const changes: Change[] = entry.changes
      .map(([seq, userId, email, status, at]) => ({ seq, userId, email, status, at }))
      .filter((c) => c.seq > this.snapshot.lastSeq);
    if (!this.snapshot.applyReplicated(changes)) return false;
    this.lastId = id;
    return true;
  }

  /** Loads the leader's state and the entries after it; false when there is none yet. */
  private async reload(): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const raw = await this.cmd.get(this.keys.state);
      if (!raw) return false;
      const state = JSON.parse(raw) as StoredState;
      if (await this.continues(state)) {
        // Our history already holds the state's: read on from our own position, without a
        // difference (replacing ours with an older state would revert statuses, then replay them).
        const after = await this.cmd.xrange(this.keys.changes, `(${this.lastId}`, "+");
        if (after.every(([id, fields]) => this.applyEntry(id, fields))) return true;
      }
      const changes = this.snapshot.replaceState(state);
      this.lastId = state.id;
      this.opts.log.info(
        { event: "replica_reloaded", seq: state.seq, users: state.users.length, differences: changes.length },
        "loaded the leader's snapshot from Redis",
      );
      const rest = await this.cmd.xrange(this.keys.changes, `(${state.id}`, "+");
      if (rest.every(([id, fields]) => this.applyEntry(id, fields))) return true;
      // A directory entry newer than the state we read: the leader has rewritten it since.
    }
    return false;
  }

  /**
   * True when this replica's snapshot already includes `state`: the same epoch (where a position
   * names one change on every replica), at or past its seq, and our last entry is in the stream
   * (an entry a deposed leader numbered but never wrote is not: then it must take the state).
   */
  private async continues(state: StoredState): Promise<boolean> {
    if (!this.snapshot.ready || state.epoch === undefined || state.epoch !== this.snapshot.epoch)
      return false;
    if (state.seq > this.snapshot.lastSeq || compareIds(this.lastId, state.id) < 0) return false;
    if (this.lastId === state.id) return true;
    return (await this.cmd.xrange(this.keys.changes, this.lastId, this.lastId)).length === 1;
  }

  private async catchUp(): Promise<void> {
    try {
      if (!this.snapshot.ready) {
        await this.reload();
        return;
      }
      const rest = await this.cmd.xrange(this.keys.changes, `(${this.lastId}`, "+");
      if (!rest.every(([id, fields]) => this.applyEntry(id, fields))) await this.reload();
    } catch (err) {
      this.noteError(err as Error);
    }
  }
}

/** How long a follower's XREAD waits for new entries before asking again. */
const BLOCK_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}
