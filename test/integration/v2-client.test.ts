import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import type * as ClientModule from "../../src/client/index.js";
import { MattermostSimulator, type SimUser } from "../../src/simulator/index.js";
import { CLI, runCli } from "../helpers/gateway-process.js";
import {
  STATUSES,
  expectedStatuses,
  startInProcess,
  waitUntil,
  type InProcessGateway,
} from "../helpers/in-process.js";

const TOKEN = `v2-client-token-${process.pid}`;
const SECRET = `v2-client-secret-${process.pid}`;

describe("PresenceClient and `outlook-presence watch` against a real gateway", () => {
  let sim: MattermostSimulator;
  let gw: InProcessGateway;
  let people: SimUser[];
  let Client: typeof ClientModule;
  const flip = async (users: readonly SimUser[]): Promise<void> => {
    const target = gw.gateway.snapshot.lastSeq + users.length;
    for (const u of users) {
      const from = sim.getStatus(u.id) ?? "offline";
      sim.setStatus(u.id, STATUSES[(STATUSES.indexOf(from) + 1) % STATUSES.length]!);
    }
    await waitUntil(() => gw.gateway.snapshot.lastSeq >= target, 10_000, "the gateway to see the changes");
  };

  before(async () => {
    // Imported by the package's own name, as users will: checks the "exports" map.
    const name = "mattermost-outlook-presence/client";
    Client = (await import(name)) as typeof ClientModule;
    sim = new MattermostSimulator({ token: TOKEN, users: 200, seed: 3 });
    await sim.start(0, "127.0.0.1");
    gw = await startInProcess(sim, TOKEN, SECRET, { PRESENCE_POLL_INTERVAL_MS: "250", LOG_LEVEL: "info" });
    await waitUntil(() => gw.gateway.snapshot.ready, 10_000, "first snapshot");
    people = sim.listUsers().filter((u) => u.delete_at === 0 && !u.is_bot && u.email);
  });

  after(async () => {
    await gw?.stop();
    await sim?.stop();
  });

  test("fetches a snapshot, streams, and loses nothing across forced disconnects", async () => {
    const client = new Client.PresenceClient({
      url: gw.url,
      secret: SECRET,
      minBackoffMs: 20,
      maxBackoffMs: 200,
    });
    const snapshots: number[] = [];
    const readies: { seq: number; resumed: boolean }[] = [];
    let received = 0;
    client.on("snapshot", (m) => snapshots.push(m.seq));
    client.on("ready", (m) => readies.push(m));
    client.on("changes", (changes) => (received += changes.length));
    try {
      const fetched = await client.fetchPresence();
      assert.equal(fetched.users.length, gw.gateway.snapshot.visible().length);
      client.start();
      await waitUntil(() => client.isLive, 5000, "the client to be live");
      const startSeq = client.lastSeq!;
      for (let round = 0; round < 4; round++) {
        gw.gateway.v2.stream.terminateAll(); // the network drops every stream socket
        await flip(people.slice(round * 40, round * 40 + 60));
        await waitUntil(() => client.isLive, 5000, "the client to reconnect");
      }
      await waitUntil(() => client.lastSeq === gw.gateway.snapshot.lastSeq, 5000, "the client to catch up");
      assert.equal(snapshots.length, 1, "resumed every time: no second snapshot");
      assert.ok(readies.length >= 5);
      assert.ok(
        readies.slice(1).every((r) => r.resumed),
        "every reconnect resumed from the last seq",
      );
      assert.equal(received, client.lastSeq! - startSeq, "every change once: none lost, none twice");
      const want = expectedStatuses(sim);
      for (const u of client.users.values()) assert.equal(u.status, want.get(u.email), u.email);
      assert.equal(client.users.size, want.size);
    } finally {
      await client.stop();
    }
  });

  test(
    "a saved position resumes a new client; one of another epoch, or malformed, starts with a snapshot",
    { timeout: 20_000 },
    async () => {
      const first = new Client.PresenceClient({ url: gw.url, secret: SECRET });
      first.start();
      await waitUntil(() => first.isLive, 5000, "the first client to be live");
      const saved = first.position!;
      await first.stop();
      assert.match(saved, new RegExp(`^${gw.gateway.snapshot.epoch}:\\d+$`));
      await flip(people.slice(0, 5));
      const readyOf = async (since: string) => {
        const c = new Client.PresenceClient({ url: gw.url, secret: SECRET, since });
        const ready = new Promise<ClientModule.PresenceClientEvents["ready"][0]>((r) => c.once("ready", r));
        c.start();
        try {
          return await ready;
        } finally {
          await c.stop();
        }
      };
      const resumed = await readyOf(saved);
      assert.equal(resumed.resumed, true);
      assert.equal(resumed.epoch, gw.gateway.snapshot.epoch);
      assert.equal((await readyOf(`other:${saved.split(":")[1]}`)).resumed, false);
      assert.equal((await readyOf("not a position")).resumed, false);
    },
  );

  test("a subscription: only those people; a refused secret stops the client with an error", async () => {
    const [a, b] = people.slice(100, 102) as [SimUser, SimUser];
    const client = new Client.PresenceClient({ url: gw.url, secret: SECRET, emails: [a.email] });
    const seen: string[] = [];
    client.on("changes", (cs) => seen.push(...cs.map((c) => c.email)));
    try {
      client.start();
      await waitUntil(() => client.isLive, 5000, "live");
      assert.deepEqual(
        [...client.users.values()].map((u) => u.email),
        [a.email],
      );
      await flip([a, b]);
      await flip([people[150]!]);
      await waitUntil(() => seen.length > 0, 5000, "a's change");
      assert.deepEqual(seen, [a.email]);
    } finally {
      await client.stop();
    }

    const bad = new Client.PresenceClient({ url: gw.url, secret: "wrong", minBackoffMs: 10 });
    const errors: Error[] = [];
    bad.on("error", (e) => errors.push(e));
    // Not events.once: it rejects on the "error" event this test expects.
    const stopped = new Promise<void>((resolve) => bad.once("stopped", () => resolve()));
    bad.start();
    await stopped;
    assert.ok(errors[0] instanceof Client.PresenceApiError);
    assert.equal((errors[0] as ClientModule.PresenceApiError).status, 401);
    await assert.rejects(
      bad.fetchPresence(),
      (e: unknown) => e instanceof Client.PresenceApiError && e.status === 401,
    );
  });

  test("`watch` prints a line log when piped, and stops on SIGTERM with exit code 0", async () => {
    const [a, b] = people.slice(120, 122) as [SimUser, SimUser];
    const child = spawn(
      process.execPath,
      [CLI, "watch", "--url", gw.url, "--email", `${a.email},${b.email}`, "--duration-ms", "30000"],
      { env: { PATH: process.env.PATH ?? "", PRESENCE_SECRET: SECRET }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, "exit");
    try {
      await waitUntil(() => /live at seq/.test(stderr), 10_000, `watch to be live (${stderr})`);
      assert.match(stdout, /^\S+ snapshot seq=\d+ users=2 online=\d+ away=\d+ dnd=\d+ offline=\d+$/m);
      assert.ok(!stdout.includes("\u001b["), "no ANSI codes when not a terminal");
      await flip([a]);
      const status = sim.getStatus(a.id);
      const line = new RegExp(`^\\S+Z ${a.email.replace(/[.]/g, "\\.")} ${status} seq=\\d+$`, "m");
      await waitUntil(() => line.test(stdout), 5000, `a change line in: ${stdout}`);
    } finally {
      child.kill("SIGTERM");
    }
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0, stderr);
  });

  test("`watch` exit codes: 2 for bad usage, 1 for a refused secret; --duration-ms bounds it", async () => {
    const usage = await runCli(["watch", "--secret", "x"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--url is required/);
    const refused = await runCli(["watch", "--url", gw.url, "--secret", "wrong", "--duration-ms", "10000"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /refused the secret/);
    const timed = await runCli(["watch", "--url", gw.url, "--secret", SECRET, "--duration-ms", "300"]);
    assert.equal(timed.code, 0, timed.stderr);
    const help = await runCli(["--help"]);
    assert.match(help.stdout, /^ {2}watch /m);
  });
});
