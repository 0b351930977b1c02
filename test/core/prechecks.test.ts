import { describe, expect, it } from 'vitest';
import type { HostFacts, VmFacts } from '../../src/adapters/types.js';
import { mulberry32 } from '../../src/adapters/lab/fleet.js';
import {
  checkVmOnTarget,
  formatMiB,
  isoVisibleFrom,
  precheckDrain,
  precheckMigrate,
  renderDrainPrecheck,
  renderFindings,
  renderMigratePrecheck,
  type CheckOptions,
  type DrainInput,
  type Finding,
} from '../../src/core/prechecks.js';

// Fixtures: hyp03 (source) and hyp05 (target) of prod-a, identical but for their local datastores,
// so every row below differs from a clean pass by exactly one tweak.
const GiB = 1024;
const FABRIC_A = '100000C0DD00A0A0';

function host(name: string, over: Partial<HostFacts> = {}): HostFacts {
  return {
    name,
    cluster: 'prod-a',
    adapter: 'lab',
    cpu: { vendor: 'intel', family: 'skylake', baseline: 'intel-skylake', cores: 32 },
    memoryMiB: 256 * GiB,
    memoryUsedMiB: 64 * GiB,
    maintenance: false,
    portGroups: [
      { name: 'prod', vlan: 100 },
      { name: 'dmz', vlan: 120 },
      { name: 'mgmt', vlan: 10 },
    ],
    datastores: [
      { name: 'csv1', shared: true, capacityGiB: 10_000, freeGiB: 4_000 },
      { name: 'isos', shared: true, capacityGiB: 1_000, freeGiB: 500 },
      { name: `local-${name}`, shared: false, capacityGiB: 1_000, freeGiB: 600 },
    ],
    migrationNetwork: true,
    isoLibraries: ['[csv1] iso', '/srv/isos/'],
    hbas: [{ wwpn: 'C003FF0000000001', wwnn: 'C003FF0000000000', fabric: FABRIC_A, instance: 'scsi_host3', npivCapable: true }],
    ...over,
  };
}

function vm(name: string, over: Partial<VmFacts> = {}): VmFacts {
  return {
    name,
    id: `id-${name}`,
    host: 'hyp03',
    power: 'running',
    ha: true,
    memoryMiB: 8 * GiB,
    cpus: 4,
    disks: [{ path: `[csv1] ${name}/${name}.vmdk`, datastore: 'csv1', sizeGiB: 100 }],
    networks: [{ portGroup: 'prod' }, { portGroup: 'dmz', vlan: 120 }],
    devices: [],
    affinity: { cpu: false, memory: false },
    vfc: [],
    ...over,
  };
}

const codes = (fs: Finding[], sev: Finding['severity']): string[] => [...new Set(fs.filter((f) => f.severity === sev).map((f) => f.code))].sort();

interface Row {
  name: string;
  vm?: (v: VmFacts) => void;
  source?: (h: HostFacts) => void;
  target?: (h: HostFacts) => void;
  opts?: CheckOptions;
  /** Target name override (same-host rows). */
  sameHost?: boolean;
  block?: string[];
  warn?: string[];
  /** Exact message expected among the findings. */
  message?: string;
  /** Substring expected in some message. */
  contains?: string;
}

