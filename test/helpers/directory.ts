import type { DirectoryEntry } from "../../src/presence/snapshot.js";

/** A valid 26-character Mattermost id for user number n. */
export const userId = (n: number): string => `u${String(n).padStart(25, "0")}`;

/** Directory entry number n: username `user0007`, email `user7@example.com` unless given. */
export const directoryUser = (n: number, email = `user${n}@example.com`): DirectoryEntry => ({
  id: userId(n),
  username: `user${String(n).padStart(4, "0")}`,
  email,
  isBot: false,
});
