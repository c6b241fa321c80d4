import assert from "node:assert/strict";
import { test } from "node:test";
import { initialHealth, type UpstreamHealth } from "../../src/mattermost/sync.js";
import { GatewayMetrics, composeTelemetry, type MetricsSource } from "../../src/metrics/index.js";
import { NO_TELEMETRY, type Telemetry } from "../../src/telemetry.js";

const health: UpstreamHealth = { ...initialHealth(), usersWithoutEmail: 3 };

function source(over: Partial<MetricsSource> = {}): MetricsSource {
  return {
    countsByStatus: () => ({ online: 4, away: 3, dnd: 2, offline: 1 }),
    directoryUsers: () => 13,
    sockets: () => 7,
    health: () => health,
    ready: () => true,
    lastSeq: () => 42,
    leader: () => true,
    now: () => 10_000,
    ...over,
  };
}

const line = (text: string, sample: string): string | undefined =>
  text.split("\n").find((l) => l.startsWith(`${sample} `));

test("state gauges are read from the source when scraped", async () => {
  const m = new GatewayMetrics({ defaultMetrics: false });
  let sockets = 7;
  m.observe(source({ sockets: () => sockets }));
  let text = await m.render();
  assert.equal(
    line(text, 'outlook_presence_users{status="online"}'),
    'outlook_presence_users{status="online"} 4',
  );
  assert.equal(line(text, "outlook_presence_ws_connections"), "outlook_presence_ws_connections 7");
  assert.equal(line(text, "outlook_presence_change_seq"), "outlook_presence_change_seq 42");
  assert.equal(
    line(text, "outlook_presence_status_changes_total"),
    "outlook_presence_status_changes_total 0",
    "the sequence number is not a count of published changes (the first load numbers every user)",
  );
  m.statusChanges(3);
  m.statusChanges(2);
  text = await m.render();
  assert.equal(
    line(text, "outlook_presence_status_changes_total"),
    "outlook_presence_status_changes_total 5",
  );
  assert.equal(line(text, "outlook_presence_users_without_email"), "outlook_presence_users_without_email 3");
  assert.equal(
    line(text, "outlook_presence_last_successful_poll_age_seconds"),
    "outlook_presence_last_successful_poll_age_seconds +Inf",
    "never polled: infinitely stale",
  );
  sockets = 2;
  text = await m.render();
  assert.equal(line(text, "outlook_presence_ws_connections"), "outlook_presence_ws_connections 2");
});

test("the poll age counts from the last successful poll", async () => {
  const m = new GatewayMetrics({ defaultMetrics: false });
  m.observe(source({ health: () => ({ ...health, lastPollAt: 7_500 }) }));
  const text = await m.render();
  assert.equal(
    line(text, "outlook_presence_last_successful_poll_age_seconds"),
    "outlook_presence_last_successful_poll_age_seconds 2.5",
  );
});

test("Telemetry calls feed counters and histograms; a broadcast counts per socket", async () => {
  const m = new GatewayMetrics({ defaultMetrics: false });
  m.observe(source());
  m.wsBroadcast(10, 3, 300);
  m.wsBroadcast(0, 5, 500); // nobody connected: nothing sent
  m.wsClosed("slow_consumer", 0, "compat");
  m.httpRequest("/x", 200);
  m.upstreamRequest("status/ids", 200, 20);
  m.upstreamRequest("status/ids", "error", 10_000);
  m.pollCycle(true, 40, 3);
  m.pollCycle(false, 10, 3);
  const text = await m.render();
  assert.equal(
    line(text, "outlook_presence_ws_messages_sent_total"),
    "outlook_presence_ws_messages_sent_total 30",
  );
  assert.equal(
    line(text, "outlook_presence_ws_bytes_sent_total"),
    "outlook_presence_ws_bytes_sent_total 3000",
  );
  assert.equal(line(text, "outlook_presence_ws_broadcasts_total"), "outlook_presence_ws_broadcasts_total 1");
  assert.ok(
    line(
      text,
      'outlook_presence_ws_connections_closed_total{protocol="compat",reason="slow_consumer"}',
    )?.endsWith(" 1"),
  );
  assert.ok(line(text, 'outlook_presence_http_requests_total{route="/x",code="200"}')?.endsWith(" 1"));
  assert.ok(
    line(text, 'outlook_presence_upstream_requests_total{endpoint="status/ids",code="error"}')?.endsWith(
      " 1",
    ),
  );
  assert.ok(line(text, 'outlook_presence_poll_cycle_duration_seconds_count{result="ok"}')?.endsWith(" 1"));
  assert.ok(line(text, 'outlook_presence_poll_cycle_duration_seconds_count{result="error"}')?.endsWith(" 1"));
  assert.equal(
    line(text, "outlook_presence_poll_status_requests"),
    "outlook_presence_poll_status_requests 3",
  );
});

test("two gateways in one process keep separate registries", async () => {
  const a = new GatewayMetrics();
  const b = new GatewayMetrics();
  a.httpRequest("/a", 200);
  assert.match(await a.render(), /route="\/a"/);
  assert.doesNotMatch(await b.render(), /route="\/a"/);
});

test("composeTelemetry calls each one and drops NO_TELEMETRY", () => {
  const calls: string[] = [];
  const spy = (name: string): Telemetry => ({
    ...NO_TELEMETRY,
    wsConnected: (n) => void calls.push(`${name}:${n}`),
  });
  const a = spy("a");
  assert.equal(composeTelemetry(a, NO_TELEMETRY), a);
  assert.equal(composeTelemetry(NO_TELEMETRY), NO_TELEMETRY);
  composeTelemetry(a, spy("b")).wsConnected(5, "compat");
  assert.deepEqual(calls, ["a:5", "b:5"]);
});
