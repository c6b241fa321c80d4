import type { Change, PresenceSnapshot, PresenceUser } from "../../presence/snapshot.js";

/** At most this many emails plus user ids in one filter (query or subscription). */
export const MAX_FILTER_ITEMS = 50_000;

/**
 * Whom a request or subscription covers: users whose id is in `ids` or whose email is in
 * `emails`. Emails are compared lower-case (Mattermost stores them so).
 */
export interface UserFilter {
  readonly emails: ReadonlySet<string>;
  readonly ids: ReadonlySet<string>;
}

export class FilterError extends Error {}

/**
 * Builds a filter from lists, or undefined (everyone) when both are absent. Throws FilterError
 * (message says what to fix) for non-string items or too many.
 */
export function makeFilter(emails: unknown, ids: unknown): UserFilter | undefined {
  if (emails === undefined && ids === undefined) return undefined;
  const e = stringList(emails, "emails");
  const i = stringList(ids, "user_ids");
  if (e.length + i.length > MAX_FILTER_ITEMS) {
    throw new FilterError(`at most ${MAX_FILTER_ITEMS} emails and user_ids together`);
  }
  return {
    emails: new Set(e.map((x) => x.trim().toLowerCase()).filter((x) => x !== "")),
    ids: new Set(i.map((x) => x.trim()).filter((x) => x !== "")),
  };
}

/** `?emails=a,b&user_ids=c`: comma separated, each parameter may repeat. */
export function filterFromQuery(params: URLSearchParams): UserFilter | undefined {
  const list = (name: string): string[] | undefined =>
    params.has(name) ? params.getAll(name).flatMap((v) => v.split(",")) : undefined;
  return makeFilter(list("emails"), list("user_ids"));
}

function stringList(v: unknown, name: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new FilterError(`${name} must be an array of strings`);
  }
  return v as string[];
}

export function matches(filter: UserFilter, userId: string, email: string): boolean {
  return filter.ids.has(userId) || filter.emails.has(email.toLowerCase());
}

/** A short, stable key for a filter (ETags). */
export function filterKey(filter: UserFilter | undefined): string {
  if (!filter) return "all";
  return JSON.stringify([[...filter.emails].sort(), [...filter.ids].sort()]);
}

export function userJson(u: PresenceUser): string {
  return JSON.stringify({
    user_id: u.id,
    username: u.username,
    email: u.email,
    status: u.status,
    manual: u.manual ?? false,
    last_activity_at: u.lastActivityAt ?? 0,
  });
}

export function changeJson(c: Change): string {
  return JSON.stringify({ user_id: c.userId, email: c.email, status: c.status, at: c.at });
}

/**
 * Reads the snapshot as API v2 shows it: the users a provider sees (an email and a known status),
 * in Mattermost's order. The unfiltered list is serialized once per snapshot version and shared
 * by every request and every stream snapshot until the next change.
 */
export class PresenceView {
  private cache: { version: number; epoch: string; seq: number; users: string } | undefined;

  constructor(private readonly snapshot: PresenceSnapshot) {}

  get version(): number {
    return this.snapshot.version;
  }

  /** `{"epoch":…,"seq":…,"users":[…]}`, with `prefix` fields first (e.g. `"type":"snapshot",`). */
  body(filter: UserFilter | undefined, prefix = ""): { seq: number; json: string } {
    const { epoch, seq, users } = filter ? this.filtered(filter) : this.all();
    return { seq, json: `{${prefix}"epoch":"${epoch}","seq":${seq},"users":${users}}` };
  }

  private all(): { epoch: string; seq: number; users: string } {
    const version = this.snapshot.version;
    if (this.cache?.version !== version) {
      const users = `[${this.snapshot.visible().map(userJson).join(",")}]`;
      this.cache = { version, epoch: this.snapshot.epoch, seq: this.snapshot.lastSeq, users };
    }
    return this.cache;
  }

  private filtered(filter: UserFilter): { epoch: string; seq: number; users: string } {
    const parts: string[] = [];
    for (const u of this.snapshot.visible()) if (matches(filter, u.id, u.email)) parts.push(userJson(u));
    return { epoch: this.snapshot.epoch, seq: this.snapshot.lastSeq, users: `[${parts.join(",")}]` };
  }
}