const rows: Row[] = [
  { name: 'clean pass' },
  { name: 'target is the source', sameHost: true, block: ['same-host'], message: 'web01 is already on hyp03; name another host, or a datastore to move only its storage.' },
  { name: 'target in maintenance', target: (h) => (h.maintenance = true), block: ['maintenance'], message: 'web01 cannot move to hyp05: hyp05 is in maintenance.' },
  { name: 'target cordoned', target: (h) => (h.cordoned = true), block: ['cordoned'], contains: 'hyp05 is cordoned' },
  { name: 'another platform', target: (h) => (h.adapter = 'vsphere'), block: ['platform'], contains: 'between platforms' },
  { name: 'another cluster (shared storage still visible)', target: (h) => (h.cluster = 'prod-b'), warn: ['cluster'], message: 'hyp05 is in cluster prod-b, not prod-a like hyp03.' },
  // CPU (seed 004 §4.3)
  {
    name: 'CPU vendor differs',
    target: (h) => (h.cpu = { vendor: 'amd', family: 'zen3', baseline: 'amd-zen3', cores: 64 }),
    block: ['cpu'],
    message: 'web01 cannot move live to hyp05: hyp03 has Intel CPUs and hyp05 has AMD CPUs.',
  },
  { name: 'CPU vendor spelled as CPUID', target: (h) => (h.cpu = { ...h.cpu, vendor: 'GenuineIntel' }) },
  { name: 'family differs, same EVC baseline', target: (h) => (h.cpu = { ...h.cpu, family: 'cascadelake' }) },
  {
    name: 'family differs, different baselines',
    target: (h) => (h.cpu = { ...h.cpu, family: 'icelake', baseline: 'intel-icelake' }),
    block: ['cpu'],
    contains: 'hyp03 is skylake and hyp05 is icelake with no common CPU baseline',
  },
  {
    name: 'family differs, no baselines',
    source: (h) => (h.cpu = { vendor: 'intel', family: 'skylake', cores: 32 }),
    target: (h) => (h.cpu = { vendor: 'intel', family: 'broadwell', cores: 32 }),
    block: ['cpu'],
  },
  { name: 'same family, different baselines', target: (h) => (h.cpu = { ...h.cpu, baseline: 'intel-broadwell' }), warn: ['cpu'], contains: 'runs at CPU baseline intel-skylake' },
  { name: 'cold: CPU vendor ignored', vm: (v) => (v.power = 'off'), target: (h) => (h.cpu = { vendor: 'amd', family: 'zen3', cores: 64 }) },
  {
    name: 'saved VM: CPU still matters (resume)',
    vm: (v) => (v.power = 'saved'),
    target: (h) => (h.cpu = { vendor: 'amd', family: 'zen3', cores: 64 }),
    block: ['cpu'],
    contains: 'web01 cannot resume its saved state on hyp05',
  },
  // Memory
  {
    name: 'target memory full',
    target: (h) => (h.memoryUsedMiB = 252 * GiB),
    block: ['memory'],
    message: 'web01 cannot move to hyp05: hyp05 has 4 GiB of memory free and web01 needs 8 GiB.',
  },
  { name: 'target memory within headroom', target: (h) => (h.memoryUsedMiB = 230 * GiB), warn: ['memory'], contains: 'hyp05 would be 93% committed afterwards' },
  // Storage (seed 004 §4.2)
  {
    name: 'datastore not visible from target',
    vm: (v) => (v.disks = [{ path: '[san9] web01/web01.vmdk', datastore: 'san9', sizeGiB: 40 }]),
    source: (h) => h.datastores.push({ name: 'san9', shared: true, capacityGiB: 100, freeGiB: 50 }),
    block: ['datastore'],
    message: 'web01 cannot move to hyp05: its disk web01.vmdk is on datastore san9, which hyp05 cannot see.',
  },
  {
    name: 'disk on the source local datastore',
    vm: (v) => (v.disks = [{ path: 'D:\\VMs\\web01.vhdx', datastore: 'local-hyp03', sizeGiB: 40 }]),
    block: ['datastore'],
    contains: 'on datastore local-hyp03, which hyp05 cannot see',
  },
  {
    name: 'same-named local datastores are different disks',
    vm: (v) => (v.disks = [{ path: '[datastore1] web01.vmdk', datastore: 'datastore1', sizeGiB: 40 }]),
    source: (h) => h.datastores.push({ name: 'datastore1', shared: false, capacityGiB: 100, freeGiB: 50 }),
    target: (h) => h.datastores.push({ name: 'datastore1', shared: false, capacityGiB: 100, freeGiB: 50 }),
    block: ['datastore'],
    contains: 'which is local to hyp03, not shared storage',
  },
  {
    name: 'two disks on an invisible datastore: one sentence',
    vm: (v) =>
      (v.disks = [
        { path: 'a.vmdk', datastore: 'san9', sizeGiB: 1 },
        { path: 'b.vmdk', datastore: 'san9', sizeGiB: 1 },
      ]),
    block: ['datastore'],
    message: 'web01 cannot move to hyp05: its disks a.vmdk and b.vmdk are on datastore san9, which hyp05 cannot see.',
  },
  // Storage move (seed 003)
  { name: 'storage move onto a local datastore of the target', vm: (v) => (v.disks[0]!.datastore = 'local-hyp03'), opts: { datastore: 'local-hyp05' } },
  {
    name: 'storage move: unknown datastore, near miss',
    opts: { datastore: 'local-hyp5' },
    block: ['datastore'],
    message: "web01 cannot move to hyp05: hyp05 has no datastore 'local-hyp5'; did you mean local-hyp05?",
  },
  {
    name: 'storage move: not enough free space with headroom',
    vm: (v) => (v.disks = [{ path: 'big.vmdk', datastore: 'local-hyp03', sizeGiB: 560 }]),
    opts: { datastore: 'local-hyp05' },
    block: ['datastore-space'],
    message: "web01 cannot move to hyp05: datastore local-hyp05 has 600 GiB free and web01's disks need 560 GiB plus 10% headroom (616 GiB).",
  },
  {
    name: 'storage move: fits but leaves the datastore nearly full',
    vm: (v) => (v.disks = [{ path: 'big.vmdk', datastore: 'local-hyp03', sizeGiB: 520 }]),
    opts: { datastore: 'local-hyp05' },
    warn: ['datastore-space'],
    contains: 'datastore local-hyp05 would be 92% full afterwards',
  },
  { name: 'storage move onto the shared datastore it is already on: nothing to copy', vm: (v) => (v.disks[0]!.sizeGiB = 99_999), opts: { datastore: 'csv1' } },
  { name: 'storage-only move on the same host', sameHost: true, opts: { datastore: 'local-hyp03' } },
  { name: 'storage-only move on the same host, already there', sameHost: true, opts: { datastore: 'csv1' }, block: ['same-host'], contains: 'its disks are already on csv1' },
  // Networks (seed 004 §4.4)
  {
    name: 'port group missing on target',
    target: (h) => (h.portGroups = h.portGroups.filter((p) => p.name !== 'dmz')),
    block: ['network'],
    message: "web01 cannot move to hyp05: hyp05 has no port group 'dmz' (VLAN 120).",
  },
  {
    name: 'VLAN differs',
    target: (h) => (h.portGroups = h.portGroups.map((p) => (p.name === 'prod' ? { ...p, vlan: 101 } : p))),
    block: ['network'],
    message: "web01 cannot move to hyp05: port group 'prod' is VLAN 101 on hyp05 but VLAN 100 on hyp03.",
  },
  {
    name: 'untagged on source, tagged on target',
    source: (h) => (h.portGroups = h.portGroups.map((p) => (p.name === 'mgmt' ? { name: 'mgmt' } : p))),
    vm: (v) => (v.networks = [{ portGroup: 'mgmt' }]),
    block: ['network'],
    contains: "port group 'mgmt' is VLAN 10 on hyp05 but untagged on hyp03",
  },
  {
    name: 'Hyper-V/libvirt style: the VM carries its own VLAN tag, switches define none (no finding)',
    source: (h) => (h.portGroups = [{ name: 'vSwitch-Prod' }]),
    target: (h) => (h.portGroups = [{ name: 'vSwitch-Prod' }]),
    vm: (v) => (v.networks = [{ portGroup: 'vSwitch-Prod', vlan: 120 }]),
    block: [],
  },
  {
    name: 'internal-only switch on the source',
    source: (h) => h.portGroups.push({ name: 'isolated', vlan: 0, internalOnly: true }),
    target: (h) => h.portGroups.push({ name: 'isolated', vlan: 0, internalOnly: true }),
    vm: (v) => v.networks.push({ portGroup: 'isolated' }),
    block: ['internal-switch'],
    message: "web01 cannot move live to hyp05: it is on port group 'isolated', an internal-only switch with no physical uplink on hyp03.",
  },
  {
    name: 'internal-only switch, cold',
    source: (h) => h.portGroups.push({ name: 'isolated', vlan: 0, internalOnly: true }),
    target: (h) => h.portGroups.push({ name: 'isolated', vlan: 0, internalOnly: true }),
    vm: (v) => {
      v.networks.push({ portGroup: 'isolated' });
      v.power = 'off';
    },
  },
  // Migration network (seed 004 §5.3)
  {
    name: 'no migration network on target',
    target: (h) => (h.migrationNetwork = false),
    block: ['migration-network'],
    message: 'web01 cannot move live to hyp05: hyp05 has no migration network (vMotion / live-migration network) configured.',
  },
  { name: 'no migration network on either end', source: (h) => (h.migrationNetwork = false), target: (h) => (h.migrationNetwork = false), block: ['migration-network'], contains: 'hyp03 and hyp05 have no migration network' },
  { name: 'no migration network, cold', target: (h) => (h.migrationNetwork = false), vm: (v) => (v.power = 'off') },
  // Devices and ISOs (seed 004 §4.6)
  {
    name: 'host CD-ROM connected',
    vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, hostDevice: true, backing: 'host:/dev/sr0' }),
    block: ['device'],
    message: 'web01 cannot move live to hyp05: its CD-ROM drive is connected to host:/dev/sr0 on hyp03; disconnect it first.',
  },
  { name: 'physical CD-ROM without backing', vm: (v) => v.devices.push({ kind: 'cdrom', connected: true }), block: ['device'] },
  { name: 'host CD-ROM disconnected', vm: (v) => v.devices.push({ kind: 'cdrom', connected: false, hostDevice: true }) },
  { name: 'floppy connected to host drive', vm: (v) => v.devices.push({ kind: 'floppy', connected: true, hostDevice: true }), block: ['device'], contains: 'its floppy drive is connected' },
  { name: 'serial port connected', vm: (v) => v.devices.push({ kind: 'serial', connected: true, backing: '/dev/ttyS0' }), block: ['device'], contains: 'its serial port is connected to /dev/ttyS0' },
  { name: 'parallel port writing to a file', vm: (v) => v.devices.push({ kind: 'parallel', connected: true, backing: '/tmp/lpt.out' }), block: ['device'], contains: 'parallel port' },
  { name: 'USB passthrough (not a host device) warns', vm: (v) => v.devices.push({ kind: 'usb', connected: true }), warn: ['device'] },
  { name: 'USB host device blocks', vm: (v) => v.devices.push({ kind: 'usb', connected: true, hostDevice: true }), block: ['device'] },
  { name: 'host CD-ROM connected, cold', vm: (v) => ((v.power = 'off'), v.devices.push({ kind: 'cdrom', connected: true, hostDevice: true })) },
  { name: 'ISO in the target library folder', vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, backing: '[csv1] iso/tools.iso' }) },
  { name: 'ISO on a shared datastore the target sees', vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, backing: '[isos] win2022.iso' }) },
  { name: 'ISO under a library path', vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, backing: '/srv/isos/debian.iso' }) },
  {
    name: 'ISO the target cannot see',
    vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, backing: '/home/bob/debian.iso' }),
    block: ['iso'],
    message: "web01 cannot move live to hyp05: its CD-ROM drive has /home/bob/debian.iso mounted, which hyp05 cannot see; eject it or copy the image to hyp05's library.",
  },
  {
    name: 'ISO on the source local datastore',
    vm: (v) => v.devices.push({ kind: 'cdrom', connected: true, backing: '[local-hyp03] iso/x.iso' }),
    block: ['iso'],
  },
  { name: 'ISO the target cannot see, disconnected', vm: (v) => v.devices.push({ kind: 'cdrom', connected: false, backing: '/home/bob/debian.iso' }) },
  { name: 'ISO the target cannot see, cold: warns', vm: (v) => ((v.power = 'off'), v.devices.push({ kind: 'cdrom', connected: true, backing: '/home/bob/x.iso' })), warn: ['iso'] },
  // Affinity (seed 004 §4.6)
  { name: 'CPU affinity', vm: (v) => (v.affinity.cpu = true), block: ['affinity'], message: 'web01 cannot move live to hyp05: it has CPU affinity set, which pins it to hyp03; clear it first.' },
  { name: 'memory affinity', vm: (v) => (v.affinity.memory = true), block: ['affinity'], contains: 'it has memory affinity set' },
  { name: 'CPU and memory affinity', vm: (v) => (v.affinity = { cpu: true, memory: true }), block: ['affinity'], contains: 'CPU and memory affinity' },
  { name: 'affinity, cold', vm: (v) => ((v.power = 'off'), (v.affinity.cpu = true)) },
  // Virtual Fibre Channel (seeds 000, 002)
  { name: 'vFC fabric present on target', vm: (v) => v.vfc.push({ name: 'FC 1', fabric: '10:00:00:c0:dd:00:a0:a0', wwnn: 'C003FF00000000AA', wwpns: ['C003FF00000000AB', 'C003FF00000000AC'] }) },
  {
    name: 'vFC fabric missing on target',
    vm: (v) => v.vfc.push({ name: 'FC 1', fabric: '100000C0DD00B0B0', wwnn: 'C003FF00000000AA', wwpns: ['C003FF00000000AB'] }),
    block: ['npiv'],
    contains: "its virtual Fibre Channel adapter 'FC 1' needs fabric 100000C0DD00B0B0 and hyp05 has no NPIV-capable HBA on it",
  },
  { name: 'vFC HBA not NPIV-capable', target: (h) => (h.hbas = h.hbas.map((b) => ({ ...b, npivCapable: false }))), vm: (v) => v.vfc.push({ name: 'FC 1', fabric: FABRIC_A, wwnn: 'A', wwpns: [] }), block: ['npiv'] },
  // Anti-affinity (soft for a single move)
  {
    name: 'anti-affinity peer on target',
    vm: (v) => (v.antiAffinityGroup = 'db'),
    opts: { targetVms: [vm('db02', { host: 'hyp05', antiAffinityGroup: 'db' }), vm('app9', { host: 'hyp05' })] },
    warn: ['anti-affinity'],
    message: "web01 can move to hyp05, but hyp05 already runs db02 of anti-affinity group 'db'.",
  },
  // Several at once: all reported, not just the first.
  {
    name: 'several problems at once',
    target: (h) => {
      h.maintenance = true;
      h.migrationNetwork = false;
      h.portGroups = [];
    },
    vm: (v) => (v.affinity.cpu = true),
    block: ['affinity', 'maintenance', 'migration-network', 'network'],
  },
];

