/**
 * `doctor --end-to-end`: changes one user's status in Mattermost and watches it arrive on the
 * gateway's compat /ws, as a desktop's provider would see it; then puts the status back.
 */
import WebSocket from "ws";
import { COMPAT_BASE } from "../http/compat.js";
import type { DirectoryUser, MattermostClient, UserStatusRecord } from "../mattermost/client.js";
import { UpstreamError } from "../mattermost/errors.js";
import type { Verdict } from "./doctor.js";

export interface EndToEndOptions {
  /** Username (with or without @) or email; unset: the token's own user. */
  user?: string;
  /** Added to the poll interval to give the limit a change has to arrive within. */
  marginMs: number;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM: stop waiting, restore, report. */
  signal: AbortSignal;
}

export const DEFAULT_MARGIN_MS = 5000;
/** /status pages read to find the user (100 per page: a million users). */
const MAX_STATUS_PAGES = 10_000;

type Report = (verdict: Verdict, check: string, message: string) => void;
type Settable = "online" | "away" | "dnd" | "offline";

/** What a provider shows for a Mattermost status (the gateway's mapping: ooo → away). */
function wireStatus(status: string): string {
  return status === "ooo" ? "away" : status;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Arrival {
  /** Resolves with the arrival time (performance.now()) of the first matching message after `since`, or undefined on timeout or abort. */
  wait(status: string, since: number, limitMs: number, signal: AbortSignal): Promise<number | undefined>;
  close(): void;
}

/** Holds the gateway's compat /ws and remembers when each of `userId`'s statuses arrived. */
async function openSocket(
  gatewayUrl: string,
  secret: string,
  userId: string,
  email: string,
  timeoutMs: number,
  report: Report,
): Promise<Arrival | undefined> {
  const url = `${gatewayUrl.replace(/^http/, "ws")}${COMPAT_BASE}/ws?secret=${encodeURIComponent(secret)}`;
  const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
  const seen: { status: string; at: number }[] = [];
  let notify: (() => void) | undefined;
  let wrongEmail: string | undefined;
  ws.on("message", (data) => {
    let msg: { user_id?: unknown; email?: unknown; status?: unknown };
    try {
      msg = JSON.parse(data.toString()) as typeof msg;
    } catch {
      return;
    }
    if (msg.user_id !== userId || typeof msg.status !== "string") return;
    if (msg.email !== email) wrongEmail = String(msg.email);
    seen.push({ status: msg.status, at: performance.now() });
    notify?.();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  } catch (err) {
    ws.terminate();
    const why = describe(err);
    report(
      "FAIL",
      "e2e-socket",
      why === "HTTP 403"
        ? `the gateway refused ${COMPAT_BASE}/ws with the secret (403)`
        : `cannot open ${COMPAT_BASE}/ws on the gateway (${why}): a proxy in front of it must pass WebSocket upgrades (docs/DEPLOY.md)`,
    );
    return undefined;
  }
  ws.on("error", () => undefined);
  report("PASS", "e2e-socket", `holding ${COMPAT_BASE}/ws on the gateway, as a provider does`);
  return {
    wait(status, since, limitMs, signal) {
      const find = () => seen.find((m) => m.status === status && m.at >= since)?.at;
      return new Promise<number | undefined>((resolve) => {
        const done = (at: number | undefined) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          notify = undefined;
          resolve(at);
        };
        const onAbort = () => done(undefined);
        const timer = setTimeout(() => done(undefined), Math.max(0, since + limitMs - performance.now()));
        notify = () => {
          const at = find();
          if (at !== undefined) done(at);
        };
        if (signal.aborted) return done(undefined);
        signal.addEventListener("abort", onAbort);
        notify();
      }).then((at) => {
        if (at !== undefined && wrongEmail !== undefined) {
          report(
            "WARN",
            "e2e-socket",
            `a message for the user carried the email ${JSON.stringify(wrongEmail)}, not ${JSON.stringify(email)}`,
          );
        }
        return at;
      });
    },
    close: () => ws.terminate(),
  };
}

/** Whether the gateway's /status lists the user under this id and email (else no change of theirs can arrive). */
async function listedOnGateway(
  gatewayUrl: string,
  secret: string,
  user: DirectoryUser,
  timeoutMs: number,
  report: Report,
): Promise<boolean> {
  for (let page = 0; page < MAX_STATUS_PAGES; page++) {
    const res = await fetch(
      `${gatewayUrl}${COMPAT_BASE}/status?secret=${encodeURIComponent(secret)}&page=${page}`,
      {
        signal: AbortSignal.timeout(timeoutMs),
      },
    ).catch((err: unknown) => err as Error);
    if (res instanceof Error || res.status !== 200) {
      const why = res instanceof Error ? describe(res) : `HTTP ${res.status}`;
      report("FAIL", "e2e-listed", `cannot read the gateway's /status page ${page} (${why})`);
      return false;
    }
    const items = (await res.json()) as { user_id: string; email: string; status: string }[];
    if (items.length === 0) break;
    const mine = items.find((i) => i.user_id === user.id);
    if (mine) {
      if (mine.email !== user.email) {
        report(
          "FAIL",
          "e2e-listed",
          `the gateway lists @${user.username} with the email ${JSON.stringify(mine.email)}, Mattermost has ${JSON.stringify(user.email)}`,
        );
        return false;
      }
      report(
        "PASS",
        "e2e-listed",
        `the gateway's /status lists @${user.username} (page ${page}, ${mine.status})`,
      );
      return true;
    }
  }
  report(
    "FAIL",
    "e2e-listed",
    `the gateway's /status does not list @${user.username} (id ${user.id}): it reads another Mattermost (check its MATTERMOST_URL), or has not refreshed its directory yet (PRESENCE_DIRECTORY_REFRESH_MS)`,
  );
  return false;
}

/** Finds the user to change: the one named, or the token's own. */
function pickUser(
  users: readonly DirectoryUser[],
  meId: string,
  named: string | undefined,
  report: Report,
): DirectoryUser | undefined {
  const want = named?.replace(/^@/, "").toLowerCase();
  const user =
    want === undefined
      ? users.find((u) => u.id === meId)
      : users.find((u) => u.username === want || u.email.toLowerCase() === want);
  if (!user) {
    report(
      "FAIL",
      "e2e-user",
      want === undefined
        ? "the token's own user is not among Mattermost's active users"
        : `no active user with the username or email ${JSON.stringify(named)}`,
    );
    return undefined;
  }
  if (user.email === "") {
    report(
      "FAIL",
      "e2e-user",
      `@${user.username} has no email visible to the token, so the gateway leaves them out: name another user with --user`,
    );
    return undefined;
  }
  return user;
}

/**
 * Runs the end-to-end check. `users` and `meId` come from doctor's earlier checks. Every status
 * it changes is put back before it returns, whatever happened (also on abort).
 */
export async function checkEndToEnd(
  client: MattermostClient,
  users: readonly DirectoryUser[],
  meId: string,
  gatewayUrl: string,
  secret: string,
  pollIntervalMs: number,
  timeoutMs: number,
  opts: EndToEndOptions,
  report: Report,
): Promise<void> {
  const base = gatewayUrl.replace(/\/+$/, "");
  const user = pickUser(users, meId, opts.user, report);
  if (!user) return;
  let original: UserStatusRecord;
  try {
    original = await client.getStatus(user.id);
  } catch (err) {
    report("FAIL", "e2e-user", `cannot read @${user.username}'s status: ${describe(err)}`);
    return;
  }
  const who = `@${user.username} (${user.email})`;
  if (original.status === "ooo") {
    // Mattermost turns the user's automatic replies off when their status leaves ooo.
    report(
      "FAIL",
      "e2e-user",
      `${who} is out of office; changing their status would turn off their automatic replies: name another user with --user`,
    );
    return;
  }
  const end = original.dndEndTime ? `, until ${new Date(original.dndEndTime * 1000).toISOString()}` : "";
  report(
    "PASS",
    "e2e-user",
    `${who} is ${original.status}${original.manual ? " (set manually" : " (automatic"}${end})`,
  );

  if (!(await listedOnGateway(base, secret, user, timeoutMs, report))) return;
  const socket = await openSocket(base, secret, user.id, user.email, timeoutMs, report);
  if (!socket) return;

  const before = wireStatus(original.status);
  const target: Settable = before === "online" ? "away" : "online";
  const limitMs = pollIntervalMs + opts.marginMs;
  const limit = `${limitMs} ms: PRESENCE_POLL_INTERVAL_MS ${pollIntervalMs} + margin ${opts.marginMs}`;
  let changed = false;
  try {
    if (opts.signal.aborted) throw new Error("interrupted");
    const started = performance.now();
    try {
      await client.setStatus(user.id, target);
      changed = true;
    } catch (err) {
      const forbidden = err instanceof UpstreamError && err.kind === "forbidden";
      report(
        "FAIL",
        "e2e-change",
        forbidden
          ? `Mattermost refused to change ${who}'s status (403): the token needs edit_other_users (a system admin's); run without --user to use the token's own user`
          : `cannot change ${who}'s status: ${describe(err)}`,
      );
      return;
    }
    report("PASS", "e2e-change", `set ${who} ${before} → ${target} through PUT /api/v4/users/{id}/status`);
    const at = await socket.wait(target, started, limitMs, opts.signal);
    if (at !== undefined) {
      report(
        "PASS",
        "e2e-arrival",
        `"${target}" for ${who} arrived on the gateway's /ws ${Math.round(at - started)} ms after the change (limit ${limit})`,
      );
    } else if (opts.signal.aborted) {
      report(
        "FAIL",
        "e2e-arrival",
        `interrupted before "${target}" for ${who} arrived (${Math.round(performance.now() - started)} ms)`,
      );
    } else {
      report(
        "FAIL",
        "e2e-arrival",
        `no "${target}" for ${who} on the gateway's /ws within ${limit}: the gateway does not poll this Mattermost (check its MATTERMOST_URL and its log), or its poll cycle takes longer (its /metrics; raise --margin-ms to wait longer)`,
      );
    }
  } finally {
    if (changed) await restore(client, user, original, socket, limitMs, who, report);
    socket.close();
  }
}

async function restore(
  client: MattermostClient,
  user: DirectoryUser,
  original: UserStatusRecord,
  socket: Arrival,
  limitMs: number,
  who: string,
  report: Report,
): Promise<void> {
  const started = performance.now();
  try {
    await client.setStatus(user.id, original.status as Settable, original.dndEndTime);
  } catch (err) {
    report(
      "FAIL",
      "e2e-restore",
      `could not put ${who} back to ${original.status}: ${describe(err)}; set it by hand`,
    );
    return;
  }
  // Through this API only "online" is automatic; any other status comes back as set manually.
  const note =
    !original.manual && original.status !== "online"
      ? ` (Mattermost now keeps it as set manually; it was automatic)`
      : "";
  // The restore is itself a change: its arrival (bounded, never interrupted) shows the path again.
  const at = await socket.wait(wireStatus(original.status), started, limitMs, new AbortController().signal);
  const arrival =
    at === undefined
      ? `; not seen on /ws within ${limitMs} ms`
      : `; arrived on /ws in ${Math.round(at - started)} ms`;
  report(
    at === undefined ? "WARN" : "PASS",
    "e2e-restore",
    `put ${who} back to ${original.status}${note}${arrival}`,
  );
}
