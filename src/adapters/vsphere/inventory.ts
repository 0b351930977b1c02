/**
 * What Ferry reads from vCenter, and how raw PropertyCollector content becomes HostFacts and
 * VmFacts. Pure functions over ObjectContent so they can be tested on recorded replies.
 *
 * Where a fact comes from (and the fallbacks, which the simulator needs):
 *  - cpu.vendor: hardware.cpuPkg[0].vendor; cpu.family: CPUID leaf 1 of cpuPkg[0] as
 *    "family/model" ("6/85"), else summary.hardware.cpuModel; cpu.baseline: the parent
 *    cluster's summary.currentEVCModeKey (EVC mode).
 *  - migrationNetwork: config.virtualNicManagerInfo.netConfig, nicType "vmotion" with a
 *    selected vmknic (what "tag VMkernel traffic for vMotion" sets, seed 003).
 *  - Datastore.shared: summary.multipleHostAccess, else more than one host mounting it (the
 *    simulator leaves multipleHostAccess unset).
 *  - PortGroup.internalOnly: a standard vSwitch with no physical NIC (seed 004).
 *  - VmFacts.ha: runtime.dasVmProtection.dasProtected when vCenter reports it (HA enabled),
 *    else the cluster's configuration.dasConfig.enabled.
 *  - RawCluster.drs: the cluster's configuration.drsConfig (enabled, defaultVmBehavior), read
 *    in the same inventory call. Per-VM DRS overrides (configurationEx.drsVmConfig) are not read.
 *  - HBAs: config.storageDevice.hostBusAdapter of xsi:type HostFibreChannelHba. vSphere does
 *    not report the fabric name or NPIV capability of an HBA: fabric is all zeros, npivCapable
 *    false.
 */
import { normalizeWwn, type Datastore, type HostFacts, type PhysicalHba, type PortGroup, type PowerState, type VmDevice, type VmDisk, type VmFacts, type VirtualFcAdapter, type Wwn, type DeviceKind } from '../types.js';
import type { ObjectContent, PropSpec } from './vim.js';
import { bool, child, children, isObject, moref, num, optText, path, refKey, text, xsiType, type MoRef, type XmlValue } from './xml.js';

export const UNKNOWN_FABRIC: Wwn = '0000000000000000';

export const HOST_PATHS = [
  'name',
  'parent',
  'runtime.inMaintenanceMode',
  'runtime.connectionState',
  'summary.hardware',
  'hardware.cpuPkg',
  'config.product.fullName',
  'config.network.portgroup',
  'config.network.vswitch',
  'config.virtualNicManagerInfo.netConfig',
  'config.storageDevice.hostBusAdapter',
  'datastore',
  'network',
];

export const VM_PATHS = [
  'name',
  'config.instanceUuid',
  'config.template',
  'config.hardware.numCPU',
  'config.hardware.memoryMB',
  'config.hardware.device',
  'config.cpuAffinity',
  'config.memoryAffinity',
  'config.npivNodeWorldWideName',
  'config.npivPortWorldWideName',
  'runtime.host',
  'runtime.powerState',
  'runtime.dasVmProtection',
  'datastore',
  'network',
];

export const SNAPSHOT_SPECS: PropSpec[] = [
  { type: 'ClusterComputeResource', paths: ['name', 'summary', 'configuration.dasConfig.enabled', 'configuration.drsConfig', 'resourcePool'] },
  { type: 'HostSystem', paths: HOST_PATHS },
  { type: 'VirtualMachine', paths: VM_PATHS },
  { type: 'Datastore', paths: ['name', 'summary', 'host'] },
  { type: 'Network', paths: ['name'] },
];

export const SNAPSHOT_TYPES = ['ClusterComputeResource', 'HostSystem', 'VirtualMachine', 'Datastore', 'Network'];

export interface RawCluster {
  ref: MoRef;
  name: string;
  evcMode?: string;
  haEnabled: boolean;
  pool?: MoRef;
  /** DRS: enabled, and defaultVmBehavior ("manual" | "partiallyAutomated" | "fullyAutomated"). */
  drs?: { enabled: boolean; behavior?: string };
}

export interface RawDatastore {
  ref: MoRef;
  name: string;
  shared: boolean;
  capacityGiB: number;
  freeGiB: number;
}

export interface RawHost {
  ref: MoRef;
  vcName: string;
  parent?: MoRef;
  props: Map<string, XmlValue>;
}

export interface RawVm {
  ref: MoRef;
  name: string;
  host?: MoRef;
  props: Map<string, XmlValue>;
}

/** One consistent read of the datacenter. */
export interface Snapshot {
  clusters: Map<string, RawCluster>;
  hosts: Map<string, RawHost>;
  vms: RawVm[];
  datastores: Map<string, RawDatastore>;
  networks: Map<string, { ref: MoRef; name: string }>;
}

