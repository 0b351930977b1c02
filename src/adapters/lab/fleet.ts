/**
 * Deterministic lab fleet: the same seed and inventory always give the same hosts, VMs and
 * stale ports. Everything later workflows need is here: clusters with mixed CPU families,
 * HA and non-HA VMs, powered-off and saved VMs, local and shared datastores, connected ISOs,
 * affinity, anti-affinity groups, and NPIV ports, some of them left behind by old migrations
 * (seed 000's failure).
 */
import type { HostFacts, PhysicalHba, VirtualPort, VmFacts, Wwn } from '../types.js';

export interface LabHostState {
  facts: HostFacts;
  vms: VmFacts[];
  vports: VirtualPort[];
  /**
   * Ids of the last mutations applied to this host: a mutation a Redis failover may have lost
   * is applied again only if it is not here (the lab stands in for hosts, which a failover
   * cannot undo).
   */
  applied?: string[];
  /**
   * Migrations that brought each VM to this host, counted in the write that moves it: the lab's
   * own event log, where a real platform has its events (vCenter tasks, libvirt's logs). It
   * answers "did this VM move twice?" even when Ferry's audit lost the entry of a killed attempt.
   */
  arrivals?: Record<string, number>;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hex(n: number, width: number): string {
  return n.toString(16).toUpperCase().padStart(width, '0');
}

/** Hyper-V style dynamic WWPN: C003FF + 10 hex digits, as in seed 000. */
function virtualWwn(rand: () => number): Wwn {
  return 'C003FF' + hex(Math.floor(rand() * 0xffffff), 6) + hex(Math.floor(rand() * 0xffff) & 0xfffe, 4);
}

interface ClusterProfile {
  vendor: string;
  families: string[];
  baseline?: string;
  portGroups: { name: string; vlan: number }[];
}

const PROFILES: ClusterProfile[] = [
  { vendor: 'intel', families: ['skylake'], baseline: 'intel-skylake', portGroups: [{ name: 'prod', vlan: 100 }, { name: 'mgmt', vlan: 10 }, { name: 'backup', vlan: 20 }] },
  { vendor: 'intel', families: ['cascadelake', 'icelake'], baseline: 'intel-cascadelake', portGroups: [{ name: 'prod', vlan: 100 }, { name: 'dmz', vlan: 120 }, { name: 'mgmt', vlan: 10 }] },
  { vendor: 'amd', families: ['zen3'], baseline: 'amd-zen3', portGroups: [{ name: 'prod', vlan: 100 }, { name: 'mgmt', vlan: 10 }] },
  // No common baseline: live migration only between hosts of the same family.
  { vendor: 'intel', families: ['skylake', 'icelake'], portGroups: [{ name: 'dev', vlan: 300 }, { name: 'mgmt', vlan: 10 }] },
];

const ROLES = ['web', 'app', 'db', 'cache', 'mq', 'api', 'build', 'ldap', 'mail', 'log'];

/** One host and its VMs; the same random draws, in the same order, as the fleet always made. */
function makeHost(rand: () => number, profile: ClusterProfile, cluster: string, host: string, hostIndex: number, hi: number, vmName: (role: string) => string): LabHostState {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const shared = [`csv-${cluster}-01`, `csv-${cluster}-02`];
  const isoLib = `[${shared[0]}] iso`;
  const antiGroup = `${cluster}-dc`;
  const family = profile.families[hi % profile.families.length]!;
  const hbas: PhysicalHba[] = [0, 1].map((p) => ({
    wwpn: `500143802${hex(hostIndex, 3)}5B0${p * 2}`,
    wwnn: `500143802${hex(hostIndex, 3)}5B0${p * 2 + 1}`,
    fabric: p === 0 ? '100000C0DD00A0A0' : '100000C0DD00B0B0',
    instance: `PCI\\VEN_1077&DEV_2532&SUBSYS_3263103C&REV_02\\4&2af89a5&0&00${hex(8 + p, 2)}_${p}`,
    npivCapable: true,
    maxVports: 64,
  }));
  const facts: HostFacts = {
    name: host,
    cluster,
    adapter: 'lab',
    cpu: { vendor: profile.vendor, family, model: `${profile.vendor} ${family}`, baseline: profile.baseline, cores: 32 },
    memoryMiB: 512 * 1024,
    memoryUsedMiB: 0,
    maintenance: false,
    portGroups: profile.portGroups.map((p) => ({ ...p })),
    datastores: [
      ...shared.map((name) => ({ name, shared: true, capacityGiB: 20480, freeGiB: 8192 })),
      { name: `local-${host}`, shared: false, capacityGiB: 1024, freeGiB: 600 },
    ],
    // One host per cluster (the 7th) lacks a migration network: seed 004 says check both ends.
    migrationNetwork: hi !== 6,
    isoLibraries: [isoLib],
    hbas,
    version: 'Ferry lab 1.0',
  };
  // Internal-only switch on every 5th host, for the seed 004 check.
  if (hi % 5 === 4) facts.portGroups.push({ name: 'isolated', vlan: 0, internalOnly: true });

  const vms: VmFacts[] = [];
  const vports: VirtualPort[] = [];
  const count = 5 + Math.floor(rand() * 4);
  for (let v = 0; v < count; v++) {
    const role = pick(ROLES);
    const name = vmName(role);
    const r = rand();
    const ha = r > 0.12;
    const power = rand() < 0.1 ? 'off' : rand() < 0.04 ? 'saved' : 'running';
    const memoryMiB = pick([2048, 4096, 8192, 16384, 32768]);
    const ds = ha ? pick(shared) : `local-${host}`;
    const vm: VmFacts = {
      name,
      id: `${hex(Math.floor(rand() * 0xffffffff), 8)}-${hex(hostIndex, 4)}-4${hex(v, 3)}-8${hex(Math.floor(rand() * 0xfff), 3)}-${hex(Math.floor(rand() * 0xffffffff), 12)}`.toLowerCase(),
      host,
      power,
      ha,
      memoryMiB,
      cpus: pick([2, 4, 8]),
      disks: [{ path: `${ds}/${name}/${name}.vhdx`, datastore: ds, sizeGiB: pick([40, 80, 120, 200]) }],
      networks: [{ portGroup: profile.portGroups[0]!.name, vlan: profile.portGroups[0]!.vlan }],
      devices: [],
      affinity: { cpu: false, memory: false },
      vfc: [],
    };
    if (rand() < 0.15) vm.devices.push({ kind: 'cdrom', connected: true, backing: `${isoLib}/tools-${Math.floor(rand() * 9)}.iso` });
    if (rand() < 0.04) vm.devices.push({ kind: 'cdrom', connected: true, hostDevice: true, backing: 'host:/dev/sr0' });
    if (rand() < 0.03) vm.affinity.cpu = true;
    if (role === 'db' && rand() < 0.5) vm.antiAffinityGroup = antiGroup;
    if (hi % 5 === 4 && rand() < 0.15) vm.networks.push({ portGroup: 'isolated', vlan: 0 });
    if (rand() < 0.35) {
      // Virtual FC: two address sets (A/B) per adapter, one per fabric (seed 000).
      vm.vfc = hbas.map((hba, i) => ({ name: `Fibre Channel Adapter ${i + 1}`, fabric: hba.fabric, wwnn: virtualWwn(rand), wwpns: [virtualWwn(rand), virtualWwn(rand)] }));
      if (power === 'running') {
        for (const [i, a] of vm.vfc.entries()) {
          vports.push({ host, hbaWwpn: hbas[i]!.wwpn, wwpn: a.wwpns[0]!, wwnn: a.wwnn, fabric: a.fabric, fcId: 0x30000 + Math.floor(rand() * 0xffff) });
        }
      }
    }
    facts.memoryUsedMiB += memoryMiB;
    vms.push(vm);
  }
  return { facts, vms, vports };
}

export function generateFleet(seed: number, clusters: Record<string, string[]>): Map<string, LabHostState> {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const fleet = new Map<string, LabHostState>();
  const roleCount = new Map<string, number>();
  let hostIndex = 0;
  const allVms: VmFacts[] = [];
  const vmName = (role: string): string => {
    const n = (roleCount.get(role) ?? 0) + 1;
    roleCount.set(role, n);
    return `${role}${String(n).padStart(2, '0')}`;
  };

  for (const [ci, [cluster, hosts]] of Object.entries(clusters).entries()) {
    const profile = PROFILES[ci % PROFILES.length]!;
    for (const [hi, host] of hosts.entries()) {
      hostIndex++;
      const state = makeHost(rand, profile, cluster, host, hostIndex, hi, vmName);
      allVms.push(...state.vms);
      fleet.set(host, state);
    }
  }

  // Stale ports: about a third of the hosts keep a port that an earlier live migration left
  // behind: the "B" address of a VM now running elsewhere, exactly seed 000's deadlock story.
  const npivVms = allVms.filter((vm) => vm.vfc.length > 0);
  for (const [, state] of fleet) {
    if (rand() >= 0.33 || npivVms.length === 0) continue;
    const n = 1 + Math.floor(rand() * 2);
    for (let i = 0; i < n; i++) {
      const vm = pick(npivVms);
      if (vm.host === state.facts.name) continue;
      const a = pick(vm.vfc);
      const hba = state.facts.hbas.find((h) => h.fabric === a.fabric) ?? state.facts.hbas[0]!;
      if (state.vports.some((p) => p.wwpn === a.wwpns[1])) continue;
      state.vports.push({ host: state.facts.name, hbaWwpn: hba.wwpn, wwpn: a.wwpns[1]!, wwnn: a.wwnn, fabric: a.fabric, fcId: 0x30000 + Math.floor(rand() * 0xffff) });
    }
  }
  return fleet;
}

/**
 * Fleets too large to generate at once (10,000 hosts would be ~45 MB of JSON built in one
 * process) are made one host at a time, on first use, from the host's own seed: the same host
 * always comes out the same, and no process holds more than one host. VM names carry the host
 * (`web-h00042-3`); stale ports are B addresses of VMs that run elsewhere, drawn from the
 * host's own seed rather than from another host's VMs.
 */
export const LAZY_FLEET_MIN_HOSTS = 2000;

export function generateHost(seed: number, clusterIndex: number, cluster: string, host: string, hostIndex: number, hi: number): LabHostState {
  const rand = mulberry32((seed ^ Math.imul(hostIndex, 0x9e3779b1)) >>> 0);
  let v = 0;
  const state = makeHost(rand, PROFILES[clusterIndex % PROFILES.length]!, cluster, host, hostIndex, hi, (role) => `${role}-${host}-${++v}`);
  if (rand() < 0.33) {
    const n = 1 + Math.floor(rand() * 2);
    for (let i = 0; i < n; i++) {
      const hba = state.facts.hbas[Math.floor(rand() * state.facts.hbas.length)]!;
      state.vports.push({ host, hbaWwpn: hba.wwpn, wwpn: virtualWwn(rand), wwnn: virtualWwn(rand), fabric: hba.fabric, fcId: 0x30000 + Math.floor(rand() * 0xffff) });
    }
  }
  return state;
}
