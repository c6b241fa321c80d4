import type { Config } from "../config/load.js";
import type { Logger } from "../log.js";
import { MemoryBroker } from "./memory.js";
import { RedisBroker } from "./redis.js";
import type { Broker } from "./types.js";

export { BrokerError, type Broker } from "./types.js";

/** The broker the configuration names; config validation has already refused unknown names. */
export function createBroker(config: Config, log: Logger): Broker {
  switch (config.broker) {
    case "memory":
      return new MemoryBroker();
    case "redis":
      return new RedisBroker({
        url: config.redisUrl,
        sentinels: config.redisSentinels,
        sentinelName: config.redisSentinelName,
        prefix: config.redisPrefix,
        leaderTtlMs: config.leaderTtlMs,
        log,
      });
  }
}