/** Items of an ArrayOfX value: every child element whatever its tag. */
export function arrayItems(v: XmlValue | undefined): XmlValue[] {
  if (!isObject(v)) return [];
  const out: XmlValue[] = [];
  for (const [k, val] of Object.entries(v)) {
    if (k.startsWith('@_') || k === '#text') continue;
    if (Array.isArray(val)) out.push(...val);
    else out.push(val);
  }
  return out;
}

const GiB = 1024 ** 3;
const round1 = (n: number): number => Math.round(n * 10) / 10;

export function buildSnapshot(objects: ObjectContent[]): Snapshot {
  const snap: Snapshot = { clusters: new Map(), hosts: new Map(), vms: [], datastores: new Map(), networks: new Map() };
  const unknownSharing = new Map<string, number>();
  for (const o of objects) {
    const p = o.props;
    const name = text(p.get('name'));
    switch (o.obj.type) {
      case 'ClusterComputeResource':
        snap.clusters.set(refKey(o.obj), {
          ref: o.obj,
          name,
          evcMode: optText(child(p.get('summary'), 'currentEVCModeKey')),
          haEnabled: bool(p.get('configuration.dasConfig.enabled')) ?? false,
          pool: moref(p.get('resourcePool')),
          drs: drsConfig(p.get('configuration.drsConfig')),
        });
        break;
      case 'HostSystem':
        snap.hosts.set(refKey(o.obj), { ref: o.obj, vcName: name, parent: moref(p.get('parent')), props: p });
        break;
      case 'VirtualMachine':
        if (bool(p.get('config.template'))) break; // templates are not running workloads
        snap.vms.push({ ref: o.obj, name, host: moref(p.get('runtime.host')), props: p });
        break;
      case 'Datastore': {
        const summary = p.get('summary');
        const multi = bool(child(summary, 'multipleHostAccess'));
        if (multi === undefined) unknownSharing.set(refKey(o.obj), arrayItems(p.get('host')).length);
        snap.datastores.set(refKey(o.obj), {
          ref: o.obj,
          name: name || text(child(summary, 'name')),
          shared: multi ?? false,
          capacityGiB: round1(num(child(summary, 'capacity')) / GiB),
          freeGiB: round1(num(child(summary, 'freeSpace')) / GiB),
        });
        break;
      }
      default:
        // Network, DistributedVirtualPortgroup, OpaqueNetwork
        snap.networks.set(refKey(o.obj), { ref: o.obj, name });
    }
  }
  // Without summary.multipleHostAccess, count the hosts that list the datastore (the
  // simulator records only the first host in Datastore.host although every host mounts it).
  for (const [key, mounts] of unknownSharing) {
    let listed = 0;
    for (const h of snap.hosts.values()) if (refs(h.props.get('datastore')).some((r) => refKey(r) === key)) listed++;
    const ds = snap.datastores.get(key);
    if (ds) ds.shared = Math.max(mounts, listed) > 1;
  }
  return snap;
}

function drsConfig(v: XmlValue | undefined): RawCluster['drs'] {
  if (!isObject(v)) return undefined;
  return { enabled: bool(child(v, 'enabled')) ?? false, behavior: optText(child(v, 'defaultVmBehavior')) };
}

/** True when vCenter moves VMs by itself (DRS on and fully automated): it would evacuate a host entering maintenance. */
export function drsFullyAutomated(cluster: RawCluster | undefined): boolean {
  return !!cluster?.drs?.enabled && cluster.drs.behavior === 'fullyAutomated';
}

/** A signed xsd:long WWN ("-4610560744054194172") as 16 hex digits. */
export function wwnFromLong(v: string): Wwn {
  return normalizeWwn(BigInt.asUintN(64, BigInt(v.trim())).toString(16).padStart(16, '0'));
}

function refs(v: XmlValue | undefined): MoRef[] {
  return arrayItems(v)
    .map((x) => moref(x))
    .filter((r): r is MoRef => !!r);
}

/** CPUID leaf 1 EAX ("0000:0000:0000:0010:0000:0110:1101:0111") -> "6/45". */
export function cpuidFamily(eax: string): string | undefined {
  const bits = eax.replace(/:/g, '');
  if (!/^[01]{32}$/.test(bits)) return undefined;
  const n = parseInt(bits, 2);
  const baseFamily = (n >> 8) & 0xf;
  const baseModel = (n >> 4) & 0xf;
  const family = baseFamily === 0xf ? baseFamily + ((n >> 20) & 0xff) : baseFamily;
  const model = baseFamily === 0x6 || baseFamily === 0xf ? (((n >> 16) & 0xf) << 4) + baseModel : baseModel;
  return `${family}/${model}`;
}

