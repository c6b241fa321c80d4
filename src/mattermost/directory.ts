import type { DirectoryEntry } from "../presence/snapshot.js";
import { MAX_USERS_PER_PAGE, type DirectoryUser, type MattermostClient } from "./client.js";
import { UpstreamError } from "./errors.js";

/**
 * Without `/users/stats`: at most this many pages (500,000 users). A bound, not a guess at the
 * size: reading that many pages is what an upstream that never ends can cost at worst per refresh.
 */
export const FALLBACK_MAX_PAGES = 2500;

/** Users added while the pages are read; a page or two more than `/users/stats` said is normal. */
export function maxPagesFor(totalUsers: number | undefined, cap = FALLBACK_MAX_PAGES): number {
  if (totalUsers === undefined) return cap;
  const margin = Math.max(1000, Math.ceil(totalUsers / 10));
  return Math.min(cap, Math.ceil((totalUsers + margin) / MAX_USERS_PER_PAGE) + 1);
}

export interface Directory {
  /** Active users in Mattermost's order, each once, as the presence snapshot takes them. */
  users: DirectoryEntry[];
  pages: number;
  /** `total_users_count` of `/users/stats`; undefined when it could not be read. */
  totalUsers: number | undefined;
}

type DirectoryClient = Pick<MattermostClient, "getActiveUsers" | "getTotalUsers">;

/**
 * Every active user, 200 a page, until a short page. Paging has an end even when the upstream
 * does not: an upstream (or a proxy that drops the query string) answering the same 200 users
 * for every page made the gateway send ~1,000 requests/s for 40 s and grow to 2.26 GB. So a
 * full page that brings no user not already read, or more pages than `/users/stats` allows,
 * rejects with an `endless-paging` UpstreamError (`cap`: the most pages whatever the stats say).
 * A user who moves between pages while they are
 * read (a rename, an insertion) appears twice at most: kept once, where first seen.
 */
export async function readDirectory(client: DirectoryClient, cap = FALLBACK_MAX_PAGES): Promise<Directory> {
  const totalUsers = await readTotal(client);
  const maxPages = maxPagesFor(totalUsers, cap);
  const users: DirectoryEntry[] = [];
  const seen = new Set<string>();
  for (let page = 0; page < maxPages; page++) {
    const batch = await client.getActiveUsers(page, MAX_USERS_PER_PAGE);
    let fresh = 0;
    for (const u of batch) {
      if (seen.has(u.id)) continue;
      seen.add(u.id);
      users.push(toEntry(u));
      fresh++;
    }
    if (batch.length < MAX_USERS_PER_PAGE) return { users, pages: page + 1, totalUsers };
    if (fresh === 0) {
      throw new UpstreamError(
        "endless-paging",
        `users: page ${page} repeats users already read (does a proxy drop the query string?); directory not refreshed`,
        "users",
      );
    }
  }
  throw new UpstreamError(
    "endless-paging",
    `users: still full pages after ${maxPages} pages, more than /users/stats allows (${totalUsers ?? "unavailable"} users); directory not refreshed`,
    "users",
  );
}

/** Only the fields the core keeps: whatever else the client grows stays in the adapter. */
const toEntry = (u: DirectoryUser): DirectoryEntry => ({
  id: u.id,
  username: u.username,
  email: u.email,
  isBot: u.isBot,
});

/**
 * The stats bound the paging; without them a fixed cap does. A 401, a 429 or an unreachable
 * Mattermost would fail the pages too, so those fail the refresh at once.
 */
async function readTotal(client: DirectoryClient): Promise<number | undefined> {
  try {
    return await client.getTotalUsers();
  } catch (err) {
    if (
      err instanceof UpstreamError &&
      ["unauthorized", "rate-limited", "network", "timeout"].includes(err.kind)
    ) {
      throw err;
    }
    return undefined;
  }
}
