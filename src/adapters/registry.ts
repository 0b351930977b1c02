/**
 * One adapter instance per cluster, chosen by the cluster's `adapter:` key.
 * Workflows ask for a host's adapter and never care which platform it is.
 */
import type { Redis } from 'ioredis';
import type { FerryConfig, ClusterConfig } from '../config/schema.js';
import type { Inventory } from '../config/load.js';
import type { Logger } from '../log.js';
import type { AdapterKind, HypervisorAdapter } from './types.js';

export interface AdapterContext {
  cluster: string;
  hosts: string[];
  clusterConfig: ClusterConfig;
  config: FerryConfig;
  log: Logger;
  /** Shared Redis (lab state, libvirt cordon flags). */
  redis: Redis;
  /** Key prefix for everything Ferry keeps in Redis. */
  prefix: string;
}

export type AdapterFactory = (ctx: AdapterContext) => HypervisorAdapter;

export class AdapterRegistry {
  private readonly byCluster = new Map<string, HypervisorAdapter>();

  constructor(
    private readonly config: FerryConfig,
    private readonly inventory: Inventory,
    private readonly deps: { log: Logger; redis: Redis; prefix: string },
    /** Every kind's factory (src/adapters/index.ts lists them; tests may replace one). */
    private readonly factories: Readonly<Record<AdapterKind, AdapterFactory>>,
  ) {}

  forCluster(cluster: string): HypervisorAdapter {
    let adapter = this.byCluster.get(cluster);
    if (!adapter) {
      const clusterConfig = this.config.clusters[cluster];
      if (!clusterConfig) throw new Error(`unknown cluster ${cluster}`);
      const factory = this.factories[clusterConfig.adapter];
      if (!factory) throw new Error(`no adapter registered for kind ${clusterConfig.adapter}`);
      adapter = factory({
        cluster,
        hosts: this.inventory.clusters[cluster] ?? [],
        clusterConfig,
        config: this.config,
        log: this.deps.log.child({ adapter: clusterConfig.adapter, cluster }),
        redis: this.deps.redis,
        prefix: this.deps.prefix,
      });
      this.byCluster.set(cluster, adapter);
    }
    return adapter;
  }

  forHost(host: string): HypervisorAdapter {
    const cluster = this.inventory.clusterOf[host];
    if (!cluster) throw new Error(`${host} is not in the inventory`);
    return this.forCluster(cluster);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.byCluster.values()].map((a) => a.close()));
    this.byCluster.clear();
  }
}
