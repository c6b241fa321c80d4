import { sendJson, type HttpModule } from "./router.js";

/**
 * Why the gateway is not ready, as a stable code. Answers anyone may read (`/readyz`, and the
 * 503s of the compat and v2 APIs) give only the code's sentence: Mattermost's error text can
 * repeat what the gateway sent it, the bot token included (security review: an upstream that
 * echoes `Authorization` put the token in all three). The text goes to the log and, redacted,
 * to the admin page.
 */
export type NotReadyReason =
  "token_rejected" | "settings_pending" | "waiting_for_leader" | "snapshot_pending" | "redis_unreachable";

export const NOT_READY_MESSAGES: Record<NotReadyReason, string> = {
  token_rejected: "Mattermost rejected the token (401)",
  settings_pending: "the secret has not been read from Mattermost yet",
  waiting_for_leader: "waiting for the leader's snapshot in Redis",
  snapshot_pending: "first snapshot not loaded yet",
  redis_unreachable: "Redis has not answered for a leader lease: this replica's statuses may be stale",
};

export interface NotReady {
  reason: NotReadyReason;
  /** Mattermost's last error (or the broker's), as received: for the log and (redacted) the admin page only. */
  detail?: string;
}

export interface HealthDeps {
  /** Why the gateway is not ready, or undefined when it is. */
  notReady: () => NotReady | undefined;
  details: () => Record<string, unknown>;
}

/** `/healthz`: the process answers. `/readyz`: the first snapshot is loaded and the token accepted. */
export function healthApi(deps: HealthDeps): HttpModule {
  return {
    routes: [
      {
        path: "/healthz",
        methods: ["GET", "HEAD"],
        auth: "none",
        handle: (_req, res) => sendJson(res, 200, { status: "ok" }),
      },
      {
        path: "/readyz",
        methods: ["GET", "HEAD"],
        auth: "none",
        handle(_req, res) {
          const notReady = deps.notReady();
          if (notReady) {
            const { reason } = notReady;
            res.setHeader("Cache-Control", "no-store");
            return sendJson(res, 503, {
              error: { code: "not_ready", message: NOT_READY_MESSAGES[reason], reason },
            });
          }
          sendJson(res, 200, { status: "ready", ...deps.details() });
        },
      },
    ],
  };
}