describe('checkVmOnTarget (seed 004 per VM and target)', () => {
  it.each(rows)('$name', (row) => {
    const source = host('hyp03');
    const target = row.sameHost ? source : host('hyp05');
    const v = vm('web01');
    row.vm?.(v);
    row.source?.(source);
    if (!row.sameHost) row.target?.(target);
    const findings = checkVmOnTarget(v, source, target, row.opts);
    expect(codes(findings, 'block')).toEqual([...(row.block ?? [])].sort());
    expect(codes(findings, 'warn')).toEqual([...(row.warn ?? [])].sort());
    if (row.message) expect(findings.map((f) => f.message)).toContain(row.message);
    if (row.contains) expect(findings.some((f) => f.message.includes(row.contains!))).toBe(true);
    // Every sentence names the VM or the host it is about, and ends like a sentence.
    for (const f of findings) {
      expect(f.message).toMatch(/[.?]$/);
      expect(f.message.includes('web01') || f.message.includes('hyp05')).toBe(true);
    }
  });

  it('is pure: inputs are not modified', () => {
    const source = host('hyp03');
    const target = host('hyp05', { maintenance: true });
    const v = vm('web01', { devices: [{ kind: 'cdrom', connected: true, backing: '/x.iso' }] });
    const before = JSON.stringify([v, source, target]);
    checkVmOnTarget(v, source, target, { datastore: 'csv1' });
    checkVmOnTarget(v, source, target);
    expect(JSON.stringify([v, source, target])).toBe(before);
  });
});

