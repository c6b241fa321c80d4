import type { MattermostSimulator, SimStatus } from "../../src/simulator/index.js";
import { STATUSES } from "./in-process.js";
import type { FakeProvider } from "./provider.js";

/**
 * A later observation that closes a "nothing else arrived" check: moves `user` to another status
 * in the simulator, runs `tell` with it (a hint, when the gateway's polls are too far apart to wait
 * for), and resolves once `p` has received the change. The gateway writes a socket's messages in
 * order, so everything it wrote to `p` before the change has arrived by then: the replay written
 * on connect, or a message the test says must not come.
 */
export async function markerChange(
  sim: MattermostSimulator,
  p: FakeProvider,
  user: { id: string; email: string },
  tell?: (status: SimStatus) => Promise<unknown>,
  timeoutMs = 10_000,
): Promise<void> {
  const from = p.messages.length;
  const held = sim.getStatus(user.id);
  const next = STATUSES.find((s) => s !== held && s !== p.store.get(user.email))!;
  sim.setStatus(user.id, next);
  await tell?.(next);
  await p.until(
    (pp) => pp.messages.slice(from).some((m) => m.email === user.email && m.status === next),
    timeoutMs,
    `the marker change ${user.email} → ${next}`,
  );
}
