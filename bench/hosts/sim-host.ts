/**
 * The Mattermost simulator in its own process, driven over IPC by the benchmark:
 *   {cmd:"change", count}  flips `count` distinct users (online ↔ away), as Mattermost would see them
 *   {cmd:"users"}          every active generated user with email and status (for baseline servers)
 *   {cmd:"stats"}          request counters; {cmd:"resetStats"}
 * Args: <users>. Env: BENCH_TOKEN.
 */
import { MattermostSimulator, type SimStatus } from "../../src/simulator/index.js";

const users = Number(process.argv[2] ?? "1000");
const sim = new MattermostSimulator({ token: process.env.BENCH_TOKEN ?? "benchtoken", users, seed: 7 });
const url = await sim.start(0, "127.0.0.1");
const ids = sim
  .listUsers()
  .filter((u) => !u.is_bot && u.delete_at === 0)
  .map((u) => u.id);
let cursor = 0;

const send = (m: Record<string, unknown>): void => void process.send!(m);

process.on("message", (m: { cmd: string; count?: number }) => {
  switch (m.cmd) {
    case "change": {
      const n = Math.min(m.count ?? 1, ids.length);
      for (let i = 0; i < n; i++) {
        const id = ids[cursor++ % ids.length]!;
        const now: SimStatus | undefined = sim.getStatus(id);
        sim.setStatus(id, now === "online" ? "away" : "online");
      }
      send({ type: "changed", count: n });
      break;
    }
    case "users":
      send({
        type: "users",
        users: sim
          .listUsers()
          .filter((u) => u.delete_at === 0)
          .map((u) => ({ id: u.id, username: u.username, email: u.email, status: sim.getStatus(u.id) })),
      });
      break;
    case "stats":
      send({ type: "stats", stats: JSON.parse(JSON.stringify(sim.stats)) as unknown });
      break;
    case "resetStats":
      sim.resetStats();
      send({ type: "statsReset" });
      break;
  }
});
process.on("SIGTERM", () => void sim.stop().then(() => process.exit(0)));
process.on("disconnect", () => void sim.stop().then(() => process.exit(0)));
send({ type: "ready", url, users: ids.length });
