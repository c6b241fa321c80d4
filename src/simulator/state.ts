/**
 * The simulator's data: users (the directory, the token's bot included) and status records.
 * Mutations that Mattermost broadcasts to every WebSocket emit a SimEvent.
 */
import type { UserProfile, UserStatus } from "@mattermost/types/users";
import { isValidId, newId, pick, randInt, stream, type Rng } from "./prng.js";

export type SimStatus = "online" | "away" | "dnd" | "offline" | "ooo";

export const SIM_STATUSES: readonly SimStatus[] = ["online", "away", "dnd", "offline", "ooo"];

export interface SimUser {
  id: string;
  username: string;
  email: string;
  first_name: string;
  last_name: string;
  is_bot: boolean;
  delete_at: number;
  create_at: number;
  update_at: number;
  roles: string;
}

export interface StatusRecord {
  status: SimStatus;
  manual: boolean;
  last_activity_at: number;
  dnd_end_time: number;
}

/** A user as Mattermost's API returns it (sanitized: no password, props, notify_props). */
export type SimProfileJson = Pick<
  UserProfile,
  | "id"
  | "create_at"
  | "update_at"
  | "delete_at"
  | "username"
  | "auth_service"
  | "email"
  | "nickname"
  | "first_name"
  | "last_name"
  | "position"
  | "roles"
  | "locale"
  | "last_picture_update"
> & {
  /** Only bots have it: Mattermost leaves is_bot out of a human's profile (omitempty). */
  is_bot?: true;
  auth_data: string;
  timezone: NonNullable<UserProfile["timezone"]>;
  disable_welcome_email: boolean;
  bot_description?: string;
};

/** One item of a `POST /users/status/ids` answer. */
export type SimStatusJson = Required<
  Pick<UserStatus, "user_id" | "status" | "manual" | "last_activity_at" | "dnd_end_time">
>;

export type SimEvent =
  | { event: "new_user"; data: { user_id: string } }
  | { event: "user_updated"; data: { user: SimProfileJson } }
  | { event: "user_activation_status_change"; data: Record<string, never> }
  | { event: "config_changed"; data: { config: Record<string, string> } };

export type DirectoryFilter = "all" | "active" | "inactive";

export interface StateOptions {
  users: number;
  seed: number;
  emailsVisible: boolean;
  enableUserStatuses: boolean;
  botUsername: string;
}

const FIRST_NAMES = [
  "Ada",
  "Alan",
  "Barbara",
  "Claude",
  "Donald",
  "Edsger",
  "Frances",
  "Grace",
  "Hedy",
  "John",
  "Katherine",
  "Ken",
  "Linus",
  "Margaret",
  "Niklaus",
  "Radia",
  "Sophie",
  "Tim",
  "Vint",
  "Yukihiro",
];
const LAST_NAMES = [
  "Allen",
  "Berners-Lee",
  "Cerf",
  "Dijkstra",
  "Hamilton",
  "Hopper",
  "Johnson",
  "Knuth",
  "Lamarr",
  "Liskov",
  "Lovelace",
  "Matsumoto",
  "McCarthy",
  "Perlman",
  "Ritchie",
  "Shannon",
  "Thompson",
  "Torvalds",
  "Turing",
  "Wirth",
];

/** Fixed epoch for generated users, so a seed always gives the same directory. */
const GENERATED_EPOCH = Date.UTC(2024, 0, 1);

function pad(n: number): string {
  return String(n).padStart(5, "0");
}

/** Byte-order comparison (usernames are ASCII, so UTF-16 order is byte order). */
function compareUsernames(a: SimUser, b: SimUser): number {
  return a.username < b.username ? -1 : a.username > b.username ? 1 : 0;
}

export class SimState {
  emailsVisible: boolean;
  enableUserStatuses: boolean;
  /** The token's own user: a bot with system_admin, listed in the directory like any bot. */
  readonly bot: SimUser;
  /** The second token's user (a bot with only system_user), when the simulator has a plainToken. */
  plainBot: SimUser | undefined;

  private readonly users = new Map<string, SimUser>();
  private readonly statuses = new Map<string, StatusRecord>();
  private readonly usernames = new Set<string>();
  /** Sorted (and filtered) directories, cleared whenever a user is added, removed, renamed or (de)activated. */
  private readonly listCache = new Map<DirectoryFilter, SimUser[]>();
  private nextIndex: number;
  private readonly genRng: Rng;
  private readonly emit: (ev: SimEvent) => void;

