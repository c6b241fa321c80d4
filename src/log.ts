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
    // Whatever token it carries: an upstream's error text may repeat our Authorization header,
    // cut short (error texts are truncated) where no known value matches any more.
    return line.replace(BEARER, "$1[REDACTED]");
  }
}

const BEARER = /\b(Bearer\s+)(?!\[REDACTED\])[^\s"'\\,;)]+/gi;

/**
 * `text` (an upstream's error message, say) with every secret in `secrets` replaced, also a
 * `Bearer` credential and a copy of a secret cut off at the end (Mattermost's error messages are
 * kept to their first 100–200 characters, which can end inside an echoed token). For what the
 * gateway shows in answers and its admin views; logs get the same through the scrubber.
 */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  const scrubber = new SecretScrubber();
  scrubber.set(secrets);
  let out = scrubber.scrub(text);
  for (const s of secrets) {
    if (!s || s.length < 8) continue;
    for (let n = s.length - 1; n >= 4; n--) {
      if (out.endsWith(s.slice(0, n))) {
        out = `${out.slice(0, -n)}[REDACTED]`;
        break;
      }
    }
  }
  return out;
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
