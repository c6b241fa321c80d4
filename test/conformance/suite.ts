/** Shared pieces of the conformance files: one target per file, Mattermost's shapes, small reads. */
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { openTarget, type Target } from "./target.js";

/**
 * The target of this file, opened before its first test (then `setup` runs: one hook, since
 * Node 20 does not wait for one top-level hook before starting the next) and closed, its users
 * cleaned up, after the last.
 */
export function useTarget(setup?: (t: Target) => Promise<void>): () => Target {
  let target: Target | undefined;
  before(async () => {
    target = await openTarget();
    await setup?.(target);
  });
  after(async () => {
    if (!target) return;
    await target.admin.cleanup();
    await target.close();
  });
  return () => {
    if (!target) throw new Error("target not opened");
    return target;
  };
}

export interface Profile {
  id: string;
  username: string;
  email?: string;
  delete_at: number;
  is_bot: boolean;
  roles: string;
}

export interface StatusItem {
  user_id: string;
  status: string;
  manual: boolean;
  last_activity_at: number;
  dnd_end_time?: number;
}

/** Mattermost's AppError as its API writes it. */
export interface AppErr {
  id: string;
  message: string;
  detailed_error: string;
  request_id: string;
  status_code: number;
}

export async function jsonOf<T>(res: Response): Promise<T> {
  const type = res.headers.get("content-type") ?? "";
  assert.ok(type.startsWith("application/json"), `Content-Type ${type} (HTTP ${res.status})`);
  return (await res.json()) as T;
}

/** Reads an AppError and checks the fields every Mattermost error carries. */
export async function appErr(res: Response, status: number): Promise<AppErr> {
  assert.equal(res.status, status);
  const e = await jsonOf<AppErr>(res);
  assert.equal(typeof e.id, "string");
  assert.equal(typeof e.message, "string");
  assert.equal(e.status_code, status);
  assert.equal(typeof e.request_id, "string");
  return e;
}

/** Every page of GET /users?<query> with `perPage` per page, in the order served. */
export async function allUsers(
  t: Target,
  query: string,
  perPage = 200,
  token: string = t.token,
): Promise<Profile[]> {
  const out: Profile[] = [];
  for (let page = 0; page < 10_000; page++) {
    const res = await t.api(`users?${query}&page=${page}&per_page=${perPage}`, { token });
    assert.equal(res.status, 200);
    const batch = await jsonOf<Profile[]>(res);
    out.push(...batch);
    if (batch.length < perPage) return out;
  }
  throw new Error("more than 10,000 pages");
}

export async function statusIds(t: Target, ids: unknown, token: string = t.token): Promise<Response> {
  return t.api("users/status/ids", { method: "POST", body: JSON.stringify(ids), token });
}

export async function statusOf(t: Target, userId: string): Promise<StatusItem> {
  const res = await statusIds(t, [userId]);
  const list = await jsonOf<StatusItem[]>(res);
  assert.equal(list.length, 1);
  return list[0] as StatusItem;
}

/** A 26-character id Mattermost has never issued (ids are [a-z0-9], this one has a fixed tail). */
export function unknownId(i = 0): string {
  return `zzconformance${String(i).padStart(13, "0")}`;
}
