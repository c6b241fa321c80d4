import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { BASE, FakeProvider } from "../helpers/provider.js";

const TOKEN = `metrics-token-${process.pid}`;
const SECRET = `metrics-secret-${process.pid}`;
const METRICS_TOKEN = `scrape-token-${process.pid}-abcdef`;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: \\d+)?$`);
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/g;

/** Go's strconv.ParseFloat, as Prometheus reads values: NaN and Inf in any case. */
function goParseFloat(s: string): number | undefined {
  if (/^nan$/i.test(s)) return NaN;
  const inf = /^([+-]?)inf(inity)?$/i.exec(s);
  if (inf) return inf[1] === "-" ? -Infinity : Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a HELP, a TYPE or a
 * sample; every sample belongs to a declared family. Throws on anything else.
 */
function parseExposition(text: string): Sample[] {
  assert.ok(text.endsWith("\n"), "exposition ends with a newline");
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    if (line === "") continue;
    let m = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (m) {
      if (m[1] === "TYPE") {
        assert.match(m[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    m = SAMPLE_RE.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const raw = m[2] ?? "";
    let consumed = 0;
    for (const l of raw.matchAll(LABEL_RE)) {
      labels[l[1]!] = l[2]!;
      consumed += l[0].length;
    }
    assert.equal(consumed, raw.length, `bad labels: ${line}`);
    const value = goParseFloat(m[3]!);
    assert.ok(value !== undefined, `bad value: ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count|total|created)$/, "");
    assert.ok(types.has(m[1]!) || types.has(family), `sample without a TYPE: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.filter(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  );
  assert.ok(s.length > 0, `no sample ${name}${JSON.stringify(labels)}`);
  return s.reduce((a, x) => a + x.value, 0);
}

describe("GET /metrics (real CLI process against the simulator)", () => {
  let sim: MattermostSimulator;
  let gw: GatewayProcess;
  const providers: FakeProvider[] = [];

  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(`${gw.url}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  };
  const scrapeUntil = async (pred: (s: Sample[]) => boolean, what: string): Promise<Sample[]> => {
    for (let i = 0; i < 200; i++) {
      const s = await scrape();
      if (pred(s)) return s;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`metrics never showed ${what}`);
  };

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 60, seed: 3 });
    await sim.start(0, "127.0.0.1");
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
      PRESENCE_METRICS_TOKEN: METRICS_TOKEN,
      PRESENCE_POLL_INTERVAL_MS: "250",
    });
    await scrapeUntil((s) => value(s, "outlook_presence_ready") === 1, "ready");
  });

  after(async () => {
    for (const p of providers) p.close();
    await gw?.stop();
    await sim?.stop();
  });

  test("needs the bearer token when PRESENCE_METRICS_TOKEN is set, and never logs it", async () => {
    assert.equal((await fetch(`${gw.url}/metrics`)).status, 403);
    const wrong = await fetch(`${gw.url}/metrics`, { headers: { Authorization: "Bearer nope" } });
    assert.equal(wrong.status, 403);
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, "invalid_secret");
    const query = await fetch(`${gw.url}/metrics?token=${METRICS_TOKEN}`);
    assert.equal(query.status, 403, "the token is not accepted from the query string");
    assert.doesNotMatch(gw.output, new RegExp(METRICS_TOKEN));
  });

  test("parses as Prometheus text: Node's default metrics unprefixed, the service's own prefixed, fixed leader flag", async () => {
    const s = await scrape();
    for (const x of s) assert.match(x.name, /^(outlook_presence_|process_|nodejs_)/);
    // The names the standard Node.js dashboards and alerts query.
    assert.ok(value(s, "process_cpu_user_seconds_total") >= 0);
    assert.ok(value(s, "process_resident_memory_bytes") > 0);
    assert.ok(value(s, "nodejs_heap_size_used_bytes") > 0);
    assert.ok(value(s, "nodejs_eventloop_lag_p99_seconds") >= 0);
    assert.ok(
      !s.some((x) => /^outlook_presence_(process|nodejs)_/.test(x.name)),
      "default metrics unprefixed",
    );
    assert.equal(value(s, "outlook_presence_leader"), 1);
    assert.equal(value(s, "outlook_presence_build_info"), 1);
    assert.ok(Number.isFinite(value(s, "outlook_presence_last_successful_poll_age_seconds")));
    assert.ok(value(s, "outlook_presence_poll_cycle_duration_seconds_count", { result: "ok" }) >= 1);
    assert.ok(
      value(s, "outlook_presence_upstream_requests_total", { endpoint: "status/ids", code: "200" }) >= 1,
    );
    assert.ok(value(s, "outlook_presence_directory_refresh_duration_seconds_count") >= 1);
    assert.equal(value(s, "outlook_presence_poll_status_requests"), 1, "61 users: one status request");
    // Users by status add up to the users providers see (active, with an email).
    const visible = sim.listUsers().filter((u) => u.delete_at === 0 && u.email).length;
    const byStatus = ["online", "away", "dnd", "offline"].map((st) =>
      value(s, "outlook_presence_users", { status: st }),
    );
    assert.equal(
      byStatus.reduce((a, b) => a + b),
      visible,
    );
    assert.equal(
      value(s, "outlook_presence_directory_users"),
      sim.listUsers().filter((u) => u.delete_at === 0).length,
    );
  });

  test("values move when the simulator changes statuses", async () => {
    const p = new FakeProvider(gw.url, SECRET);
    providers.push(p);
    await p.loadStatus(); // as a provider starts: its socket is not resynced, so the counts below are live messages
    await p.connect();
    const before = await scrapeUntil((s) => value(s, "outlook_presence_ws_connections") === 1, "1 socket");
    const dndBefore = value(before, "outlook_presence_users", { status: "dnd" });
    const changesBefore = value(before, "outlook_presence_status_changes_total");
    const sentBefore = value(before, "outlook_presence_ws_messages_sent_total");

    const targets = sim
      .listUsers()
      .filter((u) => u.delete_at === 0 && u.email && !u.is_bot && sim.getStatus(u.id) !== "dnd")
      .slice(0, 5);
    assert.equal(targets.length, 5);
    for (const u of targets) sim.setStatus(u.id, "dnd");

    const moved = await scrapeUntil(
      (s) => value(s, "outlook_presence_users", { status: "dnd" }) === dndBefore + 5,
      "5 more users in dnd",
    );
    assert.ok(value(moved, "outlook_presence_status_changes_total") >= changesBefore + 5);
    await p.until((q) => targets.every((u) => q.store.get(u.email) === "dnd"), 10_000, "the 5 changes");
    const after = await scrape();
    assert.ok(value(after, "outlook_presence_ws_messages_sent_total") >= sentBefore + 5);
    assert.ok(value(after, "outlook_presence_ws_bytes_sent_total") > 0);

    p.close();
    await scrapeUntil(
      (s) =>
        value(s, "outlook_presence_ws_connections") === 0 &&
        value(s, "outlook_presence_ws_connections_closed_total", { reason: "client" }) === 1,
      "the socket closed by the client",
    );
  });

  test("counts /status requests by route and code, and refused upgrades by code", async () => {
    const route = `${BASE}/status`;
    const ok = await fetch(`${gw.url}${route}?secret=${SECRET}`);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.equal((await fetch(`${gw.url}${route}?secret=wrong`)).status, 403);
    const p = new FakeProvider(gw.url, "wrong");
    await assert.rejects(p.connect(), /403/);
    const s = await scrape();
    assert.ok(value(s, "outlook_presence_http_requests_total", { route, code: "200" }) >= 1);
    assert.ok(value(s, "outlook_presence_http_requests_total", { route, code: "403" }) >= 1);
    assert.equal(value(s, "outlook_presence_ws_upgrades_refused_total", { code: "invalid_secret" }), 1);
  });
});