describe('isoVisibleFrom', () => {
  const t = host('hyp05', { isoLibraries: ['\\\\lib\\ISOs', '[isolib]', '/exact/one.iso'] });
  it.each([
    ['\\\\LIB\\isos\\win.iso', true], // Windows paths compare case-insensitively
    ['[isolib] any/thing.iso', true],
    ['/exact/one.iso', true],
    ['/exact/one.iso.bak', false],
    ['[csv1] anything.iso', true], // shared datastore the target sees
    ['[local-hyp05] x.iso', false], // local datastores do not count: the VM sees the source's one
    ['/elsewhere/x.iso', false],
  ])('%s -> %s', (backing, expected) => {
    expect(isoVisibleFrom(backing, t)).toBe(expected);
  });
});

describe('precheckMigrate (single VM, bad input)', () => {
  const source = host('hyp03');

  it('refuses the same host in one sentence', () => {
    const p = precheckMigrate(vm('web01'), source, source);
    expect(p.ok).toBe(false);
    expect(p.error).toBe('web01 is already on hyp03; name another host, or add "datastore <name>" to move only its storage.');
    expect(renderMigratePrecheck(p)).toEqual([p.error]);
  });

  it('allows a storage-only move on the same host', () => {
    const p = precheckMigrate(vm('web01'), source, source, { datastore: 'local-hyp03' });
    expect(p.error).toBeUndefined();
    expect(p.ok).toBe(true);
    expect(renderMigratePrecheck(p)[0]).toBe('web01 can move live from hyp03 to hyp03 with its storage on local-hyp03.');
  });

  it('refuses another cluster without shared storage, suggesting a datastore', () => {
    const other = host('hyp21', {
      cluster: 'prod-b',
      datastores: [
        { name: 'csv-b1', shared: true, capacityGiB: 100, freeGiB: 90 },
        { name: 'local-hyp21', shared: false, capacityGiB: 100, freeGiB: 90 },
      ],
    });
    const p = precheckMigrate(vm('web01'), source, other);
    expect(p.ok).toBe(false);
    expect(p.error).toBe(
      "hyp21 is in cluster prod-b, not prod-a, and cannot see web01's storage (csv1); add a datastore of hyp21 to move the storage too, e.g. migrate web01 to hyp21 datastore csv-b1.",
    );
  });

  it('accepts another cluster with a datastore named (combined move, seed 003)', () => {
    const other = host('hyp21', { cluster: 'prod-b', datastores: [{ name: 'csv-b1', shared: true, capacityGiB: 1000, freeGiB: 900 }] });
    const p = precheckMigrate(vm('web01'), source, other, { datastore: 'csv-b1' });
    expect(p.error).toBeUndefined();
    expect(p.ok).toBe(true);
    expect(p.findings.map((f) => f.code)).toEqual(['cluster']);
  });

  it('accepts another cluster that shares the storage, with a warning', () => {
    const p = precheckMigrate(vm('web01'), source, host('hyp21', { cluster: 'prod-b' }));
    expect(p.ok).toBe(true);
    expect(renderMigratePrecheck(p)).toEqual(['web01 can move live from hyp03 to hyp21.', 'hyp21 is in cluster prod-b, not prod-a like hyp03.']);
  });

  it('says when the VM is not where the caller thinks', () => {
    const p = precheckMigrate(vm('web01', { host: 'hyp04' }), source, host('hyp05'));
    expect(p.error).toBe('web01 is on hyp04, not hyp03; check again with fresh inventory.');
  });

  it('powered-off VMs move cold and skip live-only checks', () => {
    const p = precheckMigrate(vm('web01', { power: 'off', affinity: { cpu: true, memory: false } }), source, host('hyp05', { migrationNetwork: false }));
    expect(p.mode).toBe('cold');
    expect(p.ok).toBe(true);
    expect(renderMigratePrecheck(p)[0]).toBe('web01 can move cold (powered off) from hyp03 to hyp05.');
  });

  it('renders blockers first with a count', () => {
    const p = precheckMigrate(vm('web01', { affinity: { cpu: true, memory: false } }), source, host('hyp05', { migrationNetwork: false, memoryUsedMiB: 240 * GiB }));
    const lines = renderMigratePrecheck(p);
    expect(lines[0]).toBe('web01 cannot move to hyp05: 2 problems.');
    expect(lines.slice(1).map((l) => l.startsWith('web01 cannot'))).toEqual([true, true, false]);
    expect(lines[3]).toContain('would be 97% committed');
  });
});

