/** Every adapter kind's factory, listed once; the runtime builds one adapter per cluster from these. */
import type { AdapterKind } from './types.js';
import type { AdapterFactory } from './registry.js';
import { labAdapterFactory } from './lab/index.js';
import { hypervAdapterFactory } from './hyperv/index.js';
import { vsphereAdapterFactory } from './vsphere/index.js';
import { libvirtAdapterFactory } from './libvirt/index.js';

export const ADAPTER_FACTORIES: Readonly<Record<AdapterKind, AdapterFactory>> = {
  lab: labAdapterFactory,
  hyperv: hypervAdapterFactory,
  vsphere: vsphereAdapterFactory,
  libvirt: libvirtAdapterFactory,
};
