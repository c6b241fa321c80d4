import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import type { SettingSpec } from "../../src/config/schema.js";

const BASE = {
  MATTERMOST_URL: "https://chat.example.com/",
  MATTERMOST_TOKEN: "tok-abcdef",
  PRESENCE_SECRET: "sec-abcdef-0123456789",
};

function problems(argv: string[], env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(argv, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail("expected a ConfigError");
}

test("defaults from DESIGN.md apply when only the required keys are set", () => {
  const { config, warnings } = loadConfig([], BASE);
  assert.equal(config.mattermostUrl, "https://chat.example.com");
  assert.equal(config.pageSize, 100);
  assert.equal(config.pollIntervalMs, 3000);
  assert.equal(config.directoryRefreshMs, 60000);
  assert.equal(config.keepaliveMs, 20000);
  assert.equal(config.replayWindowMs, 120000);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.port, 8080);
  assert.equal(config.logLevel, "info");
  assert.equal(config.wsMaxBufferBytes, 1048576);
  assert.equal(config.redisUrl, undefined);
  assert.deepEqual(warnings, []);
});

test("every missing required key is named, with its flag and file form", () => {
  const p = problems([], {});
  assert.equal(p.length, 2);
  assert.match(p[0]!, /^MATTERMOST_URL \(--mattermost-url\): required/);
  assert.match(p[1]!, /^MATTERMOST_TOKEN \(--mattermost-token, or MATTERMOST_TOKEN_FILE\): required/);
});

test("without PRESENCE_SECRET the settings come from Mattermost, unless that is turned off", () => {
  const { PRESENCE_SECRET: _, ...noSecret } = BASE;
  assert.equal(loadConfig([], noSecret).config.settingsFromMattermost, true);
  assert.equal(loadConfig([], BASE).config.settingsFromMattermost, false);
  assert.equal(
    loadConfig([], { ...BASE, PRESENCE_SETTINGS_FROM_MATTERMOST: "true" }).config.settingsFromMattermost,
    true,
  );
  const p = problems([], { ...noSecret, PRESENCE_SETTINGS_FROM_MATTERMOST: "false" });
  assert.match(p[0]!, /^PRESENCE_SECRET .*required when PRESENCE_SETTINGS_FROM_MATTERMOST=false/);
  assert.match(
    problems([], { ...BASE, PRESENCE_SETTINGS_FROM_MATTERMOST: "yes" })[0]!,
    /true, false or auto/,
  );
});

test("an explicit PRESENCE_PAGE_SIZE is remembered, so Mattermost's page size does not override it", () => {
  assert.equal(loadConfig([], BASE).config.pageSizeExplicit, false);
  assert.equal(loadConfig([], { ...BASE, PRESENCE_PAGE_SIZE: "100" }).config.pageSizeExplicit, true);
  assert.equal(loadConfig(["--page-size", "7"], BASE).config.pageSizeExplicit, true);
});

test("each bad value gets one message naming its key and what is expected", () => {
  const p = problems([], {
    ...BASE,
    PRESENCE_POLL_INTERVAL_MS: "100",
    PRESENCE_PAGE_SIZE: "ten",
    PORT: "70000",
    LOG_LEVEL: "loud",
    MATTERMOST_URL: "chat.example.com",
  });
  assert.equal(p.length, 5);
  assert.ok(p.some((m) => /^PRESENCE_POLL_INTERVAL_MS .*at least 250, got "100"/.test(m)));
  assert.ok(p.some((m) => /^PRESENCE_PAGE_SIZE .*whole number/.test(m)));
  assert.ok(p.some((m) => /^PORT .*at most 65535/.test(m)));
  assert.ok(p.some((m) => /^LOG_LEVEL .*one of fatal, error/.test(m)));
  assert.ok(p.some((m) => /^MATTERMOST_URL .*absolute URL/.test(m)));
});

test("a bad secret's message never shows the value", () => {
  const p = problems([], { ...BASE, PRESENCE_SECRET: "has space inside" });
  assert.equal(p.length, 1);
  assert.doesNotMatch(p[0]!, /has space/);
});