// ---------------------------------------------------------------------------------------
// Drain

function cluster(n: number, over: (h: HostFacts) => void = () => {}): HostFacts[] {
  return Array.from({ length: n }, (_, i) => {
    const h = host(`hyp0${i + 1}`);
    over(h);
    return h;
  });
}

function drainInput(over: Partial<DrainInput> & { tweak?: (hosts: HostFacts[], vms: VmFacts[]) => void } = {}): DrainInput {
  const hosts = cluster(4);
  const vms = [vm('web01'), vm('web02'), vm('db01', { memoryMiB: 32 * GiB })];
  over.tweak?.(hosts, vms);
  const { tweak: _t, ...rest } = over;
  return { host: hosts.find((h) => h.name === 'hyp03')!, vms, clusterHosts: hosts, maxInMaintenance: 1, ...rest };
}

interface DrainRow {
  name: string;
  input: Partial<DrainInput> & { tweak?: (hosts: HostFacts[], vms: VmFacts[]) => void };
  ok: boolean;
  blockers?: string[];
  warnings?: string[];
  actions?: Record<string, string>;
  sentences?: string[];
}

const drainRows: DrainRow[] = [
  { name: 'healthy cluster, HA VMs running', input: {}, ok: true, actions: { db01: 'live', web01: 'live', web02: 'live' } },
  {
    name: 'host already in maintenance',
    input: { tweak: (h) => (h[2]!.maintenance = true) },
    ok: false,
    blockers: ['host-maintenance'],
    sentences: ['hyp03 is already in maintenance; restore hyp03 brings it back, or drain another host.'],
  },
  {
    name: 'one other host in maintenance, limit 1',
    input: { tweak: (h) => (h[0]!.maintenance = true) },
    ok: false,
    blockers: ['maintenance-limit'],
    sentences: ['1 of 4 hosts of prod-a is already in maintenance (hyp01; limit 1).'],
  },
  {
    name: 'two other hosts in maintenance, limit 1',
    input: { tweak: (h) => ((h[0]!.maintenance = true), (h[1]!.cordoned = true)) },
    ok: false,
    blockers: ['maintenance-limit'],
    sentences: ['2 of 4 hosts of prod-a are already in maintenance (hyp01 and hyp02; limit 1).'],
    warnings: ['n-plus-one'],
  },
  { name: 'two other hosts in maintenance, limit 3', input: { maxInMaintenance: 3, tweak: (h) => ((h[0]!.maintenance = true), (h[1]!.maintenance = true)) }, ok: true, warnings: ['n-plus-one'] },
  {
    name: 'last healthy host of the cluster',
    input: { maxInMaintenance: 4, tweak: (h) => h.forEach((x, i) => i !== 2 && (x.maintenance = true)) },
    ok: false,
    blockers: ['last-host'],
    sentences: ['hyp03 is the last healthy host of prod-a; draining it would leave its VMs nowhere to run.'],
    actions: { db01: 'refuse', web01: 'refuse', web02: 'refuse' },
  },
  { name: 'single-host cluster', input: { tweak: (h) => h.splice(0, 4, ...h.filter((x) => x.name === 'hyp03')) }, ok: false, blockers: ['last-host'] },
  // Seed 001 rule 1
  {
    name: 'running non-HA VM is refused',
    input: { tweak: (_h, v) => (v[1]!.ha = false) },
    ok: false,
    actions: { db01: 'live', web01: 'live', web02: 'refuse' },
    sentences: ['web02 is running and not highly available: maintenance would put it in saved state and cut off its users; move it by hand first, or override to save it.'],
  },
  {
    name: 'running non-HA VM with the override is saved',
    input: { allowSaveNonHa: true, tweak: (_h, v) => (v[1]!.ha = false) },
    ok: true,
    actions: { db01: 'live', web01: 'live', web02: 'save' },
    sentences: ['web02 is running and not highly available: it will be saved on hyp03 and cut off until hyp03 leaves maintenance (override given).'],
  },
  // Seed 001 rule 1 is Hyper-V/SCVMM maintenance behaviour: vSphere (Ferry vMotions every VM
  // itself; vSphere HA plays no part) and libvirt have no such rule.
  {
    name: 'vSphere: a running VM without HA moves live like any other',
    input: { tweak: (h, v) => (h.forEach((x) => (x.adapter = 'vsphere')), (v[1]!.ha = false)) },
    ok: true,
    actions: { db01: 'live', web01: 'live', web02: 'live' },
  },
  {
    name: 'libvirt: a running domain moves live whatever its HA flag',
    input: { tweak: (h, v) => (h.forEach((x) => (x.adapter = 'libvirt')), (v[1]!.ha = false)) },
    ok: true,
    actions: { db01: 'live', web01: 'live', web02: 'live' },
  },
  {
    name: 'libvirt with save-non-ha: nothing is saved, every running VM moves, and the plan says the override changes nothing',
    input: { allowSaveNonHa: true, tweak: (h, v) => (h.forEach((x) => (x.adapter = 'libvirt')), (v[1]!.ha = false)) },
    ok: true,
    actions: { db01: 'live', web01: 'live', web02: 'live' },
    warnings: ['save-non-ha-moot'],
    sentences: ["save-non-ha changes nothing on libvirt: hyp03's maintenance saves no VM, and Ferry moves its running VMs live whether or not they are highly available."],
  },
  {
    name: 'vSphere with save-non-ha: the same, said once',
    input: { allowSaveNonHa: true, tweak: (h, v) => (h.forEach((x) => (x.adapter = 'vsphere')), (v[1]!.ha = false)) },
    ok: true,
    actions: { web02: 'live' },
    warnings: ['save-non-ha-moot'],
    sentences: ["save-non-ha changes nothing on vSphere: hyp03's maintenance saves no VM, and Ferry moves its running VMs live whether or not they are highly available."],
  },
  {
    name: 'Hyper-V: the running non-HA VM is refused, saying why',
    input: { tweak: (h, v) => (h.forEach((x) => (x.adapter = 'hyperv')), (v[1]!.ha = false)) },
    ok: false,
    actions: { web02: 'refuse' },
    sentences: ['web02 is running and not highly available: maintenance would put it in saved state and cut off its users; move it by hand first, or override to save it.'],
  },
  { name: 'paused non-HA VM is refused too', input: { tweak: (_h, v) => ((v[1]!.ha = false), (v[1]!.power = 'paused')) }, ok: false, actions: { web02: 'refuse' } },
  // Seed 001 rule 2
  {
    name: 'powered-off HA VM is reported, not moved',
    input: { tweak: (_h, v) => (v[0]!.power = 'off') },
    ok: true,
    actions: { db01: 'live', web01: 'skip', web02: 'live' },
    sentences: ['web01 is powered off: live migration does not move it, so it stays on hyp03 while it is in maintenance (cold migration can move it).'],
  },
  { name: 'saved HA VM is reported, not moved', input: { tweak: (_h, v) => (v[0]!.power = 'saved') }, ok: true, actions: { web01: 'skip' } },
  { name: 'powered-off non-HA VM stays (nobody is cut off)', input: { tweak: (_h, v) => ((v[0]!.power = 'off'), (v[0]!.ha = false)) }, ok: true, actions: { web01: 'skip' } },
  {
    name: 'powered-off VM with cold migration',
    input: { coldMigratePoweredOff: true, tweak: (_h, v) => (v[0]!.power = 'off') },
    ok: true,
    actions: { web01: 'cold' },
  },
  {
    name: 'powered-off VM with cold migration but nowhere to go stays',
    input: { coldMigratePoweredOff: true, tweak: (h, v) => ((v[0]!.power = 'off'), (v[0]!.networks = [{ portGroup: 'lab' }]), h[2]!.portGroups.push({ name: 'lab' })) },
    ok: true,
    actions: { web01: 'skip' },
    sentences: ['web01 is powered off and no host of prod-a can take it cold, so it stays on hyp03.'],
  },
  // Capacity and compatibility
  {
    name: 'not enough memory on the other hosts',
    input: { tweak: (h, v) => (h.forEach((x) => (x.memoryUsedMiB = 220 * GiB)), v.push(vm('big1', { memoryMiB: 20 * GiB }), vm('big2', { memoryMiB: 20 * GiB }))) },
    ok: false,
    blockers: ['capacity'],
    sentences: ['hyp01, hyp02 and hyp04 have 31.2 GiB of memory free (keeping 10% headroom) and the 5 VMs to move from hyp03 need 88 GiB.'],
    warnings: ['n-plus-one'],
  },
  {
    name: 'a VM no host can take is refused with reasons',
    input: { tweak: (_h, v) => (v[0]!.affinity.cpu = true) },
    ok: false,
    actions: { web01: 'refuse', web02: 'live' },
    sentences: ['web01 cannot move: no host of prod-a can take it, and maintenance would cut it off.'],
  },
  {
    name: 'N+1: the cluster would lose its spare host',
    input: { tweak: (h) => h.forEach((x) => (x.memoryUsedMiB = 180 * GiB)) },
    ok: true,
    warnings: ['n-plus-one'],
  },
];

