import { sendError } from "./errors.js";
import { sendJson, type HttpModule } from "./router.js";

export interface HealthDeps {
  /** Why the gateway is not ready, or undefined when it is. */
  notReadyReason: () => string | undefined;
  details: () => Record<string, unknown>;
}

/** `/healthz`: the process answers. `/readyz`: the first snapshot is loaded and the token accepted. */
export function healthApi(deps: HealthDeps): HttpModule {
  return {
    routes: [
      {
        path: "/healthz",
        methods: ["GET", "HEAD"],
        handle: (_req, res) => sendJson(res, 200, { status: "ok" }),
      },
      {
        path: "/readyz",
        methods: ["GET", "HEAD"],
        handle(_req, res) {
          const reason = deps.notReadyReason();
          if (reason) return sendError(res, "not_ready", reason);
          sendJson(res, 200, { status: "ready", ...deps.details() });
        },
      },
    ],
  };
}
