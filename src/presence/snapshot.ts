import { newEpoch } from "./position.js";
import { toProviderStatus, type ProviderStatus } from "./status.js";

/**
 * One active user as a directory read lists them: what the snapshot takes from its source (the
 * Mattermost adapter maps its users to this), so the core depends on no adapter's types.
 */
export interface DirectoryEntry {
  readonly id: string;
  readonly username: string;
  /** "" when the source may not show the email: the user is then left out of what providers see. */
  readonly email: string;
  readonly isBot: boolean;
}

/** One user as the gateway knows them. */
export interface PresenceUser extends DirectoryEntry {
  /** undefined until Mattermost has answered for this user once. */
  status: ProviderStatus | undefined;
  /** Set by the user (dnd, ooo) rather than by activity; unset until known. For API v2 only. */
  manual?: boolean;
  /** Mattermost's last_activity_at (ms since epoch); unset until known. For API v2 only. */
  lastActivityAt?: number;
}

/** A status read from Mattermost with the details API v2 shows (they never make a Change). */
export interface StatusDetail {
  readonly status: string;
  readonly manual?: boolean;
  readonly lastActivityAt?: number;
}

/** A status a provider must learn, numbered in the order it happened. */
export interface Change {
  readonly seq: number;
  readonly userId: string;
  readonly email: string;
  readonly status: ProviderStatus;
  /** ms since epoch when the gateway saw it. */
  readonly at: number;
}

/** What else a listener may need to know about a batch. */
export interface ChangeMeta {
  /** The directory changed (users, emails or order), even if no status did. */
  readonly directoryChanged: boolean;
  /** The batch is a difference computed after a gap (a replica reloaded), not a replay. */
  readonly resync: boolean;
}

/** What changed in the visible list after a reader's cursor (see `visibleChangesSince`). */
export interface VisibleChanges {
  /** Where this reader now is: pass it to the next call. */
  readonly cursor: number;
  /** The list's order or membership moved, or the reader fell too far behind: any index may differ. */
  readonly all: boolean;
  /** Visible indices whose status changed (an index may repeat); empty when `all`. */
  readonly indices: readonly number[];
}

/** The cursor of a reader that has seen nothing yet. */
export const NO_CURSOR = -1;

export type ChangeListener = (changes: readonly Change[], meta: ChangeMeta) => void;

/** The whole snapshot as plain data, for replicas (see src/broker). */
export interface SnapshotState {
  readonly seq: number;
  /** The numbering history `seq` belongs to (absent in states written before epochs existed). */
  readonly epoch?: string;
  readonly users: readonly {
    id: string;
    username: string;
    email: string;
    isBot: boolean;
    status: ProviderStatus | null;
    manual?: boolean;
    lastActivityAt?: number;
  }[];
}

const PLAIN: ChangeMeta = { directoryChanged: false, resync: false };

/**
 * The presence snapshot: active users in Mattermost's order with their email and status.
 * It owns this state; everything else reads it or subscribes to its change batches. Only
 * statuses that came from Mattermost enter it (applyStatuses), and every difference between
 * two snapshots becomes exactly one Change (or two for an email change: offline for the old
 * address, the current status for the new one).
 */
