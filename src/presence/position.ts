import { randomBytes } from "node:crypto";
import type { Change } from "./snapshot.js";
import type { ChangeLog } from "./change-log.js";

/**
 * A stream position: a sequence number within an epoch. An epoch is one history of numbering;
 * a new one starts whenever the numbering cannot continue the old one (a fresh process with the
 * memory broker; a Redis leader that took over without a clean handover, or had to number past
 * lost batches), so a number from another history is never mistaken for one of ours. A replica's
 * own resync difference gets a fork, an epoch of its own (PresenceSnapshot.replaceState): every
 * (epoch, seq) names one change on every replica, which is what makes a resume anywhere exact.
 */
export interface Position {
  /** undefined: a bare number from a client that predates epochs (never resumed, see decideResume). */
  readonly epoch: string | undefined;
  readonly seq: number;
}

/** Random, URL-safe, without ':' (the separator in `since=<epoch>:<seq>`). */
export function newEpoch(): string {
  return randomBytes(9).toString("base64url");
}

const SINCE_RE = /^(?:([A-Za-z0-9_-]{1,64}):)?(\d{1,15})$/;

/** `since` as a client sends it: `<epoch>:<seq>`, or a bare `<seq>`; undefined when malformed. */
export function parsePosition(raw: string): Position | undefined {
  const m = SINCE_RE.exec(raw);
  if (!m) return undefined;
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { epoch: m[1], seq };
}

export function formatPosition(p: { epoch: string; seq: number }): string {
  return `${p.epoch}:${p.seq}`;
}

/**
 * What a client resuming from `since` must be sent: exactly the changes after it ([] when up to
 * date), or undefined for a snapshot. Only a position of the current epoch resumes: a bare number
 * cannot be told apart from the same number of an earlier history, and a snapshot is always
 * correct while a wrong replay is not. `log` is used only when it holds the current epoch.
 */
export function decideResume(
  since: Position | undefined,
  current: { epoch: string; seq: number },
  log: { epoch: string | undefined; changes: ChangeLog },
): Change[] | undefined {
  if (since === undefined || since.epoch !== current.epoch) return undefined;
  if (since.seq === current.seq) return [];
  if (log.epoch !== current.epoch || log.changes.lastSeq !== current.seq) return undefined;
  return log.changes.since(since.seq);
}
