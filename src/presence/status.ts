/** The four statuses the Outlook provider understands. */
export const PROVIDER_STATUSES = ["online", "away", "dnd", "offline"] as const;
export type ProviderStatus = (typeof PROVIDER_STATUSES)[number];

const KNOWN = new Set<string>(PROVIDER_STATUSES);

/**
 * Maps a Mattermost status to the provider's set. `ooo` (out of office) and any status a newer
 * Mattermost may add are shown as `away`: the person is not reachable right now, but exists.
 */
export function toProviderStatus(status: string): ProviderStatus {
  return KNOWN.has(status) ? (status as ProviderStatus) : "away";
}

export function isKnownMattermostStatus(status: string): boolean {
  return KNOWN.has(status) || status === "ooo";
}
