import { randomBytes } from "node:crypto";

/** 32 random bytes, base64url: 43 URL-safe characters, nothing a provider has to escape. */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

export function runSecret(argv: string[]): number {
  if (argv.length > 0 && !(argv.length === 1 && (argv[0] === "--help" || argv[0] === "-h"))) {
    process.stderr.write("outlook-presence secret: takes no arguments\n");
    return 2;
  }
  if (argv.length === 1) {
    process.stdout.write(
      "Usage: outlook-presence secret\nPrints a new random secret (32 bytes, base64url).\n",
    );
    return 0;
  }
  process.stdout.write(`${newSecret()}\n`);
  return 0;
}
