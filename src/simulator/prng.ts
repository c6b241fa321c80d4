/**
 * A tiny seeded PRNG (mulberry32) and helpers, so the simulator is deterministic for a given seed.
 * Not for anything secret.
 */

export type Rng = () => number;

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An independent stream derived from a seed and a stream number. */
export function stream(seed: number, n: number): Rng {
  return mulberry32((seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
}

export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  const item = items[randInt(rng, items.length)];
  if (item === undefined) throw new Error("pick from an empty list");
  return item;
}

/** Fisher-Yates in place; returns the same array. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rng, i + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/** Mattermost's id alphabet (base32 variant): every character is in [a-z0-9]. */
export const ID_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769";

/** A 26-character Mattermost-style id. */
export function newId(rng: Rng): string {
  let id = "";
  for (let i = 0; i < 26; i++) id += ID_ALPHABET[randInt(rng, ID_ALPHABET.length)];
  return id;
}

/** Exactly 26 characters of [a-z0-9] (what the simulator accepts as a user id it can create). */
export function isValidId(id: string): boolean {
  return /^[a-z0-9]{26}$/.test(id);
}
