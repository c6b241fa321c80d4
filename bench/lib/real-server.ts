/**
 * What the upstream-cost bench reads about a real Mattermost on this machine: its process (for
 * CPU), its PostgreSQL database and backends (for transactions, rows and their CPU), found from
 * the server's own sockets; and fixture users inserted straight into its database.
 */
import { execFileSync } from "node:child_process";
import { cpuMsOf } from "./procs.js";

const PG = ["-h", "127.0.0.1", "-U", "postgres", "-qAt", "-v", "ON_ERROR_STOP=1"];

export function psql(db: string, sql: string): string {
  return execFileSync("psql", [...PG, "-d", db, "-c", sql], { encoding: "utf8" }).trim();
}

/** The pid listening on 127.0.0.1:port (ss -ltnp). */
export function pidListeningOn(port: number): number {
  const out = execFileSync("ss", ["-Hltnp", `sport = :${port}`], { encoding: "utf8" });
  const m = /pid=(\d+)/.exec(out);
  if (!m) throw new Error(`no process found listening on port ${port} (ss -ltnp)`);
  return Number(m[1]);
}

/** The database a process is connected to, from its connections to PostgreSQL's port. */
export function databaseOf(pid: number): string {
  const out = execFileSync("ss", ["-Htnp", "dport = :5432"], { encoding: "utf8" });
  const ports = out
    .split("\n")
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => /127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:5432/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined);
  if (ports.length === 0) throw new Error(`process ${pid} has no connection to PostgreSQL on 127.0.0.1:5432`);
  const dbs = psql(
    "postgres",
    `SELECT DISTINCT datname FROM pg_stat_activity WHERE client_port IN (${ports.join(",")})`,
  );
  const names = dbs.split("\n").filter(Boolean);
  if (names.length !== 1)
    throw new Error(`process ${pid}: expected one database, found ${JSON.stringify(names)}`);
  return names[0]!;
}

export interface Counters {
  /** Mattermost process CPU, ms. */
  mmCpuMs: number;
  /** CPU of the PostgreSQL backends serving the database, ms, by pid. */
  pgCpu: Map<number, number>;
  xactCommit: number;
  tupReturned: number;
  tupFetched: number;
  at: number;
}

export function readCounters(mmPid: number, db: string): Counters {
  const row = psql(
    "postgres",
    `SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = '${db}'`,
  ).split("|");
  const backends = psql("postgres", `SELECT pid FROM pg_stat_activity WHERE datname = '${db}'`)
    .split("\n")
    .filter(Boolean)
    .map(Number);
  const pgCpu = new Map<number, number>();
  for (const pid of backends) {
    try {
      pgCpu.set(pid, cpuMsOf(pid));
    } catch {
      // gone meanwhile
    }
  }
  return {
    mmCpuMs: cpuMsOf(mmPid),
    pgCpu,
    xactCommit: Number(row[0]),
    tupReturned: Number(row[1]),
    tupFetched: Number(row[2]),
    at: performance.now(),
  };
}

export interface Window {
  seconds: number;
  /** Share of one core, %. */
  mmCpuPct: number;
  pgCpuPct: number;
  xactPerMin: number;
  tupReturnedPerMin: number;
  tupFetchedPerMin: number;
}

export function windowBetween(a: Counters, b: Counters): Window {
  const s = (b.at - a.at) / 1000;
  let pg = 0;
  // A backend first seen at the end was started in the window (all its CPU counts); one that
  // ended within the window is missed.
  for (const [pid, end] of b.pgCpu) pg += end - (a.pgCpu.get(pid) ?? 0);
  const perMin = (x: number) => Math.round((x * 60) / s);
  return {
    seconds: Math.round(s),
    mmCpuPct: Math.round(((b.mmCpuMs - a.mmCpuMs) / 10 / s) * 10) / 10,
    pgCpuPct: Math.round((pg / 10 / s) * 10) / 10,
    xactPerMin: perMin(b.xactCommit - a.xactCommit),
    tupReturnedPerMin: perMin(b.tupReturned - a.tupReturned),
    tupFetchedPerMin: perMin(b.tupFetched - a.tupFetched),
  };
}

/**
 * Grows the fixture to `total` users named bench.NNNNN, copies of `templateUserId` (a user made
 * through the API, so every column is as Mattermost writes it) with fresh ids, usernames and
 * emails, with a status record copied from the template's (online, away, dnd, offline in turn),
 * except one user in eight, who has none (never logged in: Mattermost answers offline, and its
 * status cache cannot hold a record that does not exist). Through the API each user costs a password hash (~0.1 s of CPU), ~17 min for 10,000 here.
 */
export function insertUsers(db: string, templateUserId: string, total: number): number {
  const have = Number(psql(db, `SELECT count(*) FROM users WHERE username LIKE 'bench.%'`));
  if (have >= total) return have;
  const from = have + 1;
  psql(
    db,
    `BEGIN;
     CREATE TEMP TABLE gen AS
       SELECT u.*, g AS n FROM users u, generate_series(${from}, ${total}) g WHERE u.id = '${templateUserId}';
     UPDATE gen SET id = substr(md5('bench-user-' || n), 1, 26),
                    username = 'bench.' || lpad(n::text, 5, '0'),
                    email = 'bench.' || lpad(n::text, 5, '0') || '@example.com';
     CREATE TEMP TABLE gst AS
       SELECT s.*, g.n, g.id AS newid FROM status s, gen g WHERE s.userid = '${templateUserId}' AND g.n % 8 <> 0;
     UPDATE gst SET userid = newid,
                    status = (ARRAY['online','away','dnd','offline'])[1 + n % 4],
                    manual = (n % 4 = 2);
     ALTER TABLE gen DROP COLUMN n;
     ALTER TABLE gst DROP COLUMN n, DROP COLUMN newid;
     INSERT INTO users SELECT * FROM gen;
     INSERT INTO status SELECT * FROM gst;
     DROP TABLE gen; DROP TABLE gst;
     COMMIT;
     ANALYZE users; ANALYZE status;`,
  );
  return Number(psql(db, `SELECT count(*) FROM users WHERE username LIKE 'bench.%'`));
}

export function benchUserIds(db: string, limit: number): string[] {
  return psql(db, `SELECT id FROM users WHERE username LIKE 'bench.%' ORDER BY username LIMIT ${limit}`)
    .split("\n")
    .filter(Boolean);
}
