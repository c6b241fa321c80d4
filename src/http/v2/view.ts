import type { Change, PresenceSnapshot, PresenceUser } from "../../presence/snapshot.js";
import { PresenceQuery, describeIssue, type ChangeJson, type PresenceUserJson } from "./protocol.js";

/**
 * Whom a request or subscription covers: users whose id is in `ids` or whose email is in
 * `emails`. Emails are compared lower-case (Mattermost stores them so).
 */
export interface UserFilter {
  readonly emails: ReadonlySet<string>;
  readonly ids: ReadonlySet<string>;
}

/** A filter the contract refuses; the message says what to fix. */
export class FilterError extends Error {}

/**
 * Builds a filter from lists the contract accepted (PresenceQuery and the stream messages check
 * them), or undefined (everyone) when both are absent.
 */
export function makeFilter(
  emails: readonly string[] | undefined,
  ids: readonly string[] | undefined,
): UserFilter | undefined {
  if (emails === undefined && ids === undefined) return undefined;
  return {
    emails: new Set((emails ?? []).map((x) => x.trim().toLowerCase()).filter((x) => x !== "")),
    ids: new Set((ids ?? []).map((x) => x.trim()).filter((x) => x !== "")),
  };
}

/**
 * `?emails=a,b&user_ids=c`: comma separated, each parameter may repeat. Judged by the same
 * schema as a query body (PresenceQuery); throws FilterError.
 */
export function filterFromQuery(params: URLSearchParams): UserFilter | undefined {
  const list = (name: string): string[] | undefined =>
    params.has(name) ? params.getAll(name).flatMap((v) => v.split(",")) : undefined;
  const parsed = PresenceQuery.safeParse({ emails: list("emails"), user_ids: list("user_ids") });
  if (!parsed.success) throw new FilterError(describeIssue(parsed.error, "query"));
  return makeFilter(parsed.data.emails, parsed.data.user_ids);
}

export function matches(filter: UserFilter, userId: string, email: string): boolean {
  return filter.ids.has(userId) || filter.emails.has(email.toLowerCase());
}

/** A short, stable key for a filter (ETags). */
export function filterKey(filter: UserFilter | undefined): string {
  if (!filter) return "all";
  return JSON.stringify([[...filter.emails].sort(), [...filter.ids].sort()]);
}

/** The contract's types fix the field names; the key order is the wire's. */
export function userJson(u: PresenceUser): string {
  const json: PresenceUserJson = {
    user_id: u.id,
    username: u.username,
    email: u.email,
    status: u.status!, // only users with a status are visible (PresenceSnapshot.visible)
    manual: u.manual ?? false,
    last_activity_at: u.lastActivityAt ?? 0,
  };
  return JSON.stringify(json);
}

export function changeJson(c: Change): string {
  const json: ChangeJson = { user_id: c.userId, email: c.email, status: c.status, at: c.at };
  return JSON.stringify(json);
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
