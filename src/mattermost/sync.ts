import type { Logger } from "../log.js";
import type { PresenceSnapshot } from "../presence/snapshot.js";
import { isKnownMattermostStatus } from "../presence/status.js";
import { NO_TELEMETRY, type Telemetry } from "../telemetry.js";
import { chunk, mapLimit } from "../util/batches.js";
import { SYSTEM_CLOCK, type Clock } from "../util/clock.js";
import { backoffDelay } from "./backoff.js";
import { MAX_IDS_PER_STATUS_REQUEST, type MattermostClient, type RawStatus } from "./client.js";
import { readDirectory } from "./directory.js";
import { UpstreamError, type UpstreamErrorKind } from "./errors.js";

export interface SyncOptions {
  client: Pick<MattermostClient, "getActiveUsers" | "getTotalUsers" | "getStatuses">;
  snapshot: PresenceSnapshot;
  log: Logger;
  pollIntervalMs: number;
  directoryRefreshMs: number;
  concurrency: number;
  backoffMaxMs: number;
  /** Upstream budget for hint re-reads (each reads up to 200 users). */
  hintRequestsPerSecond?: number;
  /** Asked before each cycle: false skips it (a replica whose lease may have lapsed must not poll). */
  mayPoll?: () => boolean;
  random?: () => number;
  telemetry?: Telemetry;
  /** Time and timers (tests drive them); the system's by default. */
  clock?: Clock;
}

/**
 * What PresenceSync did, told to `onEvent` listeners once it is done (the snapshot already holds
 * the result): tests and tools wait on these instead of on time.
 */
export type SyncEvent =
  /** A poll cycle ended: applied (`changes` Changes made) or failed (the snapshot untouched). */
  | { readonly kind: "cycle"; readonly ok: boolean; readonly changes: number }
  /** A cycle was due but `mayPoll` refused it; the next is scheduled a poll interval later. */
  | { readonly kind: "cycle-skipped" }
  /**
   * A hinted re-read of `users` ended: applied, failed, or skipped because Mattermost is failing
   * (the next successful cycle reads everyone anyway).
   */
  | {
      readonly kind: "hint";
      readonly outcome: "applied" | "failed" | "skipped";
      readonly users: number;
      readonly changes: number;
    };

/** Answers no healthy Mattermost gives: logged as errors, not as a passing outage. */
const HOSTILE_KINDS: ReadonlySet<UpstreamErrorKind> = new Set(["too-large", "endless-paging"]);

/** What `/readyz`, logs and (later) metrics report about the upstream. */
export interface UpstreamHealth {
  tokenRejected: boolean;
  consecutiveFailures: number;
  lastError: string | undefined;
  lastPollAt: number | undefined;
  lastPollMs: number | undefined;
  lastDirectoryAt: number | undefined;
  /** Active users the token sees without an email (left out of /status). */
  usersWithoutEmail: number;
  statusRequestsLastCycle: number;
}

/** Health before the first request to Mattermost. */
export function initialHealth(): UpstreamHealth {
  return {
    tokenRejected: false,
    consecutiveFailures: 0,
    lastError: undefined,
    lastPollAt: undefined,
    lastPollMs: undefined,
    lastDirectoryAt: undefined,
    usersWithoutEmail: 0,
    statusRequestsLastCycle: 0,
  };
}

/** How Mattermost answers a user without a status record: offline, not manual, never active. */
function answeredWithoutRecord(s: RawStatus): boolean {
  return s.status === "offline" && !s.manual && s.lastActivityAt === 0;
}

/**
 * Keeps the snapshot equal to Mattermost: a poll cycle every pollIntervalMs (statuses of every
 * user, 200 ids a request, `concurrency` in flight), preceded by a full directory read when one is
 * due or hinted. Failures never touch the snapshot (the last good one keeps serving): 401 marks
 * the token rejected, 429 waits Retry-After, anything else backs off exponentially with jitter.
 */
