/**
 * Go's url.QueryUnescape: `+` is a space, `%XX` a byte; a bad escape is an error (null).
 * The old plugin decoded the secret with it until it matched or stopped changing, and
 * providers depend on that: they URL-encode the secret once more than needed.
 */
export function goQueryUnescape(s: string): string | null {
  if (!s.includes("%") && !s.includes("+")) return s;
  const parts: Buffer[] = [];
  let plain = "";
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch !== "%") {
      plain += ch === "+" ? " " : ch;
      continue;
    }
    const hex = s.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null;
    parts.push(Buffer.from(plain, "utf8"), Buffer.from([parseInt(hex, 16)]));
    plain = "";
    i += 2;
  }
  parts.push(Buffer.from(plain, "utf8"));
  return Buffer.concat(parts).toString("utf8");
}

/**
 * Constant-time equality: the time depends only on `got`'s length (the caller's own input), never
 * on `wanted`'s content or length. Every code unit of `got` is compared, against `wanted` cycled,
 * and differences only accumulate into bits, so neither a matching prefix nor a matching length
 * answers sooner. It replaces a SHA-256 of each side: on every `/status` request that cost ~2.5 µs
 * (createHash) of the ~30 µs the whole request costs; this costs ~0.1 µs for a 43-character secret.
 */
export function constantTimeEquals(got: string, wanted: string): boolean {
  const n = wanted.length;
  let diff = got.length ^ n;
  if (n === 0) return diff === 0;
  for (let i = 0; i < got.length; i++) diff |= got.charCodeAt(i) ^ wanted.charCodeAt(i % n);
  return diff === 0;
}

/** At most this many decoding rounds; more is not a provider, it is an attack on our CPU. */
const MAX_DECODE_ROUNDS = 8;

/**
 * A presented value longer than this (or than three times the longest accepted secret, for a
 * secret that long) is refused without being hashed or decoded. Secrets are a few dozen
 * characters (`outlook-presence secret` makes 43; Mattermost's generator 32), and a provider
 * encodes one at most a couple of times more than needed, which never grows a URL-safe secret.
 * Unbounded, 32 pre-auth v2 messages of 4 MiB of nested `%25` escapes held the event loop 53.6 s,
 * and a 15 KB `?secret=` cost 4.5 ms per request even when the answer was 429.
 */
export const MAX_PRESENTED_SECRET_CHARS = 1024;

/** The longest value worth decoding against `accepted` (see MAX_PRESENTED_SECRET_CHARS). */
export function presentedSecretLimit(accepted: readonly string[]): number {
  let longest = 0;
  for (const s of accepted) longest = Math.max(longest, s.length);
  return Math.max(MAX_PRESENTED_SECRET_CHARS, 3 * longest);
}

/**
 * True when `got` (already decoded once from the query string) is one of the accepted secrets,
 * possibly after more rounds of URL-decoding, as the old plugin accepted. The work is bounded:
 * at most MAX_DECODE_ROUNDS decodes and one comparison more, over at most presentedSecretLimit
 * characters (decoding never lengthens a value). `decode` is a seam for tests.
 */
export function secretMatches(
  accepted: readonly string[],
  got: string | null | undefined,
  decode: (s: string) => string | null = goQueryUnescape,
): boolean {
  if (got === null || got === undefined) return false;
  if (got.length > presentedSecretLimit(accepted)) return false;
  let candidate: string = got;
  for (let round = 0; round <= MAX_DECODE_ROUNDS; round++) {
    let ok = false;
    for (const w of accepted) ok = constantTimeEquals(candidate, w) || ok; // no early exit
    if (ok) return true;
    if (round === MAX_DECODE_ROUNDS) return false;
    const next = decode(candidate);
    if (next === null) return false;
    if (next === candidate) return false;
    candidate = next;
  }
  return false;
}

/** The token of an `Authorization: Bearer <token>` header; undefined for no header or another scheme. */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
}

/**
 * The secret a request presents: `Authorization: Bearer S` or the first `secret` query value
 * (like Go's FormValue).
 */
export function presentedSecret(authorization: string | undefined, query: URLSearchParams): string | null {
  return bearerToken(authorization) ?? query.get("secret");
}
