/** The Hyper-V adapter's factory: one SSH RemoteShell per cluster, PowerShell scripts over it. */
import type { AdapterFactory } from '../registry.js';
import { SshRemoteShell } from '../ssh/index.js';
import { HypervAdapter } from './adapter.js';

export { HypervAdapter, type HypervAdapterOptions } from './adapter.js';
export { psQuote, encodeCommand, decodeCommand, scriptMarker } from './ps.js';

export const hypervAdapterFactory: AdapterFactory = (ctx) => {
  const hv = ctx.clusterConfig.hyperv;
  const shell = new SshRemoteShell(ctx.clusterConfig.ssh ?? {}, { log: ctx.log });
  return new HypervAdapter(shell, {
    cluster: ctx.cluster,
    hosts: ctx.hosts,
    failoverCluster: hv?.failoverCluster ?? true,
    powershell: hv?.powershell ?? 'powershell.exe',
    redis: ctx.redis,
    prefix: ctx.prefix,
    log: ctx.log,
  });
};
