import {
  pino,
  destination as pinoDestination,
  stdTimeFunctions,
  type Logger,
  type DestinationStream,
} from "pino";
import pinoPretty from "pino-pretty";

export type { Logger };

/**
 * Values that must never reach a log line. Structured redaction (below) covers the fields we
 * know about; this list is the last guard: every serialized line is scrubbed of these strings
 * (and their URL-encoded forms) before it is written, whatever field they hide in.
 */
export class SecretScrubber {
  private needles: string[] = [];

  private known = new Set<string>();

  /** Adds values to scrub; old ones stay (a rotated secret is still a secret). */
  add(values: readonly (string | undefined)[]): void {
    this.set([...this.known, ...values]);
  }

  set(values: readonly (string | undefined)[]): void {
    const all = new Set<string>();
    this.known = new Set(values.filter((v): v is string => !!v));
    for (const v of values) {
      if (!v || v.length < 4) continue; // too short to be a real secret, and would scrub noise
      all.add(v);
      all.add(encodeURIComponent(v));
      all.add(JSON.stringify(v).slice(1, -1));
    }
    // Longest first, so a secret that contains another is replaced whole.
    this.needles = [...all].sort((a, b) => b.length - a.length);
  }

  scrub(line: string): string {
    for (const n of this.needles) {
      if (line.includes(n)) line = line.split(n).join("[REDACTED]");
    }
    return line;
  }
}

export const REDACT_PATHS = [
  "token",
  "secret",
  "authorization",
  "*.token",
  "*.secret",
  "*.authorization",
  "*.mattermostToken",
  "*.secretPrevious",
  "headers.authorization",
  "req.headers.authorization",
  "req.headers.cookie",
];

/**
 * Replaces the value of every `secret` (and the admin page's `token`) query parameter in a URL,
 * for request logs. Names are compared decoded, as the router reads them: `?%73ecret=S`
 * presents a secret too.
 */
const REDACTED_PARAMS = new Set(["secret", "token"]);

export function redactUrl(url: string): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const pairs = url
    .slice(q + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      return eq >= 0 && REDACTED_PARAMS.has(queryName(pair.slice(0, eq)))
        ? `${pair.slice(0, eq)}=[REDACTED]`
        : pair;
    });
  return `${url.slice(0, q)}?${pairs.join("&")}`;
}

function queryName(raw: string): string {
  const name = raw.replace(/\+/g, " ");
  try {
    return decodeURIComponent(name).toLowerCase();
  } catch {
    return name.toLowerCase(); // a bad escape: URLSearchParams keeps it literally, so not "secret"
  }
}

/**
 * JSON lines on stdout; on a terminal, pino-pretty's readable lines instead (pipe through `cat`
 * to get JSON). Either way the scrubber sees every line first: pino-pretty is only the
 * destination.
 */
export function defaultDestination(): DestinationStream {
  if (process.stdout.isTTY) {
    return pinoPretty({
      destination: 1,
      sync: true,
      colorize: true,
      singleLine: true,
      translateTime: "SYS:HH:MM:ss.l",
    });
  }
  return pinoDestination({ dest: 1, sync: false });
}

export function createLogger(
  level: string,
  scrubber: SecretScrubber,
  destination: DestinationStream = defaultDestination(),
): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      hooks: { streamWrite: (s) => scrubber.scrub(s) },
    },
    destination,
  );
}
