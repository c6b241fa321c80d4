/*
 * Web app part of the com.mattermost.outlook-presence plugin bundle (no server part).
 *
 * Mattermost sends `status_change` only to the user concerned, so each browser learns its own
 * user's changes first. This script forwards them to the gateway's /status/publish as hints:
 * the gateway never trusts them, it only re-reads that user from Mattermost at once instead of
 * waiting for its next poll. A plain script (no imports or exports), loaded by Mattermost as is.
 */

interface StatusChangeMessage {
  event: string;
  data?: { user_id?: unknown; status?: unknown };
}

interface PluginRegistry {
  registerWebSocketEventHandler(event: string, handler: (msg: StatusChangeMessage) => void): void;
}

interface ReduxStore {
  getState(): { entities?: { users?: { currentUserId?: string } } };
}

// Augments the DOM Window with what Mattermost's web app provides.
// eslint-disable-next-line @typescript-eslint/no-unused-vars
interface Window {
  registerPlugin(id: string, plugin: { initialize(registry: PluginRegistry, store: ReduxStore): void }): void;
  /** Mattermost's subpath (e.g. "/chat") when it is not served at the root. */
  basename?: string;
}

(function register() {
  const PLUGIN_ID = "com.mattermost.outlook-presence";
  const FORWARDED = ["online", "away", "dnd", "offline"];

  function forward(store: ReduxStore, msg: StatusChangeMessage): void {
    const userId = msg.data?.user_id;
    const status = msg.data?.status;
    const me = store.getState().entities?.users?.currentUserId;
    // Only the signed-in user's own changes, and only statuses the old API knew.
    if (typeof userId !== "string" || userId !== me) return;
    if (typeof status !== "string" || FORWARDED.indexOf(status) < 0) return;
    const url = `${window.basename ?? ""}/plugins/${PLUGIN_ID}/api/v1/status/publish`;
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "XMLHttpRequest" },
      body: JSON.stringify({ user_id: userId, status }),
    }).catch(() => undefined); // a lost hint costs one poll interval, nothing more
  }

  window.registerPlugin(PLUGIN_ID, {
    initialize(registry: PluginRegistry, store: ReduxStore) {
      registry.registerWebSocketEventHandler("status_change", (msg) => forward(store, msg));
    },
  });
})();
