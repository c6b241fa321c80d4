/**
 * What deploy/ hands to Prometheus, Grafana and Kubernetes, checked against the real gateway:
 * every metric an alert rule or a dashboard panel names is in a real /metrics answer of the CLI
 * (against the simulator); the Helm chart's PrometheusRule carries the same rules file; and the
 * chart, rendered with the real `helm` binary, has the kinds, probes, secret files, grace period
 * and security settings this gateway needs, and refuses replicas without Redis. Needs `helm`
 * (`.ci/run` installs it); skipped without it outside CI. That every expression parses is checked
 * by Prometheus's own parser in `.ci/run` (.ci/promql-check).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { SETTINGS } from "../../src/config/schema.js";
import { MattermostSimulator } from "../../src/simulator/index.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { waitUntil } from "../helpers/in-process.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RULES = join(ROOT, "deploy/prometheus/outlook-presence-rules.yaml");
const DASHBOARD = join(ROOT, "deploy/grafana/outlook-presence.json");
const CHART = join(ROOT, "deploy/helm/outlook-presence");
const TOKEN = `tok-${process.pid}-deploy`;
const SECRET = `sec-${process.pid}-deploy-chart`;

// js-yaml (a dev dependency) reads the chart and the rules.
const yaml = createRequire(import.meta.url)("js-yaml") as {
  load(s: string): unknown;
  loadAll(s: string): unknown[];
};

type Doc = Record<string, unknown>;
const rulesDoc = () => yaml.load(readFileSync(RULES, "utf8")) as { groups: { rules: Doc[] }[] };

/** Every PromQL expression of the rules file and of the dashboard's panels. */
function expressions(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const g of rulesDoc().groups)
    for (const r of g.rules) out.push({ where: `rule ${String(r.alert)}`, expr: String(r.expr) });
  const walk = (v: unknown, where: string): void => {
    if (Array.isArray(v)) v.forEach((x) => walk(x, where));
    else if (v && typeof v === "object") {
      const o = v as Doc;
      const here = typeof o.title === "string" ? `panel "${o.title}"` : where;
      for (const [k, x] of Object.entries(o)) {
        if (k === "expr" && typeof x === "string") out.push({ where: here, expr: x });
        else walk(x, here);
      }
    }
  };
  walk(JSON.parse(readFileSync(DASHBOARD, "utf8")), "dashboard");
  return out;
}

