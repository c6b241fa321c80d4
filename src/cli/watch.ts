import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { PresenceClient, type PresenceEntry } from "../client/index.js";

const USAGE = `Usage: outlook-presence watch --url URL [--secret S | --secret-file F] [--email E ...] [--duration-ms MS]

Shows live presence from a gateway's API v2: a table that updates in place on a terminal, a line
per change otherwise (piped or redirected). Stops on Ctrl-C / SIGTERM, or after --duration-ms.

  --url URL          the gateway, e.g. http://127.0.0.1:8080
  --secret S         the presence secret (or PRESENCE_SECRET, or --secret-file / PRESENCE_SECRET_FILE)
  --email E          only these people (repeat, or separate with commas)
  --duration-ms MS   stop after this long (exit 0)
`;

const COLORS: Record<string, string> = { online: "32", away: "33", dnd: "31", offline: "90" };
const STATUS_ORDER = ["online", "away", "dnd", "offline"] as const;

interface WatchArgs {
  url: string;
  secret: string;
  emails: string[] | undefined;
  durationMs: number | undefined;
}

function parse(argv: string[]): WatchArgs | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: "string" },
        secret: { type: "string" },
        "secret-file": { type: "string" },
        email: { type: "string", multiple: true },
        "duration-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return (err as Error).message;
  }
  if (values.help) return "";
  if (!values.url) return "--url is required";
  try {
    const u = new URL(values.url);
    if (!["http:", "https:", "ws:", "wss:"].includes(u.protocol)) throw new Error();
  } catch {
    return `--url: expected an http(s) or ws(s) URL, got ${JSON.stringify(values.url)}`;
  }
  let secret = values.secret ?? process.env.PRESENCE_SECRET;
  const file = values["secret-file"] ?? process.env.PRESENCE_SECRET_FILE;
  if (!secret && file) {
    try {
      secret = readFileSync(file, "utf8").replace(/[\r\n]+$/, "");
    } catch (err) {
      return `--secret-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`;
    }
  }
  if (!secret) return "--secret (or PRESENCE_SECRET, or --secret-file) is required";
  let durationMs: number | undefined;
  if (values["duration-ms"] !== undefined) {
    if (!/^\d+$/.test(values["duration-ms"])) return "--duration-ms: expected a whole number";
    durationMs = Number(values["duration-ms"]);
  }
  const emails = values.email
    ?.flatMap((e) => e.split(","))
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  return { url: values.url, secret, emails: emails?.length ? emails : undefined, durationMs };
}

const time = (ms: number): string => new Date(ms).toISOString();

/** `outlook-presence watch`: a live view of presence through the API v2 client. */
export async function runWatch(argv: string[]): Promise<number> {
  const args = parse(argv);
  if (typeof args === "string") {
    if (args === "") {
      process.stdout.write(USAGE);
      return 0;
    }
    process.stderr.write(`outlook-presence watch: ${args}\n${USAGE}`);
    return 2;
  }
  const out = process.stdout;
  const client = new PresenceClient({ url: args.url, secret: args.secret, emails: args.emails });
  const view = out.isTTY ? new TableView(client, args) : undefined;
  let failed: Error | undefined;

  client.on("error", (err) => {
    if (view) view.note(err.message);
    else process.stderr.write(`watch: ${err.message}\n`);
  });
  client.on("reconnecting", ({ attempt, delayMs }) => {
    if (view) view.note(`reconnecting in ${delayMs} ms (attempt ${attempt})`);
    else process.stderr.write(`watch: disconnected; reconnecting in ${delayMs} ms (attempt ${attempt})\n`);
  });
  client.on("snapshot", (m) => {
    if (view) return view.render();
    const counts = countStatuses(client.users.values());
    out.write(
      `${time(Date.now())} snapshot seq=${m.seq} users=${m.users.length} ${STATUS_ORDER.map((s) => `${s}=${counts[s]}`).join(" ")}\n`,
    );
    // With --email the people asked for are few: list them; the whole company would be noise.
    if (args.emails) for (const u of m.users) out.write(`${time(Date.now())} ${u.email} ${u.status}\n`);
  });
  client.on("changes", (changes, seq) => {
    if (view) return view.render();
    for (const c of changes) out.write(`${time(c.at)} ${c.email} ${c.status} seq=${seq}\n`);
  });
  client.on("ready", (m) => {
    if (view) return view.render();
    process.stderr.write(`watch: live at seq ${m.seq}${m.resumed ? " (resumed)" : ""}\n`);
  });

  const done = new Promise<void>((resolve) => {
    const finish = (): void => resolve();
    process.once("SIGINT", finish);
    process.once("SIGTERM", finish);
    client.once("stopped", () => {
      failed ??= new Error("the gateway refused the secret");
      resolve();
    });
    if (args.durationMs !== undefined) setTimeout(finish, args.durationMs).unref();
  });
  view?.open();
  client.start();
  await done;
  const refused = failed;
  client.removeAllListeners("stopped");
  await client.stop();
  view?.close();
  if (refused) {
    process.stderr.write(`outlook-presence watch: ${refused.message}\n`);
    return 1;
  }
  return 0;
}