export interface MapContext {
  /** vCenter host name -> Ferry host name. */
  ferryName(vcName: string): string;
  cluster: string;
}

export function hostFacts(h: RawHost, snap: Snapshot, ctx: MapContext): HostFacts {
  const p = h.props;
  const hw = p.get('summary.hardware');
  const pkg = arrayItems(p.get('hardware.cpuPkg'))[0];
  const leaf1 = children(pkg, 'cpuFeature').find((f) => text(child(f, 'level')) === '1');
  const cpuModel = text(child(hw, 'cpuModel')) || text(child(pkg, 'description'));
  // summary.hardware.vendor is the server maker (Dell, HPE), not the CPU's: use the package's
  // vendor, else the model string.
  const vendor = (text(child(pkg, 'vendor')) || cpuModel || 'unknown').toLowerCase();
  const cluster = h.parent ? snap.clusters.get(refKey(h.parent)) : undefined;

  const vswitches = arrayItems(p.get('config.network.vswitch'));
  const uplinked = new Map<string, boolean>();
  for (const s of vswitches) uplinked.set(text(child(s, 'name')), children(s, 'pnic').length > 0);
  const portGroups: PortGroup[] = arrayItems(p.get('config.network.portgroup')).map((pg) => {
    const spec = child(pg, 'spec');
    const vlan = num(child(spec, 'vlanId'), -1);
    const sw = text(child(spec, 'vswitchName'));
    const out: PortGroup = { name: text(child(spec, 'name')) };
    if (vlan > 0) out.vlan = vlan;
    if (uplinked.get(sw) === false) out.internalOnly = true;
    return out;
  });
  const seen = new Set(portGroups.map((g) => g.name));
  for (const r of refs(p.get('network'))) {
    const n = snap.networks.get(refKey(r));
    if (n && !seen.has(n.name)) {
      seen.add(n.name);
      portGroups.push({ name: n.name });
    }
  }

  const datastores: Datastore[] = refs(p.get('datastore'))
    .map((r) => snap.datastores.get(refKey(r)))
    .filter((d): d is RawDatastore => !!d)
    .map((d) => ({ name: d.name, shared: d.shared, capacityGiB: d.capacityGiB, freeGiB: d.freeGiB }));

  const migrationNetwork = arrayItems(p.get('config.virtualNicManagerInfo.netConfig')).some(
    (c) => text(child(c, 'nicType')) === 'vmotion' && children(c, 'selectedVnic').some((s) => text(s) !== ''),
  );

  let memoryUsedMiB = 0;
  for (const vm of snap.vms) {
    if (vm.host && refKey(vm.host) === refKey(h.ref)) memoryUsedMiB += num(vm.props.get('config.hardware.memoryMB'));
  }

  return {
    name: ctx.ferryName(h.vcName),
    cluster: ctx.cluster,
    adapter: 'vsphere',
    cpu: {
      vendor: vendor.includes('intel') ? 'intel' : vendor.includes('amd') ? 'amd' : vendor,
      family: (leaf1 && cpuidFamily(text(child(leaf1, 'eax')))) || cpuModel || 'unknown',
      model: cpuModel || undefined,
      baseline: cluster?.evcMode,
      cores: num(child(hw, 'numCpuCores')),
    },
    memoryMiB: Math.floor(num(child(hw, 'memorySize')) / 1024 ** 2),
    memoryUsedMiB,
    maintenance: bool(p.get('runtime.inMaintenanceMode')) ?? false,
    portGroups,
    datastores,
    migrationNetwork,
    // Any ISO on a datastore the host mounts is reachable: "[LocalDS_0] iso/x.iso".
    isoLibraries: datastores.map((d) => `[${d.name}]`),
    hbas: hostHbas(h),
    version: optText(p.get('config.product.fullName')),
  };
}

export function hostHbas(h: RawHost): PhysicalHba[] {
  const out: PhysicalHba[] = [];
  for (const hba of arrayItems(h.props.get('config.storageDevice.hostBusAdapter'))) {
    if (xsiType(hba) !== 'HostFibreChannelHba') continue;
    const wwpn = optText(child(hba, 'portWorldWideName'));
    const wwnn = optText(child(hba, 'nodeWorldWideName'));
    if (!wwpn || !wwnn) continue;
    out.push({
      wwpn: wwnFromLong(wwpn),
      wwnn: wwnFromLong(wwnn),
      fabric: UNKNOWN_FABRIC,
      instance: text(child(hba, 'device')) || text(child(hba, 'key')),
      npivCapable: false,
    });
  }
  return out;
}

const POWER: Record<string, PowerState> = { poweredOn: 'running', poweredOff: 'off', suspended: 'saved' };