/**
 * Metric names in an expression: identifiers outside strings, label lists and durations that are
 * not PromQL keywords or functions. Only this service's and Node's namespaces are expected.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\{[^}]*\}/g, "{}") // matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "") // label lists
    .replace(/\[[^\]]*\]/g, ""); // ranges
  return [...bare.matchAll(/\b(outlook_presence_\w+|process_\w+|nodejs_\w+)\b/g)].map((m) => m[1]!);
}

describe("deploy/: alert rules and dashboard against a real /metrics answer", () => {
  let sim: MattermostSimulator;
  let gw: GatewayProcess;

  before(async () => {
    sim = new MattermostSimulator({ token: TOKEN, users: 30, seed: 31 });
    await sim.start(0, "127.0.0.1");
    gw = await GatewayProcess.start({
      MATTERMOST_URL: sim.url,
      MATTERMOST_TOKEN: TOKEN,
      PRESENCE_SECRET: SECRET,
    });
    await waitUntil(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 15_000, "ready");
  });

  after(async () => {
    await gw?.stop();
    await sim?.stop();
  });

  test("every metric a rule or panel names is in the gateway's /metrics", async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const exists = (name: string): boolean => {
      if (types.has(name)) return true;
      const base = /^(.*)_(bucket|sum|count)$/.exec(name);
      return base !== null && ["histogram", "summary"].includes(types.get(base[1]!) ?? "");
    };
    const exprs = expressions();
    assert.ok(exprs.length >= 20, `${exprs.length} expressions found`);
    const missing: string[] = [];
    const named = new Set<string>();
    for (const { where, expr } of exprs) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${where}: no metric found in ${expr}`);
      for (const n of names) {
        named.add(n);
        if (!exists(n)) missing.push(`${where}: ${n}`);
      }
    }
    assert.deepEqual(missing, []);
    // The check sees what it should: a histogram series, a default metric, a gauge.
    for (const n of [
      "outlook_presence_upstream_request_duration_seconds_bucket",
      "nodejs_eventloop_lag_p99_seconds",
      "process_cpu_seconds_total",
      "outlook_presence_ready",
    ])
      assert.ok(named.has(n), `${n} is named somewhere`);
  });

  test("the label values rules and panels select on are values the gateway uses", () => {
    const code = readdirSync(join(ROOT, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => readFileSync(join(ROOT, "src", f), "utf8"))
      .join("\n");
    for (const { where, expr } of expressions()) {
      for (const m of expr.matchAll(/\b(code|reason|status|result)="([^"$]+)"/g)) {
        assert.ok(code.includes(`"${m[2]}"`), `${where}: ${m[1]}="${m[2]}" is not a value the gateway sets`);
      }
    }
  });

  test("the metric names in this check are found as PromQL reads them", () => {
    assert.deepEqual(
      metricNames(
        'max by (job) (outlook_presence_a{code="nodejs_x"}[5m] and on (job, instance) process_b) > 0 * nodejs_c',
      ),
      ["outlook_presence_a", "process_b", "nodejs_c"],
    );
  });
});

test("the Helm chart's PrometheusRule carries deploy/prometheus's rules file, unchanged", () => {
  assert.equal(readFileSync(join(CHART, "files/prometheus-rules.yaml"), "utf8"), readFileSync(RULES, "utf8"));
});

test("docker-compose.yml: two replicas over the Redis it starts, secrets as files, settings the gateway reads", () => {
  const compose = yaml.load(readFileSync(join(ROOT, "docker-compose.yml"), "utf8")) as Doc;
  const gw = get(compose, "services.gateway") as Doc;
  assert.equal(get(gw, "deploy.replicas"), 2);
  assert.ok(get(compose, "services.redis"));
  const env = gw.environment as Record<string, string>;
  assert.equal(env.REDIS_URL, "redis://redis:6379");
  const known = new Set(SETTINGS.flatMap((s) => (s.kind === "secret" ? [s.env, `${s.env}_FILE`] : [s.env])));
  for (const name of Object.keys(env)) assert.ok(known.has(name), `${name} is a gateway setting`);
  const files: [string, string][] = [
    ["MATTERMOST_TOKEN_FILE", "mattermost_token"],
    ["PRESENCE_SECRET_FILE", "presence_secret"],
  ];
  for (const [name, secret] of files) {
    assert.equal(env[name], `/run/secrets/${secret}`);
    assert.ok((gw.secrets as string[]).includes(secret) && get(compose, `secrets.${secret}.file`));
  }
  assert.equal(gw.read_only, true);
  assert.equal(gw.build, ".", "built from the Dockerfile");
});

const HELM = [process.env.HELM, join(homedir(), "go/bin/helm"), "/usr/local/bin/helm", "/usr/bin/helm"].find(
  (p): p is string => p !== undefined && existsSync(p),
);

function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(HELM!, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function render(valuesFile: string, ...sets: string[]): Promise<Doc[]> {
  const r = await helm([
    "template",
    "op",
    CHART,
    "--namespace",
    "presence",
    "-f",
    join(CHART, "ci", valuesFile),
    ...sets.flatMap((s) => ["--set", s]),
  ]);
  assert.equal(r.code, 0, r.stderr);
  return yaml.loadAll(r.stdout).filter((d): d is Doc => d !== null && typeof d === "object");
}

const ofKind = (docs: Doc[], kind: string): Doc[] => docs.filter((d) => d.kind === kind);
const get = (o: unknown, path: string): unknown =>
  path.split(".").reduce<unknown>((x, k) => (x as Record<string, unknown> | undefined)?.[k], o);

interface Container {
  env: { name: string; value?: string; valueFrom?: unknown }[];
  readinessProbe: Doc;
  livenessProbe: Doc;
  securityContext: Doc;
  volumeMounts: { name: string; mountPath: string; subPath?: string }[];
}

describe(
  "the Helm chart, rendered by helm",
  {
    skip:
      !HELM && !process.env.CI
        ? "helm is not installed (GOFLAGS= go install helm.sh/helm/v3/cmd/helm@v3.22.0)"
        : false,
  },
  () => {
    before(() => assert.ok(HELM, "helm is missing; CI installs it (.ci/run)"));

    test("defaults: Deployment, Service and PodDisruptionBudget; monitoring objects only when asked", async () => {
      const docs = await render("default-values.yaml");
      assert.deepEqual(docs.map((d) => d.kind).sort(), ["Deployment", "PodDisruptionBudget", "Service"]);
      const all = await render("replicas-values.yaml");
      assert.deepEqual(all.map((d) => d.kind).sort(), [
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
      ]);
      const rule = ofKind(all, "PrometheusRule")[0]!;
      assert.deepEqual(rule.spec, rulesDoc(), "PrometheusRule spec is the rules file");
      const sm = ofKind(all, "ServiceMonitor")[0]!;
      assert.equal(get(sm, "spec.endpoints.0.path"), "/metrics");
      assert.deepEqual(get(sm, "spec.endpoints.0.authorization.credentials"), {
        name: "outlook-presence",
        key: "metrics-token",
      });
    });

    test("the pod: probes, secrets as watched files, grace above the shutdown grace, locked down", async () => {
      const docs = await render("replicas-values.yaml");
      const dep = ofKind(docs, "Deployment")[0]!;
      const pod = get(dep, "spec.template.spec") as Doc;
      const c = (pod.containers as Container[])[0]!;
      assert.equal(get(dep, "spec.replicas"), 3);
      assert.equal(get(c.readinessProbe, "httpGet.path"), "/readyz");
      assert.equal(get(c.livenessProbe, "httpGet.path"), "/healthz");
      const env = new Map(c.env.map((e) => [e.name, e.value]));
      // Every variable is one the gateway reads (a typo would be silently ignored by Kubernetes).
      const known = new Set(
        SETTINGS.flatMap((s) => (s.kind === "secret" ? [s.env, `${s.env}_FILE`] : [s.env])),
      );
      for (const name of env.keys()) assert.ok(known.has(name), `${name} is a gateway setting`);
      assert.equal(env.get("REDIS_URL"), "redis://redis.outlook-presence.svc:6379");
      assert.equal(env.has("MATTERMOST_TOKEN"), false, "the token is never an env value");
      assert.equal(env.has("PRESENCE_SECRET"), false);
      // The files sit in the mounted Secret volume, mounted whole (a subPath would not rotate).
      const mount = c.volumeMounts.find((m) => m.mountPath === "/etc/outlook-presence")!;
      assert.ok(mount && mount.subPath === undefined);
      const volume = (pod.volumes as Doc[]).find((v) => v.name === mount.name)!;
      assert.equal(get(volume, "secret.secretName"), "outlook-presence");
      const files = (get(volume, "secret.items") as { key: string; path: string }[]).map(
        (i) => `/etc/outlook-presence/${i.path}`,
      );
      for (const v of [
        "MATTERMOST_TOKEN_FILE",
        "PRESENCE_SECRET_FILE",
        "PRESENCE_METRICS_TOKEN_FILE",
        "PRESENCE_ADMIN_TOKEN_FILE",
      ])
        assert.ok(files.includes(env.get(v)!), `${v}=${env.get(v)} is a mounted file`);
      const graceMs = Number(env.get("PRESENCE_SHUTDOWN_GRACE_MS"));
      assert.ok(graceMs > 0);
      assert.ok((pod.terminationGracePeriodSeconds as number) * 1000 > graceMs, "Kubernetes waits longer");
      assert.equal(get(pod, "securityContext.runAsNonRoot"), true);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(get(c.securityContext, "capabilities.drop"), ["ALL"]);
    });

    test("refused: several replicas without Redis, a grace period Kubernetes would cut short", async () => {
      const base = ["template", "op", CHART, "-f", join(CHART, "ci/default-values.yaml")];
      const noRedis = await helm([...base, "--set", "replicaCount=2"]);
      assert.notEqual(noRedis.code, 0);
      assert.match(noRedis.stderr, /replicaCount is 2 but no Redis is set/);
      assert.equal(
        (await helm([...base, "--set", "replicaCount=2", "--set", "redis.url=redis://r:6379"])).code,
        0,
      );
      const short = await helm([...base, "--set", "terminationGracePeriodSeconds=10"]);
      assert.notEqual(short.code, 0);
      assert.match(
        short.stderr,
        /terminationGracePeriodSeconds \(10\) must be above shutdownGraceSeconds \(10\)/,
      );
      const noUrl = await helm(["template", "op", CHART, "--set", "secret.name=s"]);
      assert.match(noUrl.stderr, /mattermost\.url is required/);
    });

    test("helm lint passes with the CI values", async () => {
      for (const f of ["default-values.yaml", "replicas-values.yaml"]) {
        const r = await helm(["lint", CHART, "-f", join(CHART, "ci", f)]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
      }
    });
  },
);
