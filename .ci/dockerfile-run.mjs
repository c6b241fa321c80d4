// No container engine runs in CI, so this runs the Dockerfile's own steps outside one: every
// COPY and RUN line of every stage, in order, in a clean directory per stage (a stage's "/" is a
// temp directory; WORKDIR and absolute COPY paths are mapped into it; npm's global prefix is the
// stage's usr/local, as in the node image). Then the last stage is started as ENTRYPOINT + CMD
// would start it, with its ENV, against the simulator (from the installed package), the
// HEALTHCHECK command is run as the health check, and the process is stopped with STOPSIGNAL.
// What this does not test: the base image, USER, the image build itself.
// Usage: node .ci/dockerfile-run.mjs [Dockerfile] (from the repository root, the build context).
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { checkGateway, freePort, run } from "./smoke.mjs";

const context = process.cwd();
const dockerfile = resolve(process.argv[2] ?? "Dockerfile");

/** Instructions with continuation lines joined; comments and blank lines dropped. */
function instructions(text) {
  const out = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (pending === "" && /^\s*(#|$)/.test(line)) continue;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^(\w+)\s+(.*)$/.exec(full);
    if (!m) throw new Error(`cannot read Dockerfile line: ${full}`);
    out.push({ op: m[1].toUpperCase(), rest: m[2] });
  }
  return out;
}

const args = {};
const expand = (s) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? "");
const execForm = (s) => {
  if (!s.startsWith("[")) throw new Error(`only the exec form (JSON array) is supported here: ${s}`);
  return JSON.parse(s);
};

const root = mkdtempSync(join(tmpdir(), "op-dockerfile-"));
const stages = [];
let stage;
const inStage = (s, p) => join(s.root, isAbsolute(p) ? p : join(s.workdir, p));

try {
  for (const { op, rest } of instructions(readFileSync(dockerfile, "utf8"))) {
    switch (op) {
      case "ARG": {
        const [name, ...value] = rest.split("=");
        if (!(name in args)) args[name] = value.join("=");
        break;
      }
      case "FROM": {
        const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
        const dir = join(root, `stage${stages.length}`);
        mkdirSync(dir);
        stage = {
          name: m[2],
          image: expand(m[1]),
          root: dir,
          workdir: "/",
          env: {},
          cmd: [],
          entrypoint: [],
        };
        stages.push(stage);
        console.log(`-- FROM ${stage.image}${stage.name ? ` AS ${stage.name}` : ""} (here: ${dir})`);
        break;
      }
      case "WORKDIR":
        stage.workdir = isAbsolute(rest) ? rest : join(stage.workdir, rest);
        mkdirSync(join(stage.root, stage.workdir), { recursive: true });
        break;
      case "ENV":
        for (const m of rest.matchAll(/(\w+)=("[^"]*"|\S+)/g)) stage.env[m[1]] = m[2].replace(/^"|"$/g, "");
        break;
      case "COPY": {
        const words = rest.split(/\s+/);
        const from = words[0].startsWith("--from=") ? words.shift().slice(7) : undefined;
        if (words.some((w) => w.startsWith("--"))) throw new Error(`unsupported COPY flag: ${rest}`);
        const dest = inStage(stage, words.pop());
        const src = from === undefined ? undefined : stages.find((s) => s.name === from);
        if (from !== undefined && !src) throw new Error(`COPY --from=${from}: no such stage`);
        for (const w of words) {
          const path = src ? join(src.root, isAbsolute(w) ? w : join(src.workdir, w)) : join(context, w);
          const target = dest.endsWith("/") || words.length > 1 ? join(dest, w.split("/").pop()) : dest;
          mkdirSync(dirname(target), { recursive: true });
          cpSync(path, target, { recursive: true });
        }
        console.log(`-- COPY ${rest}`);
        break;
      }
      case "RUN": {
        if (rest.startsWith("[")) throw new Error("RUN in exec form is not supported here");
        console.log(`-- RUN ${rest}`);
        execFileSync("sh", ["-ec", rest], {
          cwd: join(stage.root, stage.workdir),
          stdio: ["ignore", "inherit", "inherit"],
          env: {
            ...process.env,
            ...stage.env,
            npm_config_prefix: join(stage.root, "usr/local"),
            PATH: `${join(stage.root, "usr/local/bin")}:${process.env.PATH}`,
          },
        });
        break;
      }
      case "USER":
      case "EXPOSE":
      case "LABEL":
        break;
      case "STOPSIGNAL":
        stage.stopSignal = rest;
        break;
      case "HEALTHCHECK":
        stage.healthcheck = execForm(rest.replace(/^(--\S+\s+)*CMD\s+/, ""));
        break;
      case "ENTRYPOINT":
        stage.entrypoint = execForm(rest);
        stage.cmd = [];
        break;
      case "CMD":
        stage.cmd = execForm(rest);
        break;
      default:
        throw new Error(`Dockerfile instruction ${op} is not supported by ${process.argv[1]}`);
    }
  }

  const final = stages.at(-1);
  const [program, ...argv] = [...final.entrypoint, ...final.cmd];
  const bin = join(final.root, "usr/local/bin");
  const PATH = `${bin}:${process.env.PATH}`;
  const token = `ci-token-${process.pid}`;
  const secret = `ci-dockerfile-secret-${process.pid}`;
  const sim = run(
    join(bin, "outlook-presence"),
    ["simulate", "--port", "0", "--users", "50", "--token", token],
    {
      env: { PATH },
    },
  );
  try {
    const [, mmUrl] = await sim.waitFor(/MATTERMOST_URL=(\S+)/);
    const port = await freePort();
    // The image's ENV, then what a deployment sets; HOST on loopback here (the image says 0.0.0.0).
    const env = {
      PATH,
      ...final.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      MATTERMOST_URL: mmUrl,
      MATTERMOST_TOKEN: token,
      PRESENCE_SECRET: secret,
    };
    console.log(`-- start: ${[program, ...argv].join(" ")} (cwd ${final.workdir}, PORT=${port})`);
    const gw = run(program, argv, { cwd: join(final.root, final.workdir), env });
    try {
      await gw.waitFor(/"event":"listening"/);
      await checkGateway(`http://127.0.0.1:${port}`, secret);
      if (!final.healthcheck) throw new Error("the Dockerfile has no HEALTHCHECK");
      const [hc, ...hcArgs] = final.healthcheck;
      execFileSync(hc, hcArgs, { env, stdio: "inherit", timeout: 10_000 });
      console.log(`   HEALTHCHECK ${final.healthcheck.join(" ")}: exit 0`);
    } finally {
      await gw.stop(final.stopSignal ?? "SIGTERM");
    }
    console.log(`   stopped with ${final.stopSignal ?? "SIGTERM"}: exit 0`);
  } finally {
    await sim.stop("SIGTERM");
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