  constructor(opts: StateOptions, emit: (ev: SimEvent) => void) {
    this.emit = emit;
    this.emailsVisible = opts.emailsVisible;
    this.enableUserStatuses = opts.enableUserStatuses;
    this.genRng = stream(opts.seed, 0);
    const rng = this.genRng;

    this.bot = {
      id: newId(rng),
      username: opts.botUsername.toLowerCase(),
      email: `${opts.botUsername.toLowerCase()}@example.com`,
      first_name: "",
      last_name: "",
      is_bot: true,
      delete_at: 0,
      create_at: GENERATED_EPOCH,
      update_at: GENERATED_EPOCH,
      roles: "system_user system_admin",
    };
    this.insert(this.bot);

    for (let i = 1; i <= opts.users; i++) {
      const isBot = rng() < 0.05;
      const deactivated = rng() < 0.05;
      const noStatus = rng() < 0.1;
      const statusRoll = rng();
      const username = isBot ? `bot-${pad(i)}` : `user.${pad(i)}`;
      const createAt = GENERATED_EPOCH + i * 60_000;
      const user: SimUser = {
        id: this.freshId(),
        username,
        email: `${username}@example.com`,
        first_name: isBot ? "" : pick(rng, FIRST_NAMES),
        last_name: isBot ? "" : pick(rng, LAST_NAMES),
        is_bot: isBot,
        delete_at: deactivated ? createAt + 86_400_000 : 0,
        create_at: createAt,
        update_at: deactivated ? createAt + 86_400_000 : createAt,
        roles: "system_user",
      };
      this.insert(user);
      if (!noStatus) {
        const status: SimStatus =
          statusRoll < 0.35 ? "online" : statusRoll < 0.55 ? "away" : statusRoll < 0.65 ? "dnd" : "offline";
        this.statuses.set(user.id, {
          status,
          manual: status === "dnd",
          last_activity_at: createAt + randInt(rng, 86_400_000),
          dnd_end_time: 0,
        });
      }
    }
    this.nextIndex = opts.users + 1;
  }

  /** Adds the second token's bot (after the generated users, so seeds keep their directory). */
  addPlainBot(username: string): SimUser {
    const u: SimUser = {
      id: this.freshId(),
      username: username.toLowerCase(),
      email: `${username.toLowerCase()}@localhost`,
      first_name: "",
      last_name: "",
      is_bot: true,
      delete_at: 0,
      create_at: GENERATED_EPOCH,
      update_at: GENERATED_EPOCH,
      roles: "system_user",
    };
    this.insert(u);
    this.plainBot = u;
    return u;
  }

  // ---- reads ----

  get(userId: string): SimUser | undefined {
    return this.users.get(userId);
  }

  /** Every user, including deactivated ones and the bot, in insertion order. */
  all(): SimUser[] {
    return [...this.users.values()];
  }

  /** Users sorted by username (byte order): all, active (delete_at 0) or inactive ones; cached. */
  directory(filter: DirectoryFilter): readonly SimUser[] {
    let list = this.listCache.get(filter);
    if (!list) {
      const all = [...this.users.values()].sort(compareUsernames);
      list =
        filter === "all"
          ? all
          : all.filter((u) => (filter === "active" ? u.delete_at === 0 : u.delete_at > 0));
      this.listCache.set(filter, list);
    }
    return list;
  }

  activeCount(): number {
    return this.directory("active").length;
  }

  getStatus(userId: string): StatusRecord | undefined {
    return this.statuses.get(userId);
  }

  /** Mattermost's answer for one id: no record (or an unknown id) → offline, manual false, 0. */
  statusJson(userId: string): SimStatusJson {
    const rec = this.statuses.get(userId);
    if (!rec)
      return { user_id: userId, status: "offline", manual: false, last_activity_at: 0, dnd_end_time: 0 };
    return {
      user_id: userId,
      status: rec.status,
      manual: rec.manual,
      last_activity_at: rec.last_activity_at,
      dnd_end_time: rec.dnd_end_time,
    };
  }

  /**
   * The profile as a caller sees it: the email shows with ShowEmailAddress on, to an admin
   * (manage_system), and in a caller's own profile (users/me, users/{own id}; not in lists).
   */
  profileJson(u: SimUser, self = false, admin = false): SimProfileJson {
    const p: SimProfileJson = {
      id: u.id,
      create_at: u.create_at,
      update_at: u.update_at,
      delete_at: u.delete_at,
      username: u.username,
      auth_data: "",
      auth_service: "",
      email: this.emailsVisible || self || admin ? u.email : "",
      nickname: "",
      first_name: u.first_name,
      last_name: u.last_name,
      position: "",
      roles: u.roles,
      locale: "en",
      timezone: { automaticTimezone: "", manualTimezone: "", useAutomaticTimezone: "true" },
      last_picture_update: 0,
      disable_welcome_email: false,
    };
    if (u.is_bot) p.is_bot = true;
    if (u.is_bot) p.bot_description = u.id === this.bot.id ? "Outlook presence gateway" : "";
    return p;
  }

