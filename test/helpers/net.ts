import { once } from "node:events";
import { connect, createServer } from "node:net";

/** A loopback port free right now (for a child process that cannot listen on port 0). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  srv.close();
  await once(srv, "close");
  return port;
}

/**
 * A GET with the request line sent exactly as written (fetch would resolve dot segments and
 * backslashes itself); resolves with the whole answer, headers included.
 */
export function rawGet(port: number, target: string, host = "x"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
    socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
}