export class PresenceSync {
  readonly health: UpstreamHealth = initialHealth();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = true;
  private directoryHint: string | undefined;
  private readonly pendingUsers = new Set<string>();
  private userTimer: NodeJS.Timeout | undefined;
  private lastHintRequestAt = 0;
  private warnedUnknown = new Set<string>();
  private inFlight: Promise<void> | undefined;
  private lastFailure: UpstreamError | undefined;
  /**
   * Users Mattermost answered as having no status record (never logged in). Its status cache holds
   * only records, so every request naming one of them costs a database query; spread over every
   * request, they made each of them reach PostgreSQL. Asked for in requests of their own, the
   * other requests are answered from Mattermost's cache: at 10,000 users with one in eight
   * without a record, 2,043 → 363 queries a minute on Mattermost 11.4 (bench/upstream-real.ts,
   * docs/CONFORMANCE.md).
   */
  private noRecord = new Set<string>();
  /** Hostile-answer kinds already logged as errors in this failure series. */
  private readonly loggedHostile = new Set<UpstreamErrorKind>();
  private readonly clock: Clock;
  private readonly listeners = new Set<(e: SyncEvent) => void>();
  /** Changes the cycle in flight has made so far (for its event). */
  private cycleChanges = 0;

  constructor(private readonly opts: SyncOptions) {
    this.clock = opts.clock ?? SYSTEM_CLOCK;
  }