describe('precheckDrain (seed 001 + host-level blockers)', () => {
  it.each(drainRows)('$name', (row) => {
    const p = precheckDrain(drainInput(row.input));
    expect(p.ok).toBe(row.ok);
    expect(p.blockers.map((b) => b.code).sort()).toEqual([...(row.blockers ?? [])].sort());
    expect(p.warnings.map((b) => b.code)).toEqual(row.warnings ?? []);
    for (const [name, action] of Object.entries(row.actions ?? {})) {
      expect(p.verdicts.find((v) => v.vm === name)?.action, name).toBe(action);
    }
    const all = [...p.blockers.map((b) => b.message), ...p.warnings.map((w) => w.message), ...p.verdicts.map((v) => v.sentence)];
    for (const s of row.sentences ?? []) expect(all).toContain(s);
    // Invariants on every row.
    expect(Object.values(p.counts).reduce((a, b) => a + b, 0)).toBe(p.verdicts.length);
    for (const v of p.verdicts) {
      expect(v.sentence).toContain(v.vm);
      if (v.action === 'live' || v.action === 'cold') {
        expect(v.target).toBeDefined();
        expect(v.sentence).toContain(v.target!);
      } else {
        expect(v.target).toBeUndefined();
      }
    }
  });

  it('names the target and why in each moving verdict', () => {
    const input = drainInput();
    input.clusterHosts[0]!.memoryUsedMiB = 10 * GiB; // hyp01 is the emptiest
    const p = precheckDrain(input);
    expect(p.verdicts.find((v) => v.vm === 'db01')!.sentence).toBe('db01 moves live to hyp01 (most free memory of 3 suitable hosts).');
  });

  it('cold verdicts say the power state', () => {
    const p = precheckDrain(drainInput({ coldMigratePoweredOff: true, tweak: (_h, v) => (v[0]!.power = 'saved') }));
    expect(p.verdicts.find((v) => v.vm === 'web01')!.sentence).toMatch(/^web01 is saved and moves cold to hyp0[124] \(most free memory of 3 suitable hosts\)\.$/);
  });

  it('refused VMs say why, merging hosts that refuse for the same reason', () => {
    const p = precheckDrain(
      drainInput({
        tweak: (h, v) => {
          v[0]!.affinity.cpu = true;
          h[0]!.portGroups = h[0]!.portGroups.filter((pg) => pg.name !== 'dmz');
        },
      }),
    );
    const web01 = p.verdicts.find((v) => v.vm === 'web01')!;
    expect(web01.details).toEqual([
      "web01 cannot move to hyp01: hyp01 has no port group 'dmz' (VLAN 120).",
      'web01 cannot move live to hyp01, hyp02, hyp04: it has CPU affinity set, which pins it to hyp03; clear it first.',
    ]);
  });

  it('a source without migration network is one host-level blocker', () => {
    const p = precheckDrain(drainInput({ tweak: (h, v) => ((h[2]!.migrationNetwork = false), (v[0]!.power = 'off')) }));
    expect(p.blockers.map((b) => b.message)).toEqual(['hyp03 has no migration network (vMotion / live-migration network) configured, so none of its 2 running VMs can move live.']);
    expect(p.verdicts.find((v) => v.vm === 'web02')!.details).toEqual([
      'web02 cannot move live to hyp01, hyp02, hyp04: hyp03 has no migration network (vMotion / live-migration network) configured.',
    ]);
  });

  it('keeps anti-affinity across the drain and with VMs already on the hosts', () => {
    const input = drainInput({
      tweak: (_h, v) => v.push(vm('db02', { antiAffinityGroup: 'db' }), vm('db03', { antiAffinityGroup: 'db' })),
      vmsByHost: { hyp01: [vm('db09', { host: 'hyp01', antiAffinityGroup: 'db' })] },
    });
    const p = precheckDrain(input);
    const targets = ['db02', 'db03'].map((n) => p.verdicts.find((v) => v.vm === n)!.target);
    expect(new Set(targets).size).toBe(2);
    expect(targets).not.toContain('hyp01');
  });

  it('renders a short verdict list', () => {
    const p = precheckDrain(drainInput({ tweak: (_h, v) => ((v[0]!.power = 'off'), (v[1]!.ha = false)) }));
    const lines = renderDrainPrecheck(p);
    expect(lines[0]).toBe('hyp03 cannot be drained: 1 VM refused.');
    expect(lines).toContain('web01 is powered off: live migration does not move it, so it stays on hyp03 while it is in maintenance (cold migration can move it).');
    const ok = renderDrainPrecheck(precheckDrain(drainInput({ allowSaveNonHa: true, tweak: (_h, v) => ((v[0]!.power = 'off'), (v[1]!.ha = false)) })));
    expect(ok[0]).toBe('hyp03 can be drained: 1 VM moves live, 1 will be saved in place, 1 stays (not running).');
    const blocked = renderDrainPrecheck(precheckDrain(drainInput({ tweak: (h, v) => ((h[2]!.maintenance = true), (v[0]!.ha = false)) })));
    expect(blocked.slice(0, 2)).toEqual(['hyp03 cannot be drained: 1 host problem, 1 VM refused.', 'hyp03 is already in maintenance; restore hyp03 brings it back, or drain another host.']);
  });

  it('caps details per VM when rendering', () => {
    const hosts = cluster(8);
    // Each host lacks a different port group: eight distinct reasons.
    hosts.forEach((h, i) => h.portGroups.push({ name: `pg${i}` }));
    const v = vm('web01', { networks: hosts.map((_, i) => ({ portGroup: `pg${i}` })) });
    const p = precheckDrain({ host: hosts[2]!, vms: [v], clusterHosts: hosts });
    const lines = renderDrainPrecheck(p, { maxDetails: 2 });
    expect(lines.filter((l) => l.startsWith('  '))).toHaveLength(3);
    expect(lines[lines.length - 1]).toBe('  …and 47 more.');
  });

  it('an empty host drains trivially', () => {
    const p = precheckDrain(drainInput({ vms: [] }));
    expect(p.ok).toBe(true);
    expect(renderDrainPrecheck(p)[0]).toBe('hyp03 can be drained: no VMs.');
  });

  it('does not depend on the order of its inputs', () => {
    const a = drainInput({ tweak: (_h, v) => v.push(vm('app1', { memoryMiB: 8 * GiB }), vm('app2', { antiAffinityGroup: 'x' })) });
    const b: DrainInput = { ...a, vms: [...a.vms].reverse(), clusterHosts: [...a.clusterHosts].reverse() };
    expect(precheckDrain(b)).toEqual(precheckDrain(a));
  });
});