const DEVICE_KIND: Record<string, DeviceKind> = {
  VirtualCdrom: 'cdrom',
  VirtualFloppy: 'floppy',
  VirtualSerialPort: 'serial',
  VirtualParallelPort: 'parallel',
  VirtualUSB: 'usb',
};

/** Backings that are a physical device of the ESXi host (these pin a VM to its host). */
const HOST_DEVICE_BACKINGS = new Set([
  'VirtualCdromAtapiBackingInfo',
  'VirtualCdromPassthroughBackingInfo',
  'VirtualFloppyDeviceBackingInfo',
  'VirtualSerialPortDeviceBackingInfo',
  'VirtualParallelPortDeviceBackingInfo',
  'VirtualUSBUSBBackingInfo',
]);

export function vmDevices(deviceList: XmlValue | undefined): { devices: VmDevice[]; disks: { fileName: string; datastore?: MoRef; bytes: number }[] } {
  const devices: VmDevice[] = [];
  const disks: { fileName: string; datastore?: MoRef; bytes: number }[] = [];
  for (const d of arrayItems(deviceList)) {
    const type = xsiType(d) ?? '';
    const backing = child(d, 'backing');
    if (type === 'VirtualDisk') {
      const bytes = num(child(d, 'capacityInBytes'), -1);
      disks.push({
        fileName: text(child(backing, 'fileName')),
        datastore: moref(child(backing, 'datastore')),
        bytes: bytes >= 0 ? bytes : num(child(d, 'capacityInKB')) * 1024,
      });
      continue;
    }
    const kind = DEVICE_KIND[type];
    if (!kind) continue;
    const bType = xsiType(backing) ?? '';
    const dev: VmDevice = { kind, connected: bool(path(d, 'connectable.connected')) ?? false };
    const file = optText(child(backing, 'fileName'));
    const deviceName = optText(child(backing, 'deviceName'));
    if (file) dev.backing = file;
    else if (deviceName) dev.backing = deviceName;
    if (HOST_DEVICE_BACKINGS.has(bType)) dev.hostDevice = true;
    devices.push(dev);
  }
  return { devices, disks };
}

export function vmFacts(vm: RawVm, snap: Snapshot, ctx: MapContext): VmFacts {
  const p = vm.props;
  const host = vm.host ? snap.hosts.get(refKey(vm.host)) : undefined;
  const cluster = host?.parent ? snap.clusters.get(refKey(host.parent)) : undefined;
  const protection = p.get('runtime.dasVmProtection');
  const ha = protection !== undefined ? (bool(child(protection, 'dasProtected')) ?? false) : (cluster?.haEnabled ?? false);
  const { devices, disks } = vmDevices(p.get('config.hardware.device'));
  const dsNames = refs(p.get('datastore')).map((r) => snap.datastores.get(refKey(r))?.name);
  const vmDisks: VmDisk[] = disks.map((d) => {
    const m = /^\[([^\]]+)\]/.exec(d.fileName);
    const ds = (d.datastore && snap.datastores.get(refKey(d.datastore))?.name) || m?.[1] || dsNames[0] || '';
    return { path: d.fileName, datastore: ds, sizeGiB: round1(d.bytes / GiB) };
  });
  const ports = arrayItems(p.get('config.npivPortWorldWideName')).map((x) => wwnFromLong(text(x)));
  const nodes = arrayItems(p.get('config.npivNodeWorldWideName')).map((x) => wwnFromLong(text(x)));
  const vfc: VirtualFcAdapter[] =
    ports.length > 0 ? [{ name: 'NPIV', fabric: UNKNOWN_FABRIC, wwnn: nodes[0] ?? UNKNOWN_FABRIC, wwpns: ports }] : [];
  const affinitySet = (key: string): boolean => children(p.get(key), 'affinitySet').length > 0;
  const hostGroups = host ? hostFacts(host, snap, ctx).portGroups : [];
  return {
    name: vm.name,
    id: optText(p.get('config.instanceUuid')) ?? vm.ref.value,
    host: host ? ctx.ferryName(host.vcName) : '',
    power: POWER[text(p.get('runtime.powerState'))] ?? 'off',
    ha,
    memoryMiB: num(p.get('config.hardware.memoryMB')),
    cpus: num(p.get('config.hardware.numCPU')),
    disks: vmDisks,
    networks: refs(p.get('network'))
      .map((r) => snap.networks.get(refKey(r))?.name)
      .filter((n): n is string => !!n)
      .map((portGroup) => {
        const vlan = hostGroups.find((g) => g.name === portGroup)?.vlan;
        return vlan === undefined ? { portGroup } : { portGroup, vlan };
      }),
    devices,
    affinity: { cpu: affinitySet('config.cpuAffinity'), memory: affinitySet('config.memoryAffinity') },
    vfc,
  };
}
