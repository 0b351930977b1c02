/**
 * Everything a Ferry process shares: configuration, inventory, Redis, adapters, clock, logs.
 * Built once per process (src/main.ts) or per test (test/support/runtime.ts).
 */
import type { Redis, RedisOptions } from 'ioredis';
import type { FerryConfig } from './config/schema.js';
import type { Inventory, LoadedConfig } from './config/load.js';
import { AdapterRegistry, type AdapterFactory } from './adapters/registry.js';
import { ADAPTER_FACTORIES } from './adapters/index.js';
import type { AdapterKind } from './adapters/types.js';
import { connectUrl, revivable, selfHealing } from './redis.js';
import { closeConfirmWatchers } from './redis-confirm.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import { RedisOutage } from './redis-outage.js';

/** Wall clock, replaceable in tests (patch-window schedules use it). */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

export interface Runtime {
  config: FerryConfig;
  inventory: Inventory;
  configSource: string;
  redisUrl: string;
  /** General-purpose connection (commands, scripts). */
  redis: Redis;
  /** Key prefix for Ferry's keys and BullMQ queues; tests give each file its own. */
  prefix: string;
  log: Logger;
  adapters: AdapterRegistry;
  clock: Clock;
  /** Key under the prefix: key('op', 41) -> "ferry:op:41". */
  key(...parts: (string | number)[]): string;
  /** Redis reachable or not, logged once per outage (every connection of this runtime reports to it). */
  redisOutage: RedisOutage;
  /** Prometheus metrics of this process (one registry per runtime). */
  metrics: Metrics;
  /** A fresh connection (BullMQ workers, subscribers). Closed by the caller or by close(). */
  newConnection(opts?: RedisOptions): Redis;
  close(): Promise<void>;
}

export function createRuntime(opts: {
  loaded: LoadedConfig;
  redisUrl: string;
  log: Logger;
  prefix?: string;
  clock?: Clock;
  /** Replace an adapter kind's factory (tests wrap libvirt's shell). */
  adapters?: Partial<Record<AdapterKind, AdapterFactory>>;
}): Runtime {
  const prefix = opts.prefix ?? process.env.FERRY_PREFIX ?? 'ferry';
  const redisOutage = new RedisOutage(opts.log);
  // Rebuilt if a failover leaves it closed for good (each client it builds reports to the outage watch).
  const redis = selfHealing(
    () => redisOutage.watch(connectUrl(opts.redisUrl)),
    (reason) => opts.log.error({ reason }, 'redis connection rebuilt'),
  );
  const extra: Redis[] = [];
  const adapters = new AdapterRegistry(opts.loaded.config, opts.loaded.inventory, { log: opts.log, redis, prefix }, { ...ADAPTER_FACTORIES, ...opts.adapters });
  return {
    config: opts.loaded.config,
    inventory: opts.loaded.inventory,
    configSource: opts.loaded.source,
    redisUrl: opts.redisUrl,
    redis,
    prefix,
    log: opts.log,
    adapters,
    clock: opts.clock ?? systemClock,
    metrics: new Metrics(),
    redisOutage,
    key: (...parts) => [prefix, ...parts].join(':'),
    newConnection(connOpts) {
      // Connected again if a failover leaves it closed for good (BullMQ's queues and workers hold it).
      const c = revivable(redisOutage.watch(connectUrl(opts.redisUrl, connOpts)), (reason) => opts.log.error({ reason }, 'redis connection reconnected'));
      extra.push(c);
      return c;
    },
    async close() {
      await adapters.close();
      await Promise.allSettled([...extra, redis].map((c) => c.quit().catch(() => c.disconnect())));
      closeConfirmWatchers();
    },
  };
}
