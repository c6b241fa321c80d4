export { GatewayMetrics, METRICS_PREFIX, type MetricsSource } from "./prometheus.js";
export { composeTelemetry, logTelemetry } from "./compose.js";
export { metricsApi, type MetricsApiDeps } from "./http.js";