test("flags win over environment variables", () => {
  const { config } = loadConfig(
    ["--port", "9000", "--poll-interval-ms", "500", "--secret", "flag-secret-0123456"],
    {
      ...BASE,
      PORT: "1234",
    },
  );
  assert.equal(config.port, 9000);
  assert.equal(config.pollIntervalMs, 500);
  assert.equal(config.secret, "flag-secret-0123456");
});

test("an unknown flag is an error naming it", () => {
  const p = problems(["--pol-interval", "5"], BASE);
  assert.match(p[0]!, /--pol-interval/);
});

test("secrets can come from *_FILE, trailing newline removed; value and file together is an error", () => {
  const dir = mkdtempSync(join(tmpdir(), "op-config-"));
  const file = join(dir, "token");
  writeFileSync(file, "file-token-123\n");
  const { config } = loadConfig([], { ...BASE, MATTERMOST_TOKEN: undefined, MATTERMOST_TOKEN_FILE: file });
  assert.equal(config.mattermostToken, "file-token-123");
  assert.equal(config.secretFiles.MATTERMOST_TOKEN, file);
  const p = problems([], { ...BASE, MATTERMOST_TOKEN_FILE: file });
  assert.match(p[0]!, /MATTERMOST_TOKEN.*either the value or MATTERMOST_TOKEN_FILE/);
  const missing = problems([], {
    ...BASE,
    PRESENCE_SECRET: undefined,
    PRESENCE_SECRET_FILE: join(dir, "nope"),
  });
  assert.match(missing[0]!, /^PRESENCE_SECRET_FILE: cannot read .*ENOENT/);
});

test("unknown PRESENCE_* variables are warned about, with a suggestion", () => {
  const { warnings } = loadConfig([], { ...BASE, PRESENCE_POLL_INTERVAL: "5000", PRESENCE_ZZZ: "1" });
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /PRESENCE_POLL_INTERVAL .*did you mean PRESENCE_POLL_INTERVAL_MS/);
  assert.doesNotMatch(warnings[1]!, /did you mean/);
});

test("the broker: memory by default, redis with REDIS_URL; bad names and a missing URL are errors", () => {
  assert.equal(loadConfig([], BASE).config.broker, "memory");
  const redis = loadConfig([], { ...BASE, REDIS_URL: "redis://127.0.0.1:6379" }).config;
  assert.equal(redis.broker, "redis");
  assert.equal(redis.leaderTtlMs, 10000);
  assert.match(
    problems([], { ...BASE, PRESENCE_BROKER: "redis" })[0]!,
    /^REDIS_URL .*required with PRESENCE_BROKER=redis/,
  );
  assert.match(
    problems([], { ...BASE, PRESENCE_BROKER: "kafka" })[0]!,
    /^PRESENCE_BROKER .*one of auto, memory, redis/,
  );
  assert.match(
    problems([], { ...BASE, REDIS_URL: "http://127.0.0.1:6379" })[0]!,
    /^REDIS_URL .*redis:\/\/127/,
  );
});

test("Redis Sentinel: REDIS_SENTINELS with REDIS_SENTINEL_NAME, or a redis+sentinel:// URL", () => {
  const listed = loadConfig([], {
    ...BASE,
    REDIS_SENTINELS: "10.0.0.1:26379, sentinel-b.internal:26380,[::1]:26381",
    REDIS_SENTINEL_NAME: "mymaster",
  }).config;
  assert.equal(listed.broker, "redis");
  assert.equal(listed.redisUrl, undefined);
  assert.deepEqual(listed.redisSentinels, [
    { host: "10.0.0.1", port: 26379 },
    { host: "sentinel-b.internal", port: 26380 },
    { host: "::1", port: 26381 },
  ]);
  assert.equal(listed.redisSentinelName, "mymaster");

  const url = loadConfig(
    ["--redis-url", "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/presence-1"],
    BASE,
  ).config;
  assert.equal(url.broker, "redis");
  assert.equal(url.redisUrl, undefined);
  assert.deepEqual(url.redisSentinels, [
    { host: "10.0.0.1", port: 26379 },
    { host: "10.0.0.2", port: 26379 },
  ]);
  assert.equal(url.redisSentinelName, "presence-1");

  const direct = loadConfig([], { ...BASE, REDIS_URL: "redis://127.0.0.1:6379" }).config;
  assert.equal(direct.redisSentinels, undefined);
  assert.equal(direct.redisSentinelName, undefined);
});

