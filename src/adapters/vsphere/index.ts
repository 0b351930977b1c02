/** The vSphere adapter's factory: one vCenter session per Ferry cluster with `adapter: vsphere`. */
import { durationMs } from '../../core/duration.js';
import type { AdapterFactory } from '../registry.js';
import { VsphereAdapter } from './adapter.js';

export { VsphereAdapter } from './adapter.js';
export type { VsphereAdapterOptions, VsphereSettings } from './adapter.js';

export const vsphereAdapterFactory: AdapterFactory = (ctx) => {
  const v = ctx.clusterConfig.vsphere;
  if (!v) throw new Error(`cluster ${ctx.cluster} uses adapter vsphere but has no vsphere: section (url, user, password)`);
  return new VsphereAdapter({
    cluster: ctx.cluster,
    hosts: ctx.hosts,
    log: ctx.log,
    redis: ctx.redis,
    prefix: ctx.prefix,
    settings: {
      url: v.url,
      user: v.user,
      password: v.password,
      datacenter: v.datacenter,
      cluster: v.cluster,
      caFile: v.caFile,
      thumbprint: v.thumbprint,
      insecure: v.insecure,
      hostNames: v.hostNames,
      requestTimeoutMs: durationMs(v.requestTimeout),
      keepAliveMs: durationMs(v.keepAlive),
      taskPollMs: durationMs(v.taskPollInterval),
      maintenanceTimeoutS: Math.round(durationMs(v.maintenanceTimeout) / 1000),
    },
  });
};
