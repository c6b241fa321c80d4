import type { ServerMessage } from "../../src/http/v2/protocol.js";

/** One change as an unfiltered API v2 client saw it, with the position the stream gave it. */
export interface Positioned {
  epoch: string;
  seq: number;
  email: string;
  status: string;
}

export interface StreamRecord {
  /** Where the client started: the `since` it sent (undefined: none). */
  start?: { epoch: string; seq: number };
  messages: readonly ServerMessage[];
}

/**
 * The changes of an unfiltered client, each with its own (epoch, seq): a `changes` message's
 * `seq` is its last change's, and the changes before it are numbered one less each.
 */
export function positioned(messages: readonly ServerMessage[]): Positioned[] {
  const out: Positioned[] = [];
  for (const m of messages) {
    if (m.type !== "changes") continue;
    const first = m.seq - m.changes.length + 1;
    m.changes.forEach((c, i) =>
      out.push({ epoch: m.epoch, seq: first + i, email: c.email, status: c.status }),
    );
  }
  return out;
}

/**
 * Positions that name two different changes, across every client given (of any replica): a
 * resume from such a position on one replica would replay changes of another history.
 */
export function positionConflicts(records: readonly StreamRecord[]): string[] {
  const named = new Map<string, string>();
  const conflicts: string[] = [];
  for (const r of records) {
    for (const p of positioned(r.messages)) {
      const key = `${p.epoch}:${p.seq}`;
      const what = `${p.email}=${p.status}`;
      const had = named.get(key);
      if (had === undefined) named.set(key, what);
      else if (had !== what) conflicts.push(`${key} is ${had} and ${what}`);
    }
  }
  return conflicts;
}

/**
 * Order within one client's stream: within an epoch, seqs strictly increase over the whole
 * connection, and a `changes` message follows the previous position of the same epoch exactly
 * (no gap, no repeat). A gap is allowed only where the stream said so: a `snapshot`, or a message
 * of another epoch (a resync or a new leader's history) in between.
 */
export function orderViolations(record: StreamRecord): string[] {
  const out: string[] = [];
  const highest = new Map<string, number>();
  let cur = record.start;
  if (cur) highest.set(cur.epoch, cur.seq);
  for (const m of record.messages) {
    if (m.type === "snapshot") {
      cur = { epoch: m.epoch, seq: m.seq };
      highest.set(m.epoch, Math.max(highest.get(m.epoch) ?? m.seq, m.seq));
      continue;
    }
    if (m.type === "ready") {
      if (cur && cur.epoch === m.epoch && cur.seq !== m.seq)
        out.push(`ready at ${m.epoch}:${m.seq} after ${cur.epoch}:${cur.seq}`);
      if (!cur && m.resumed) out.push("resumed without a position to resume from");
      cur = { epoch: m.epoch, seq: m.seq };
      continue;
    }
    if (m.type !== "changes") continue;
    const first = m.seq - m.changes.length + 1;
    const top = highest.get(m.epoch);
    if (top !== undefined && first <= top)
      out.push(`${m.epoch}:${first}..${m.seq} after ${m.epoch}:${top} was already seen`);
    if (cur && cur.epoch === m.epoch && first !== cur.seq + 1)
      out.push(`${m.epoch}:${first} follows ${cur.epoch}:${cur.seq} with no resync`);
    cur = { epoch: m.epoch, seq: m.seq };
    highest.set(m.epoch, m.seq);
  }
  return out;
}

/**
 * The view a client builds (email → status) from a starting view, its snapshots and its changes;
 * a snapshot replaces the view (everyone not in it is offline to the client).
 */
export function finalView(
  messages: readonly ServerMessage[],
  start: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  let view = new Map(start);
  for (const m of messages) {
    if (m.type === "snapshot") view = new Map(m.users.map((u) => [u.email, u.status]));
    if (m.type === "changes") for (const c of m.changes) view.set(c.email, c.status);
  }
  return view;
}

/** Differences between a client's view and the truth (users absent from the view count as offline). */
export function viewDiff(view: ReadonlyMap<string, string>, want: ReadonlyMap<string, string>): string[] {
  const diff: string[] = [];
  for (const [email, status] of want) {
    if ((view.get(email) ?? "offline") !== status)
      diff.push(`${email}: has ${view.get(email)}, Mattermost ${status}`);
  }
  for (const [email, status] of view) {
    if (!want.has(email) && status !== "offline") diff.push(`${email}: left but still ${status}`);
  }
  return diff;
}

/** The last position a client was given (what it would resume from). */
export function lastPosition(messages: readonly ServerMessage[]): { epoch: string; seq: number } | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.type === "changes" || m.type === "snapshot" || m.type === "ready")
      return { epoch: m.epoch, seq: m.seq };
  }
  return undefined;
}
