import type { IncomingMessage } from "node:http";
import { constantTimeEquals } from "../http/auth.js";
import { sendError } from "../http/errors.js";
import type { HttpModule } from "../http/router.js";
import type { Logger } from "../log.js";
import type { GatewayMetrics } from "./prometheus.js";
import { AUTH_RATE_LIMITED, type AuthFailures } from "../http/auth-limit.js";

export interface MetricsApiDeps {
  metrics: GatewayMetrics;
  log: Logger;
  /** PRESENCE_METRICS_TOKEN; unset: /metrics is open (keep it off the public proxy). */
  token: () => string | undefined;
  /** Wrong tokens, limited per address together with every other credential check. */
  authFailures?: AuthFailures;
}

function bearer(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return m?.[1];
}

/**
 * `GET /metrics`: Prometheus text format. With PRESENCE_METRICS_TOKEN set, only
 * `Authorization: Bearer <token>` is accepted (Prometheus' `authorization` scrape setting);
 * the token is never taken from the query string, which proxies log.
 */
export function metricsApi(deps: MetricsApiDeps): HttpModule {
  return {
    routes: [
      {
        path: "/metrics",
        methods: ["GET", "HEAD"],
        handle(req, res) {
          const token = deps.token();
          if (token !== undefined) {
            const got = bearer(req);
            if (got === undefined || !constantTimeEquals(got, token)) {
              const retryAfter = got === undefined ? undefined : deps.authFailures?.fail(req);
              if (retryAfter !== undefined) {
                return sendError(res, "auth_rate_limited", AUTH_RATE_LIMITED, {
                  "Retry-After": String(retryAfter),
                });
              }
              return sendError(
                res,
                "invalid_secret",
                "missing or wrong metrics token (Authorization: Bearer)",
                {
                  "WWW-Authenticate": 'Bearer realm="metrics"',
                },
              );
            }
          }
          deps.metrics.render().then(
            (text) => {
              res.writeHead(200, {
                "Content-Type": deps.metrics.contentType,
                "Content-Length": Buffer.byteLength(text),
                "Cache-Control": "no-store",
              });
              res.end(req.method === "HEAD" ? undefined : text);
            },
            (err: unknown) => {
              deps.log.error(
                { event: "metrics_failed", err: (err as Error).message },
                "cannot render metrics",
              );
              if (!res.headersSent) sendError(res, "internal", "cannot render metrics");
            },
          );
        },
      },
    ],
  };
}