export class PresenceSnapshot {
  private users: PresenceUser[] = [];
  private byId = new Map<string, PresenceUser>();
  /** Users a provider sees: with an email and a known status, in order. Rebuilt when membership changes. */
  private visibleList: PresenceUser[] = [];
  private visibleIndex = new Map<string, number>();
  private listeners = new Set<ChangeListener>();
  private seq = 0;
  /** A new history of numbering per process, adopted from the leader by replicas (see position.ts). */
  private epochId = newEpoch();
  private directoryLoaded = false;
  private statusesLoaded = false;
  /** Bumped whenever the visible list's membership or order changes (every page may move). */
  private layoutVersion = 0;
  /**
   * Visible indices whose status changed, oldest first. Any number of readers (the page cache of
   * each worker, an admin view) follow it, each with a cursor of its own: reading takes nothing
   * away from another reader. `journalStart` is the cursor of its first entry.
   */
  private visibleJournal: number[] = [];
  private journalStart = 0;
  /** Bumped when the layout or a detail changes (see `version`). */
  private stateVersion = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** True once a full directory and a status for every user have been loaded. */
  get ready(): boolean {
    return this.directoryLoaded && this.statusesLoaded;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The history `lastSeq` is numbered in: positions of another epoch are never resumed. */
  get epoch(): string {
    return this.epochId;
  }

  /**
   * Starts a new history: the numbering from here on cannot be told apart from numbers given out
   * elsewhere (a leader that numbers past batches a failover lost), so no older position resumes.
   */
  startEpoch(): void {
    this.epochId = newEpoch();
    this.stateVersion++; // cached bodies carry the epoch
  }

  get size(): number {
    return this.users.length;
  }

  /**
   * Grows whenever anything visible changes, including `manual` and `lastActivityAt` (which
   * never make a Change): readers cache what they build from the snapshot under it.
   */
  get version(): number {
    // seq counts status changes however they arrive; stateVersion the rest. seq can go back
    // (replaceState adopts a lower numbering), so replaceState raises stateVersion past that.
    return this.stateVersion + this.seq;
  }

  /** Changes whenever the visible list's order or membership does (not on status changes alone). */
  get layout(): number {
    return this.layoutVersion;
  }

  /** Ids of every active user, in order: what the poller asks statuses for. */
  userIds(): string[] {
    return this.users.map((u) => u.id);
  }

  get(id: string): PresenceUser | undefined {
    return this.byId.get(id);
  }

  /** The users providers see, in order. Read-only view; do not keep across changes. */
  visible(): readonly PresenceUser[] {
    return this.visibleList;
  }

  countsByStatus(): Record<ProviderStatus, number> {
    const c = { online: 0, away: 0, dnd: 0, offline: 0 };
    for (const u of this.visibleList) c[u.status!]++;
    return c;
  }

  /**
   * Subscribes to change batches. The first load is not a change: batches are emitted only once
   * the snapshot is ready (nobody is connected before that, and replaying a whole company to
   * every socket after a restart would swamp them).
   */
  onChanges(fn: ChangeListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Replaces the directory with a fresh full read. Users who left get `offline`; new users are
   * held back until their first status arrives; an email change moves the user.
   */
  applyDirectory(next: readonly DirectoryEntry[]): Change[] {
    // The usual periodic refresh finds nothing new: check that in one cheap pass first.
    if (this.directoryLoaded && this.sameDirectory(next)) return [];
    const wasReady = this.ready;
    const changes: Change[] = [];
    const at = this.now();
    const nextIds = new Set<string>();
    let layoutChanged = next.length !== this.users.length;
    const nextUsers: PresenceUser[] = [];
    for (let i = 0; i < next.length; i++) {
      const d = next[i]!;
      if (nextIds.has(d.id)) continue; // a user moved between pages while we read: keep the first
      nextIds.add(d.id);
      const old = this.byId.get(d.id);
      if (!layoutChanged && this.users[i]?.id !== d.id) layoutChanged = true;
      if (old && old.email === d.email && old.username === d.username) {
        nextUsers.push(old);
        continue;
      }
      layoutChanged = true;
      const user: PresenceUser = {
        id: d.id,
        username: d.username,
        email: d.email,
        isBot: d.isBot,
        status: old?.status,
        manual: old?.manual,
        lastActivityAt: old?.lastActivityAt,
      };
      if (old && old.email !== d.email) {
        if (old.email && old.status !== undefined)
          changes.push(this.change(old.id, old.email, "offline", at));
        if (d.email && old.status !== undefined) changes.push(this.change(d.id, d.email, old.status, at));
      }
      nextUsers.push(user);
    }
    for (const old of this.users) {
      if (!nextIds.has(old.id) && old.email && old.status !== undefined) {
        changes.push(this.change(old.id, old.email, "offline", at));
      }
    }
    this.directoryLoaded = true;
    if (layoutChanged) {
      this.users = nextUsers;
      this.byId = new Map(nextUsers.map((u) => [u.id, u]));
      this.rebuildVisible();
    }
    if (wasReady && (changes.length > 0 || layoutChanged)) {
      this.emit(changes, { directoryChanged: layoutChanged, resync: false });
    }
    return changes;
  }

  private sameDirectory(next: readonly DirectoryEntry[]): boolean {
    if (next.length !== this.users.length) return false;
    for (let i = 0; i < next.length; i++) {
      const d = next[i]!;
      const u = this.users[i]!;
      if (u.id !== d.id || u.email !== d.email || u.username !== d.username) return false;
    }
    return true;
  }

  /**
   * Applies statuses read from Mattermost. Users not in the directory are ignored (a status can
   * only be published for a known active user); users missing from the answer keep theirs.
   * `complete` marks a read of every user, which makes the snapshot ready. A detail (`manual`,
   * `lastActivityAt`) that changes alone is stored but is not a Change: providers never see it.
   */
  applyStatuses(statuses: ReadonlyMap<string, string | StatusDetail>, complete: boolean): Change[] {
    const wasReady = this.ready;
    const changes: Change[] = [];
    const at = this.now();
    let membershipChanged = false;
    for (const [id, raw] of statuses) {
      const user = this.byId.get(id);
      if (!user) continue;
      let status: ProviderStatus;
      if (typeof raw === "string") {
        status = toProviderStatus(raw);
      } else {
        status = toProviderStatus(raw.status);
        const manual = raw.manual ?? user.manual;
        const lastActivityAt = raw.lastActivityAt ?? user.lastActivityAt;
        if (manual !== user.manual || lastActivityAt !== user.lastActivityAt) {
          user.manual = manual;
          user.lastActivityAt = lastActivityAt;
          this.stateVersion++;
        }
      }
      if (user.status === status) continue;
      const wasVisible = user.status !== undefined && user.email !== "";
      user.status = status;
      if (!user.email) continue;
      if (!wasVisible) membershipChanged = true;
      else this.noteVisible(this.visibleIndex.get(id)!);
      changes.push(this.change(id, user.email, status, at));
    }
    if (complete) this.statusesLoaded = true;
    if (membershipChanged) this.rebuildVisible();
    if (wasReady && changes.length > 0) this.emit(changes, PLAIN);
    return changes;
  }

  /** Everything a replica needs to rebuild this snapshot. */
  exportState(): SnapshotState {
    return {
      seq: this.seq,
      epoch: this.epochId,
      users: this.users.map((u) => ({
        id: u.id,
        username: u.username,
        email: u.email,
        isBot: u.isBot,
        status: u.status ?? null,
        manual: u.manual,
        lastActivityAt: u.lastActivityAt,
      })),
    };
  }

  /**
   * The next change is numbered after `seq` (when it is ahead): numbers up to it were given out
   * elsewhere. Readers see a gap, as after a lost batch, and resync.
   */
  advanceSeq(seq: number): void {
    if (seq > this.seq) this.seq = seq;
  }

  /**
   * Replays a batch another replica produced, keeping its sequence numbers. False (and nothing
   * applied) when this snapshot is not exactly where the batch starts: the caller must reload.
   */
  applyReplicated(changes: readonly Change[]): boolean {
    if (changes.length === 0) return true;
    if (!this.ready || changes[0]!.seq !== this.seq + 1) return false;
    for (const c of changes) {
      const u = this.byId.get(c.userId);
      if (!u || u.email !== c.email) return false;
    }
    let membershipChanged = false;
    for (const c of changes) {
      const u = this.byId.get(c.userId)!;
      if (u.status === undefined) membershipChanged = true;
      else this.noteVisible(this.visibleIndex.get(u.id)!);
      u.status = c.status;
      this.seq = c.seq;
    }
    if (membershipChanged) this.rebuildVisible();
    this.emit(changes, PLAIN);
    return true;
  }

  /**
   * Replaces everything with another replica's state. Providers get the difference (offline for
   * addresses that left, the status of every address that changed or arrived).
   *
   * The difference is this replica's own invention, not changes the leader numbered: it is
   * emitted in a fork, a fresh epoch of its own numbered 1..n, so that no (epoch, seq) it hands
   * out names a change other than the one the leader gave that position. During the emit
   * `epoch` is the fork's (listeners label the batch with it); right after, the snapshot adopts
   * the state's position, which names exactly the state the difference ends in.
   */
  replaceState(state: SnapshotState): Change[] {
    const wasReady = this.ready;
    const before = new Map(this.visibleList.map((u) => [u.email, { id: u.id, status: u.status! }]));
    this.users = state.users.map((u) => ({ ...u, status: u.status ?? undefined }));
    this.byId = new Map(this.users.map((u) => [u.id, u]));
    this.rebuildVisible();
    this.directoryLoaded = true;
    this.statusesLoaded = true;
    const at = this.now();
    const diff: { userId: string; email: string; status: ProviderStatus }[] = [];
    const after = new Set<string>();
    for (const u of this.visibleList) {
      after.add(u.email);
      if (before.get(u.email)?.status !== u.status)
        diff.push({ userId: u.id, email: u.email, status: u.status! });
    }
    for (const [email, old] of before) {
      if (!after.has(email)) diff.push({ userId: old.id, email, status: "offline" });
    }
    let next = 1;
    const changes: Change[] = diff.map((d) => ({
      seq: next++,
      userId: d.userId,
      email: d.email,
      status: d.status,
      at,
    }));
    // Adopt the state's numbering exactly: the leader's next batch follows it. Our own seq may
    // have been ahead (a deposed leader numbers changes it could not publish).
    // The version must still grow though seq may drop: readers cache under it.
    this.stateVersion += Math.max(0, this.seq - state.seq) + 1; // + 1: cached bodies carry the epoch
    this.seq = state.seq;
    // A state without an epoch (written by an older leader) proves no continuity: a new one.
    const epoch = state.epoch ?? newEpoch();
    if (!wasReady || changes.length === 0) {
      this.epochId = epoch;
      return wasReady ? changes : [];
    }
    this.epochId = newEpoch(); // the fork
    try {
      this.emit(changes, { directoryChanged: true, resync: true });
    } finally {
      this.epochId = epoch;
    }
    return changes;
  }

  /**
   * The visible indices whose status changed after `cursor` (a reader's own, from its previous
   * call; NO_CURSOR at first), or `all` when the list moved since. Reading changes nothing, so
   * any number of readers can follow the snapshot independently.
   */
  visibleChangesSince(cursor: number): VisibleChanges {
    const end = this.journalStart + this.visibleJournal.length;
    if (cursor < this.journalStart || cursor > end) return { cursor: end, all: true, indices: [] };
    return { cursor: end, all: false, indices: this.visibleJournal.slice(cursor - this.journalStart) };
  }

  private change(userId: string, email: string, status: ProviderStatus, at: number): Change {
    return { seq: ++this.seq, userId, email, status, at };
  }

  private rebuildVisible(): void {
    this.visibleList = this.users.filter((u) => u.email !== "" && u.status !== undefined);
    this.visibleIndex = new Map(this.visibleList.map((u, i) => [u.id, i]));
    this.layoutVersion++;
    this.stateVersion++;
    // Every reader's cursor is now before the journal: each rebuilds everything once.
    this.journalStart += this.visibleJournal.length + 1;
    this.visibleJournal = [];
  }

  private noteVisible(index: number): void {
    // Bounded: a reader more than a list's worth of changes behind rebuilds everything anyway.
    if (this.visibleJournal.length >= Math.max(1024, this.visibleList.length)) {
      this.journalStart += this.visibleJournal.length;
      this.visibleJournal = [];
    }
    this.visibleJournal.push(index);
  }

  private emit(changes: readonly Change[], meta: ChangeMeta): void {
    for (const fn of this.listeners) fn(changes, meta);
  }
}