function countStatuses(users: Iterable<PresenceEntry>): Record<string, number> {
  const c: Record<string, number> = { online: 0, away: 0, dnd: 0, offline: 0 };
  for (const u of users) c[u.status] = (c[u.status] ?? 0) + 1;
  return c;
}

/** The terminal table: redrawn in place (alternate screen), at most 10 times a second. */
class TableView {
  private timer: NodeJS.Timeout | undefined;
  private message = "connecting…";

  constructor(
    private readonly client: PresenceClient,
    private readonly args: WatchArgs,
  ) {}

  open(): void {
    process.stdout.write("\x1b[?1049h\x1b[?25l");
    this.draw();
  }

  close(): void {
    clearTimeout(this.timer);
    process.stdout.write("\x1b[?25h\x1b[?1049l");
  }

  note(message: string): void {
    this.message = message;
    this.render();
  }

  render(): void {
    if (this.client.isLive) this.message = "live";
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  }

  private draw(): void {
    const out = process.stdout;
    // A pseudo-terminal without a size reports 0.
    const rows = Math.max(8, out.rows || 24);
    const cols = Math.max(40, out.columns || 80);
    const users = [...this.client.users.values()];
    const counts = countStatuses(users);
    let list: { email: string; status: string; changedAt: number }[];
    if (this.args.emails) {
      const byEmail = new Map(users.map((u) => [u.email.toLowerCase(), u]));
      list = this.args.emails.map((e) => {
        const u = byEmail.get(e);
        return { email: e, status: u?.status ?? "unknown", changedAt: u?.changed_at ?? 0 };
      });
    } else {
      // Everyone does not fit: the most recent changes first.
      list = users
        .map((u) => ({ email: u.email, status: u.status, changedAt: u.changed_at }))
        .sort((a, b) => b.changedAt - a.changedAt || a.email.localeCompare(b.email));
    }
    const width = Math.min(cols - 30, 48, Math.max(10, ...list.map((l) => l.email.length)));
    const lines = [
      `\x1b[1moutlook-presence watch\x1b[0m ${this.args.url}  seq ${this.client.lastSeq ?? "-"}  ${this.message}`,
      STATUS_ORDER.map((s) => `\x1b[${COLORS[s]}m●\x1b[0m ${s} ${counts[s]}`).join("   "),
      "",
      `\x1b[1m${"EMAIL".padEnd(width)}  ${"STATUS".padEnd(8)}  CHANGED\x1b[0m`,
    ];
    for (const l of list.slice(0, rows - lines.length - 1)) {
      const email = l.email.length > width ? `${l.email.slice(0, width - 1)}…` : l.email.padEnd(width);
      const color = COLORS[l.status] ?? "0";
      const changed = l.changedAt ? new Date(l.changedAt).toLocaleTimeString() : "";
      lines.push(`${email}  \x1b[${color}m${l.status.padEnd(8)}\x1b[0m  ${changed}`);
    }
    if (list.length > rows - lines.length - 1) lines.push(`… ${list.length} people`);
    out.write(`\x1b[H\x1b[2J${lines.join("\n")}`);
  }
}