  /** Subscribes to what this sync did (see SyncEvent); returns the unsubscribe. */
  onEvent(fn: (e: SyncEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops scheduling; resolves when the cycle in flight (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.userTimer);
    this.userTimer = undefined;
    await this.inFlight;
  }

  /** Retries at once instead of waiting out the backoff (a new token was loaded). */
  retryNow(): void {
    if (this.stopped || this.health.consecutiveFailures === 0) return;
    this.schedule(0);
  }

  /** A Mattermost event said the directory changed: re-read it in the next cycle. */
  hintDirectory(reason: string): void {
    this.directoryHint ??= reason;
  }

  /**
   * Someone said this user's status changed. Never trusted: it only makes the gateway ask
   * Mattermost for that user soon (batched over 50 ms, de-duplicated, bounded).
   */
  hintUser(userId: string): boolean {
    if (!this.opts.snapshot.get(userId)) return false;
    if (this.pendingUsers.size >= MAX_IDS_PER_STATUS_REQUEST * 5) return false;
    this.pendingUsers.add(userId);
    this.scheduleHintFlush();
    return true;
  }

  /** 50 ms after the first hint (to batch), and never sooner than the hint budget allows. */
  private scheduleHintFlush(): void {
    if (this.userTimer || this.stopped) return;
    const gap = 1000 / (this.opts.hintRequestsPerSecond ?? 5);
    const wait = Math.max(50, this.lastHintRequestAt + gap - this.clock.now());
    this.userTimer = this.clock.setTimeout(() => void this.flushUserHints(), wait);
  }

  /** Runs one cycle now (tests and the first load use it); errors are reported, not thrown. */
  async runOnce(): Promise<boolean> {
    const ran = await this.runCycle();
    if (ran) this.emit(ran);
    return this.health.consecutiveFailures === 0;
  }

  /** The cycle's event, or undefined when one was already in flight (this call waited for it). */
  private async runCycle(): Promise<SyncEvent | undefined> {
    if (this.running) {
      await this.inFlight;
      return undefined;
    }
    this.running = true;
    this.cycleChanges = 0;
    const done = this.cycle().finally(() => (this.running = false));
    this.inFlight = done.then(
      () => undefined,
      () => undefined,
    );
    const started = performance.now();
    const telemetry = this.opts.telemetry ?? NO_TELEMETRY;
    try {
      await done;
      this.onSuccess();
      telemetry.pollCycle(true, performance.now() - started, this.health.statusRequestsLastCycle);
      return { kind: "cycle", ok: true, changes: this.cycleChanges };
    } catch (err) {
      this.onFailure(err);
      telemetry.pollCycle(false, performance.now() - started, this.health.statusRequestsLastCycle);
      return { kind: "cycle", ok: false, changes: 0 };
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => void this.scheduledCycle(), delayMs);
  }

  private async scheduledCycle(): Promise<void> {
    if (this.opts.mayPoll && !this.opts.mayPoll()) {
      this.schedule(this.opts.pollIntervalMs);
      this.emit({ kind: "cycle-skipped" });
      return;
    }
    const started = this.clock.now();
    const ran = await this.runCycle();
    const ok = this.health.consecutiveFailures === 0;
    if (!this.stopped) {
      this.schedule(
        ok ? Math.max(0, this.opts.pollIntervalMs - (this.clock.now() - started)) : this.retryDelay(),
      );
    }
    // Told once the next cycle is scheduled: a listener that moves the clock on finds it there.
    if (ran) this.emit(ran);
  }

  private async cycle(): Promise<void> {
    const { snapshot, directoryRefreshMs } = this.opts;
    const started = performance.now();
    const dirAge = this.clock.now() - (this.health.lastDirectoryAt ?? 0);
    if (this.directoryHint !== undefined || dirAge >= directoryRefreshMs || !snapshot.ready) {
      const reason = this.directoryHint ?? (this.health.lastDirectoryAt ? "periodic" : "startup");
      this.directoryHint = undefined;
      try {
        await this.refreshDirectory(reason);
      } catch (err) {
        if (reason !== "periodic" && reason !== "startup") this.directoryHint = reason; // try again next cycle
        throw err;
      }
    }
    const ids = snapshot.userIds();
    const statuses = await this.readStatuses(ids);
    this.cycleChanges += snapshot.applyStatuses(statuses, true).length;
    this.health.lastPollAt = this.clock.now();
    this.health.lastPollMs = performance.now() - started;
  }

  private async refreshDirectory(reason: string): Promise<void> {
    const started = performance.now();
    const { users } = await readDirectory(this.opts.client);
    const changes = this.opts.snapshot.applyDirectory(users);
    this.cycleChanges += changes.length;
    this.health.lastDirectoryAt = this.clock.now();
    const withoutEmail = users.filter((u) => u.email === "").length;
    if (withoutEmail !== this.health.usersWithoutEmail || reason === "startup") {
      // "None visible" is all, or all but one: in lists Mattermost hides the token's own email
      // too (the simulator did not, before the conformance suite).
      if (withoutEmail > 0 && withoutEmail >= users.length - 1) {
        this.opts.log.error(
          { event: "emails_hidden", users: users.length },
          "the Mattermost token sees no email addresses, so Outlook can match nobody: use a system admin's token, or turn on ShowEmailAddress",
        );
      } else if (withoutEmail > 0) {
        this.opts.log.warn(
          { event: "users_without_email", count: withoutEmail, users: users.length },
          "some active users have no email visible to the token; they are left out",
        );
      }
    }
    this.health.usersWithoutEmail = withoutEmail;
    (this.opts.telemetry ?? NO_TELEMETRY).directoryRefresh(performance.now() - started, users.length);
    this.opts.log.info(
      {
        event: "directory_refreshed",
        reason,
        users: users.length,
        changes: changes.length,
        durationMs: Math.round(performance.now() - started),
      },
      "directory refreshed",
    );
  }

  /**
   * Statuses of `ids`, 200 a request, `concurrency` requests in flight; the users last answered
   * without a status record are asked for in requests of their own (see `noRecord`).
   */
  private async readStatuses(ids: readonly string[]): Promise<Map<string, RawStatus>> {
    const out = new Map<string, RawStatus>();
    const recorded = ids.filter((id) => !this.noRecord.has(id));
    const chunks = chunk(
      recorded.length === ids.length ? ids : [...recorded, ...ids.filter((id) => this.noRecord.has(id))],
      MAX_IDS_PER_STATUS_REQUEST,
    );
    this.health.statusRequestsLastCycle = chunks.length;
    await mapLimit(chunks, this.opts.concurrency, async (part) => {
      for (const s of await this.opts.client.getStatuses(part)) {
        if (!isKnownMattermostStatus(s.status) && !this.warnedUnknown.has(s.status)) {
          this.warnedUnknown.add(s.status);
          this.opts.log.warn(
            { event: "unknown_status", status: s.status.slice(0, 40) },
            "Mattermost sent a status this gateway does not know; showing it as away",
          );
        }
        out.set(s.userId, s);
      }
    });
    this.noRecord = new Set([...out.values()].filter(answeredWithoutRecord).map((s) => s.userId));
    return out;
  }

  private async flushUserHints(): Promise<void> {
    this.userTimer = undefined;
    const ids = [...this.pendingUsers].slice(0, MAX_IDS_PER_STATUS_REQUEST);
    for (const id of ids) this.pendingUsers.delete(id);
    // While Mattermost fails (a 429's Retry-After, an outage, a 401) hints would only add requests
    // the backoff is holding back; the next successful cycle reads every user anyway.
    if (ids.length === 0) return;
    if (this.health.tokenRejected || this.health.consecutiveFailures > 0) {
      this.emit({ kind: "hint", outcome: "skipped", users: ids.length, changes: 0 });
      return;
    }
    this.lastHintRequestAt = this.clock.now();
    let event: SyncEvent;
    try {
      const statuses = await this.opts.client.getStatuses(ids);
      const changes = this.opts.snapshot.applyStatuses(new Map(statuses.map((s) => [s.userId, s])), false);
      event = { kind: "hint", outcome: "applied", users: ids.length, changes: changes.length };
    } catch (err) {
      this.opts.log.debug(
        { event: "hint_read_failed", err: (err as Error).message },
        "re-read after a hint failed",
      );
      event = { kind: "hint", outcome: "failed", users: ids.length, changes: 0 };
    }
    if (this.pendingUsers.size > 0) this.scheduleHintFlush();
    this.emit(event);
  }

  private onSuccess(): void {
    if (this.health.consecutiveFailures > 0 || this.health.tokenRejected) {
      this.opts.log.info(
        { event: "upstream_recovered", failures: this.health.consecutiveFailures },
        "Mattermost answers again",
      );
    }
    this.health.consecutiveFailures = 0;
    this.health.tokenRejected = false;
    this.health.lastError = undefined;
    this.loggedHostile.clear();
  }

  private onFailure(err: unknown): void {
    const e = err instanceof UpstreamError ? err : new UpstreamError("network", String(err), "internal");
    this.health.consecutiveFailures++;
    this.health.lastError = e.message;
    if (e.kind === "unauthorized") {
      if (!this.health.tokenRejected) {
        this.opts.log.error(
          { event: "token_rejected", endpoint: e.endpoint, status: 401 },
          "Mattermost rejected MATTERMOST_TOKEN (401): create a new token for the bot and restart or send SIGHUP; not ready until then",
        );
      }
      this.health.tokenRejected = true;
      return;
    }
    const fields = {
      event: "upstream_failed",
      kind: e.kind,
      endpoint: e.endpoint,
      status: e.status,
      failures: this.health.consecutiveFailures,
    };
    if (HOSTILE_KINDS.has(e.kind) && !this.loggedHostile.has(e.kind)) {
      // Not an outage that heals by itself: Mattermost, or a proxy in front of it, answers what the
      // API cannot. Loud once per series, whatever failed before it; retried with the backoff.
      this.loggedHostile.add(e.kind);
      this.opts.log.error(
        fields,
        `Mattermost's answer was refused: ${e.message}; serving the last snapshot, check Mattermost and any proxy in front of it`,
      );
    } else if (this.health.consecutiveFailures === 1)
      this.opts.log.warn(fields, `Mattermost request failed: ${e.message}; serving the last snapshot`);
    else this.opts.log.debug(fields, e.message);
    this.lastFailure = e;
  }

  private emit(e: SyncEvent): void {
    for (const fn of this.listeners) fn(e);
  }

  private retryDelay(): number {
    const e = this.lastFailure;
    const { pollIntervalMs, backoffMaxMs } = this.opts;
    const random = this.opts.random ?? Math.random;
    if (this.health.tokenRejected) return backoffMaxMs;
    if (e?.kind === "rate-limited" && e.retryAfterMs !== undefined) {
      return e.retryAfterMs + Math.round(random() * 250);
    }
    return backoffDelay(this.health.consecutiveFailures, pollIntervalMs, backoffMaxMs, random);
  }
}