  // ---- writes ----

  addUser(partial: Partial<SimUser> & { status?: SimStatus } = {}): SimUser {
    const now = Date.now();
    const id = partial.id ?? this.freshId();
    if (!isValidId(id))
      throw new Error(`addUser: id must be 26 characters [a-z0-9], got ${JSON.stringify(id)}`);
    if (this.users.has(id)) throw new Error(`addUser: id ${id} already exists`);
    let username = partial.username?.toLowerCase();
    if (username === undefined) {
      do username = `user.${pad(this.nextIndex++)}`;
      while (this.usernames.has(username));
    } else if (this.usernames.has(username)) {
      throw new Error(`addUser: username ${username} already exists`);
    }
    const rng = this.genRng;
    const isBot = partial.is_bot ?? false;
    const user: SimUser = {
      id,
      username,
      email: (partial.email ?? `${username}@example.com`).toLowerCase(),
      first_name: partial.first_name ?? (isBot ? "" : pick(rng, FIRST_NAMES)),
      last_name: partial.last_name ?? (isBot ? "" : pick(rng, LAST_NAMES)),
      is_bot: isBot,
      delete_at: partial.delete_at ?? 0,
      create_at: partial.create_at ?? now,
      update_at: partial.update_at ?? now,
      roles: partial.roles ?? "system_user",
    };
    this.insert(user);
    if (partial.status !== undefined) this.writeStatus(user.id, partial.status);
    this.emit({ event: "new_user", data: { user_id: user.id } });
    return { ...user };
  }

  setStatus(userId: string, status: SimStatus, dndEndTime?: number): void {
    if (!SIM_STATUSES.includes(status))
      throw new Error(`setStatus: unknown status ${JSON.stringify(status)}`);
    this.mustGet(userId, "setStatus");
    this.writeStatus(userId, status, dndEndTime);
  }

  setActive(userId: string, active: boolean): void {
    const u = this.mustGet(userId, active ? "reactivateUser" : "deactivateUser");
    const now = Date.now();
    u.delete_at = active ? 0 : now;
    u.update_at = now;
    this.listCache.clear();
    this.emit({ event: "user_updated", data: { user: this.profileJson(u) } });
    this.emit({ event: "user_activation_status_change", data: {} });
  }

  deleteUser(userId: string): void {
    const u = this.mustGet(userId, "deleteUser");
    if (u.id === this.bot.id) throw new Error("deleteUser: cannot delete the token's own bot");
    this.users.delete(userId);
    this.usernames.delete(u.username);
    this.statuses.delete(userId);
    this.listCache.clear();
  }

  updateUser(
    userId: string,
    patch: Partial<Pick<SimUser, "email" | "username" | "first_name" | "last_name">>,
  ): void {
    const u = this.mustGet(userId, "updateUser");
    if (patch.username !== undefined) {
      const username = patch.username.toLowerCase();
      if (username !== u.username) {
        if (this.usernames.has(username)) throw new Error(`updateUser: username ${username} already exists`);
        this.usernames.delete(u.username);
        this.usernames.add(username);
        u.username = username;
        this.listCache.clear();
      }
    }
    if (patch.email !== undefined) u.email = patch.email.toLowerCase();
    if (patch.first_name !== undefined) u.first_name = patch.first_name;
    if (patch.last_name !== undefined) u.last_name = patch.last_name;
    u.update_at = Date.now();
    this.emit({ event: "user_updated", data: { user: this.profileJson(u) } });
  }

  private writeStatus(userId: string, status: SimStatus, dndEndTime = 0): void {
    const prev = this.statuses.get(userId);
    // As PUT /users/{id}/status leaves it: only online is not manual; online and offline stamp
    // last_activity_at, away and dnd keep it.
    this.statuses.set(userId, {
      status,
      manual: status !== "online",
      last_activity_at:
        status === "online" || status === "offline" || !prev ? Date.now() : prev.last_activity_at,
      // Mattermost's DND expiry job runs every minute, so it truncates the end time to the minute.
      dnd_end_time: status === "dnd" ? dndEndTime - (dndEndTime % 60) : 0,
    });
  }

  private mustGet(userId: string, op: string): SimUser {
    const u = this.users.get(userId);
    if (!u) throw new Error(`${op}: unknown user ${userId}`);
    return u;
  }

  private insert(u: SimUser): void {
    this.users.set(u.id, u);
    this.usernames.add(u.username);
    this.listCache.clear();
  }

  private freshId(): string {
    let id: string;
    do id = newId(this.genRng);
    while (this.users.has(id));
    return id;
  }
}