test("Redis Sentinel: each bad value is one problem naming its key", () => {
  const one = (env: NodeJS.ProcessEnv): string => {
    const found = problems([], { ...BASE, ...env });
    assert.equal(found.length, 1, found.join("\n"));
    return found[0]!;
  };
  for (const bad of ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "a:1,,b:2", "[nothost]:1", "a b:1"]) {
    assert.match(
      one({ REDIS_SENTINELS: bad, REDIS_SENTINEL_NAME: "m" }),
      /^REDIS_SENTINELS \(--redis-sentinels\): expected host:port pairs/,
      bad,
    );
  }
  assert.match(one({ REDIS_SENTINELS: "a:1" }), /^REDIS_SENTINEL_NAME .*required with REDIS_SENTINELS/);
  assert.match(one({ REDIS_SENTINEL_NAME: "m" }), /^REDIS_SENTINEL_NAME .*only with REDIS_SENTINELS/);
  assert.match(
    one({ REDIS_URL: "redis://r:6379", REDIS_SENTINELS: "a:1", REDIS_SENTINEL_NAME: "m" }),
    /^REDIS_SENTINELS .*either REDIS_URL .* or REDIS_SENTINELS/,
  );
  assert.match(
    one({ REDIS_URL: "redis+sentinel://a:1/m", REDIS_SENTINEL_NAME: "m" }),
    /^REDIS_SENTINELS .*REDIS_URL already names the sentinels/,
  );
  for (const [bad, why] of [
    ["redis+sentinel://a:1,b:2", /master's name/],
    ["redis+sentinel://a:1/", /master's name/],
    ["redis+sentinel://a:1/m/x", /master's name/],
    ["redis+sentinel://a,b:2/m", /not the address "a"/],
    ["redis+sentinel://:pw@a:1/m", /credentials .* not supported/],
  ] as const) {
    assert.match(one({ REDIS_URL: bad }), /^REDIS_URL \(--redis-url\): /, bad);
    assert.match(one({ REDIS_URL: bad }), why, bad);
  }
  assert.match(
    one({ PRESENCE_BROKER: "redis" }),
    /^REDIS_URL .*required with PRESENCE_BROKER=redis.*REDIS_SENTINELS/,
  );
});

test("the README's settings table lists every setting with its flag and default", async () => {
  const { readFile } = await import("node:fs/promises");
  const { SETTINGS, flagName } = await import("../../src/config/schema.js");
  const readme = await readFile(new URL("../../../README.md", import.meta.url), "utf8");
  for (const s of SETTINGS as readonly SettingSpec[]) {
    const cells = readme
      .split("\n")
      .map((l) => l.split("|").map((c) => c.trim()))
      .find((c) => c[1] === `\`${s.env}\``);
    assert.ok(cells, `README has no row for ${s.env}`);
    assert.equal(cells[2], `\`--${flagName(s.env)}\``, `README row of ${s.env}: flag`);
    assert.equal(
      cells[3],
      s.default ?? (s.required ? "required" : "unset"),
      `README row of ${s.env}: default`,
    );
  }
});

test("trusted proxies: none by default, addresses and CIDRs; a bad entry is named", () => {
  assert.deepEqual(loadConfig([], BASE).config.trustedProxies, []);
  assert.deepEqual(
    loadConfig([], { ...BASE, PRESENCE_TRUSTED_PROXIES: " 10.0.0.0/8, 192.168.1.7 ,fd00::/8" }).config
      .trustedProxies,
    ["10.0.0.0/8", "192.168.1.7", "fd00::/8"],
  );
  assert.deepEqual(loadConfig(["--trusted-proxies", "none"], BASE).config.trustedProxies, []);
  for (const bad of ["10.0.0.0/33", "proxy.example.com", "10.0.0.1/8/8", "::1/129", "10.0.0.0/"]) {
    const [message, ...rest] = problems([], { ...BASE, PRESENCE_TRUSTED_PROXIES: `127.0.0.1,${bad}` });
    assert.deepEqual(rest, []);
    assert.match(message!, /^PRESENCE_TRUSTED_PROXIES \(--trusted-proxies\): expected IP addresses or CIDR/);
    assert.ok(message!.includes(JSON.stringify(bad)), message);
  }
});