describe('small helpers', () => {
  it('formats memory', () => {
    expect([formatMiB(512), formatMiB(1024), formatMiB(1536), formatMiB(8 * GiB), formatMiB(31.25 * GiB)]).toEqual(['512 MiB', '1 GiB', '1.5 GiB', '8 GiB', '31.3 GiB']);
  });
  it('renders findings blockers first', () => {
    const f = [
      { code: 'cluster', severity: 'warn' as const, message: 'w' },
      { code: 'cpu', severity: 'block' as const, message: 'b' },
      { code: 'x', severity: 'info' as const, message: 'i' },
    ];
    expect(renderFindings(f)).toEqual(['b', 'w', 'i']);
  });
});

// ---------------------------------------------------------------------------------------
// Drain properties over seeded random clusters (mulberry32; no fast-check).


function randomDrain(seed: number): DrainInput {
  const rand = mulberry32(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const chance = (p: number): boolean => rand() < p;
  const hosts = Array.from({ length: int(1, 7) }, (_, i) =>
    host(`hyp${String(i + 1).padStart(2, '0')}`, {
      memoryMiB: int(32, 256) * GiB,
      maintenance: chance(0.15),
      ...(chance(0.05) ? { cordoned: true } : {}),
      migrationNetwork: chance(0.93),
      ...(chance(0.1) ? { cpu: { vendor: 'amd', family: 'zen3', cores: 64 } } : {}),
    }),
  );
  for (const h of hosts) h.memoryUsedMiB = Math.floor(h.memoryMiB * rand() * 0.9);
  const source = hosts[int(0, hosts.length - 1)]!;
  if (chance(0.9)) source.maintenance = false;
  const powers = ['running', 'running', 'running', 'paused', 'off', 'saved'] as const;
  const vms = Array.from({ length: int(0, 15) }, (_, i) =>
    vm(`vm${String(i).padStart(2, '0')}`, {
      host: source.name,
      power: powers[int(0, powers.length - 1)]!,
      ha: chance(0.8),
      memoryMiB: [1, 2, 4, 8, 16, 32][int(0, 5)]! * GiB,
      affinity: { cpu: chance(0.05), memory: false },
      ...(chance(0.3) ? { antiAffinityGroup: chance(0.5) ? 'db' : 'web' } : {}),
    }),
  );
  return {
    host: source,
    vms,
    clusterHosts: hosts,
    maxInMaintenance: int(1, 3),
    allowSaveNonHa: chance(0.3),
    coldMigratePoweredOff: chance(0.5),
  };
}

describe('precheckDrain properties (250 seeded random clusters)', () => {
  const cases = Array.from({ length: 250 }, (_, i) => ({ seed: 5000 + i }));
  it.each(cases)('seed $seed', ({ seed }) => {
    const input = randomDrain(seed);
    const p = precheckDrain(input);
    const byName = new Map(input.clusterHosts.map((h) => [h.name, h]));
    expect(p.verdicts.map((v) => v.vmId).sort()).toEqual(input.vms.map((v) => v.id).sort());
    expect(p.ok).toBe(p.blockers.length === 0 && p.counts.refuse === 0);
    const added = new Map<string, number>();
    for (const v of p.verdicts) {
      const facts = input.vms.find((x) => x.id === v.vmId)!;
      const running = facts.power === 'running' || facts.power === 'paused';
      // Seed 001 rule 1 and rule 2, exactly.
      if (running && !facts.ha) expect(v.action).toBe(input.allowSaveNonHa ? 'save' : 'refuse');
      else if (running) expect(['live', 'refuse']).toContain(v.action);
      else expect(input.coldMigratePoweredOff ? ['cold', 'skip'] : ['skip']).toContain(v.action);
      if (v.action === 'refuse' && facts.ha) expect(v.details.length).toBeGreaterThan(0);
      if (v.target) {
        const t = byName.get(v.target)!;
        expect(t.name).not.toBe(input.host.name);
        expect(t.maintenance || t.cordoned === true).toBe(false);
        added.set(t.name, (added.get(t.name) ?? 0) + facts.memoryMiB);
      }
    }
    for (const [name, mib] of added) {
      const t = byName.get(name)!;
      expect(t.memoryUsedMiB + mib).toBeLessThanOrEqual(t.memoryMiB * 0.9 + 1e-6);
    }
    const down = input.clusterHosts.filter((h) => h.name !== input.host.name && (h.maintenance || h.cordoned)).length;
    const healthy = input.clusterHosts.length - 1 - down;
    const codes = p.blockers.map((b) => b.code);
    expect(codes.includes('last-host')).toBe(healthy === 0);
    expect(codes.includes('maintenance-limit')).toBe(healthy > 0 && down + 1 > input.maxInMaintenance!);
    expect(codes.includes('host-maintenance')).toBe(input.host.maintenance || input.host.cordoned === true);
    expect(precheckDrain(input)).toEqual(p);
    for (const line of renderDrainPrecheck(p)) expect(line.trim()).toMatch(/[.?]$/);
  });
});
