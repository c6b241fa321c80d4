/**
 * Baseline servers for the `/status` scenarios, each plain node:http in its own process:
 *   ceiling  answers every request with one constant buffer and header set (sent over IPC with
 *            `{cmd:"load", body, headers}`): the most node:http can do for a response of that size
 *   naive    builds the page on every request from the user list (`{cmd:"load", users, pageSize}`),
 *            with JSON.stringify, as a server without pre-built pages would
 * Args: <mode>. Both check `secret` and `page` like the gateway (plain comparison).
 */
import { createServer } from "node:http";

interface User {
  id: string;
  email: string;
  status: string;
}

const mode = process.argv[2];
const send = (m: Record<string, unknown>): void => void process.send!(m);
const SECRET = process.env.BENCH_SECRET ?? "benchsecret";
let body = Buffer.from("[]");
let headers: Record<string, string> = {};
let users: User[] = [];
let pageSize = 100;

const server = createServer((req, res) => {
  if (mode === "ceiling") {
    res.writeHead(200, { ...headers, "Content-Length": body.length });
    res.end(body);
    return;
  }
  const url = new URL(req.url ?? "/", "http://x");
  if (url.searchParams.get("secret") !== SECRET) {
    res.writeHead(403).end();
    return;
  }
  const raw = url.searchParams.get("page") ?? "0";
  if (!/^\d+$/.test(raw)) {
    res.writeHead(400).end();
    return;
  }
  const start = Number(raw) * pageSize;
  const page = users
    .slice(start, start + pageSize)
    .map((u) => ({ user_id: u.id, email: u.email, status: u.status }));
  const json = JSON.stringify(page);
  res.writeHead(200, {
    "Content-Type": "application/json",
    "Cache-Control": "no-cache",
    "Content-Length": Buffer.byteLength(json),
  });
  res.end(json);
});
server.keepAliveTimeout = 60_000;

process.on(
  "message",
  (m: {
    cmd: string;
    body?: Buffer;
    headers?: Record<string, string>;
    users?: User[];
    pageSize?: number;
  }) => {
    if (m.cmd !== "load") return;
    if (m.body) body = Buffer.from(m.body);
    if (m.headers) headers = m.headers;
    if (m.users) users = m.users;
    if (m.pageSize) pageSize = m.pageSize;
    send({ type: "loaded" });
  },
);
server.listen(0, "127.0.0.1", () => {
  const addr = server.address() as { port: number };
  send({ type: "ready", url: `http://127.0.0.1:${addr.port}` });
});
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("disconnect", stop);
