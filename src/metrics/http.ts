import { sendError } from "../http/errors.js";
import type { HttpModule } from "../http/router.js";
import { metricsToken } from "../http/route-auth.js";
import type { Logger } from "../log.js";
import type { GatewayMetrics } from "./prometheus.js";

export interface MetricsApiDeps {
  metrics: GatewayMetrics;
  log: Logger;
  /** PRESENCE_METRICS_TOKEN; unset: /metrics is open (keep it off the public proxy). */
  token: () => string | undefined;
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
        auth: metricsToken(deps.token),
        handle(req, res) {
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
