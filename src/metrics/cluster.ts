import { AggregatorRegistry } from "prom-client";

/**
 * One exposition for the whole instance from every process's `registry.getMetricsAsJSON()`:
 * each metric combined as its `aggregator` says (counters and connection gauges summed, the
 * snapshot's gauges maxed, readiness the minimum; see GatewayMetrics). Process metrics carry a
 * `worker` label, so they stay one series per process; the few prom-client marks "omit" (the
 * start time) are kept per process the same way instead of being dropped.
 */
export function aggregateMetrics(perProcess: readonly unknown[][]): Promise<string> {
  const arrays = perProcess.map((metrics) =>
    metrics.map((m) => {
      const metric = m as { aggregator?: string };
      return metric.aggregator === "omit" ? { ...metric, aggregator: "sum" } : metric;
    }),
  );
  return AggregatorRegistry.aggregate(arrays as object[][]).metrics();
}
