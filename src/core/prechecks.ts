/**
 * Migration prechecks (pure): no I/O, no clocks. Inputs are adapter facts; outputs are
 * findings with stable codes and plain sentences naming the VM, the target and the reason.
 *
 *  - checkVmOnTarget: seed 004's list for one VM and one candidate target.
 *  - precheckMigrate: the single-VM `precheck` / `migrate` commands, with bad-input sentences.
 *  - precheckDrain: seed 001 rules 1 and 2 per VM, host-level blockers, and the placement plan.
 *
 * Note: placement.ts imports checkVmOnTarget from here and precheckDrain calls planPlacement;
 * the import cycle is safe because neither module touches the other's exports at load time.
 */
import type { CheckFinding, HostFacts, MigrationMode, PowerState, VmDevice, VmFacts } from '../adapters/types.js';
import { planPlacement, type PlacementPlan } from './placement.js';
import { compressNames } from './selectors.js';
import { suggest } from './suggest.js';

/** Stable finding codes: tests, the lead's renderers and adapters' native checks share them. */
export type FindingCode =
  // Per VM and target (seed 004 and friends).
  | 'same-host'
  | 'maintenance'
  | 'cordoned'
  | 'platform'
  | 'cluster'
  | 'cpu'
  | 'memory'
  | 'datastore'
  | 'datastore-space'
  | 'network'
  | 'internal-switch'
  | 'migration-network'
  | 'device'
  | 'iso'
  | 'affinity'
  | 'npiv'
  | 'anti-affinity'
  // Host level (drain).
  | 'host-maintenance'
  | 'last-host'
  | 'maintenance-limit'
  | 'capacity'
  | 'n-plus-one'
  | 'save-non-ha-moot';

export type Severity = CheckFinding['severity'];

/** A CheckFinding with a known code; assignable to CheckFinding. */
export interface Finding extends CheckFinding {
  code: FindingCode;
  /** The candidate host the finding is about (per-target findings). */
  target?: string;
  /** The bare reason, without the "<vm> cannot move to <target>:" lead; used to merge hosts that fail alike. */
  reason?: string;
}

export interface CheckOptions {
  /** Default: live for running/paused VMs, cold for powered-off/saved ones. */
  mode?: MigrationMode;
  /** Move the storage too, onto this datastore of the target (seed 003). */
  datastore?: string;
  /** VMs on the target now: enables the (soft) anti-affinity warning. */
  targetVms?: readonly VmFacts[];
  /** Fraction of a host's memory kept free (default 0.1). */
  memoryHeadroom?: number;
  /** Extra free space required on a target datastore, as a fraction of what moves (default 0.1). */
  storageHeadroom?: number;
}

export const DEFAULT_MEMORY_HEADROOM = 0.1;
export const DEFAULT_STORAGE_HEADROOM = 0.1;

const SEVERITY_ORDER: Record<Severity, number> = { block: 0, warn: 1, info: 2 };

// ---------------------------------------------------------------------------------------
// Small helpers

/** 8192 -> "8 GiB", 1536 -> "1.5 GiB", 512 -> "512 MiB". */
export function formatMiB(mib: number): string {
  if (Math.abs(mib) < 1024) return `${Math.round(mib)} MiB`;
  return `${Number((mib / 1024).toFixed(1))} GiB`;
}

function formatGiB(gib: number): string {
  return `${Number(gib.toFixed(1))} GiB`;
}

/** Powered-off and saved VMs are not moved by live migration (seed 001 rule 2). */
export function defaultMode(vm: Pick<VmFacts, 'power'>): MigrationMode {
  return vm.power === 'running' || vm.power === 'paused' ? 'live' : 'cold';
}

export function isBlocking(f: CheckFinding): boolean {
  return f.severity === 'block';
}

export function sortFindings<T extends CheckFinding>(findings: readonly T[]): T[] {
  // Stable: same-severity findings keep check order (which reads like a checklist).
  return [...findings].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
}

function list(names: readonly string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** "<vm> <lead> <target>: <why>." — the one shape of a per-target refusal (summarizeRefusals relies on it). */
export function blockFinding(vm: string, lead: string, target: string, code: FindingCode, why: string): Finding {
  return { code, severity: 'block', message: sentence(`${vm} ${lead} ${target}: ${why}`), target, reason: why };
}

function sentence(text: string): string {
  return /[.?!]$/.test(text) ? text : `${text}.`;
}

/** Code-point order: the same everywhere, unlike localeCompare. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function normVendor(v: string): string {
  const l = v.trim().toLowerCase();
  if (l === 'genuineintel' || l.startsWith('intel')) return 'intel';
  if (l === 'authenticamd' || l.startsWith('amd')) return 'amd';
  return l;
}

function vendorLabel(v: string): string {
  const n = normVendor(v);
  return n === 'intel' ? 'Intel' : n === 'amd' ? 'AMD' : v;
}

function normWwn(w: string): string {
  return w.replace(/^0x/i, '').replace(/[:\-\s]/g, '').toUpperCase();
}

const DEVICE_LABEL: Record<VmDevice['kind'], string> = {
  cdrom: 'CD-ROM drive',
  floppy: 'floppy drive',
  serial: 'serial port',
  parallel: 'parallel port',
  usb: 'USB device',
};

/** Can the target open this ISO? Exact library entry, a library folder, or a shared datastore it sees. */
export function isoVisibleFrom(backing: string, target: HostFacts): boolean {
  const ds = /^\[([^\]]+)\]/.exec(backing);
  if (ds && target.datastores.some((d) => d.name === ds[1] && d.shared)) return true;
  const windows = backing.includes('\\');
  const b = windows ? backing.toLowerCase() : backing;
  for (const raw of target.isoLibraries ?? []) {
    const lib = (windows ? raw.toLowerCase() : raw).replace(/[\\/]+$/, '');
    if (!lib) continue;
    if (b === lib || b.startsWith(`${lib}/`) || b.startsWith(`${lib}\\`)) return true;
    // "[isos]" as a library entry: the whole datastore.
    if (/^\[[^\]]+\]$/.test(lib) && b.startsWith(lib)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// One VM, one target (seed 004)

/**
 * Everything that decides whether `vm` can move from `source` to `target`. Cold migration
 * (powered-off VM) skips the CPU, device, affinity, internal-switch and migration-network
 * checks (seed 004 "Workarounds"), except that a saved VM keeps the CPU check: its saved
 * state resumes on the target's processor.
 */
export function checkVmOnTarget(vm: VmFacts, source: HostFacts, target: HostFacts, opts: CheckOptions = {}): Finding[] {
  const mode = opts.mode ?? defaultMode(vm);
  const live = mode === 'live';
  const out: Finding[] = [];
  const block = (code: FindingCode, why: string, liveOnly = false): void => {
    out.push(blockFinding(vm.name, `cannot move${liveOnly ? ' live' : ''} to`, target.name, code, why));
  };
  const warn = (code: FindingCode, why: string): void => {
    out.push({ code, severity: 'warn', message: sentence(`${vm.name} can move to ${target.name}, but ${why}`), target: target.name, reason: why });
  };

  if (target.name === source.name) {
    // A storage-only move (seed 003: RelocateVM_Task with a datastore only) is the one
    // legitimate "same host" migration.
    if (!opts.datastore) {
      out.push({
        code: 'same-host',
        severity: 'block',
        message: `${vm.name} is already on ${target.name}; name another host, or a datastore to move only its storage.`,
        target: target.name,
        reason: 'it is already there',
      });
      return out;
    }
    datastoreFindings(vm, source, target, opts, block, warn);
    return out;
  }

  if (target.maintenance) block('maintenance', `${target.name} is in maintenance`);
  if (target.cordoned) block('cordoned', `${target.name} is cordoned (no new placements)`);
  if (target.adapter !== source.adapter) {
    block('platform', `${target.name} is a ${target.adapter} host and ${source.name} a ${source.adapter} host; Ferry cannot move VMs between platforms`);
  }
  if (target.cluster !== source.cluster) {
    out.push({
      code: 'cluster',
      severity: 'warn',
      message: `${target.name} is in cluster ${target.cluster}, not ${source.cluster} like ${source.name}.`,
      target: target.name,
      reason: `${target.name} is in cluster ${target.cluster}`,
    });
  }

  if (live || vm.power === 'saved') out.push(...cpuFindings(vm, source, target, live));
  memoryFindings(vm, target, opts.memoryHeadroom ?? DEFAULT_MEMORY_HEADROOM, block, warn);
  datastoreFindings(vm, source, target, opts, block, warn);

  // Port groups and VLANs: the guest keeps its addresses, so the target must present the same network.
  const seen = new Set<string>();
  for (const net of vm.networks) {
    if (seen.has(net.portGroup)) continue;
    seen.add(net.portGroup);
    const spg = source.portGroups.find((p) => p.name === net.portGroup);
    const tpg = target.portGroups.find((p) => p.name === net.portGroup);
    // VLANs are compared only where port groups carry them (vSphere, the lab). On Hyper-V and
    // libvirt the VM's adapter carries its own tag and the switch defines none: the tag moves
    // with the VM, so an untagged switch of the same name on both ends is a match.
    const vlanKnown = tpg?.vlan !== undefined || spg?.vlan !== undefined;
    const want = spg ? spg.vlan : net.vlan;
    const vlanText = (v: number | undefined): string => (v === undefined ? 'untagged' : `VLAN ${v}`);
    if (!tpg) {
      block('network', `${target.name} has no port group '${net.portGroup}'${want !== undefined ? ` (VLAN ${want})` : ''}`);
    } else if (vlanKnown && tpg.vlan !== want) {
      block('network', `port group '${net.portGroup}' is ${vlanText(tpg.vlan)} on ${target.name} but ${vlanText(want)} on ${source.name}`);
    }
    if (live && (spg?.internalOnly || tpg?.internalOnly)) {
      const where = spg?.internalOnly ? source.name : target.name;
      block('internal-switch', `it is on port group '${net.portGroup}', an internal-only switch with no physical uplink on ${where}`, true);
    }
  }

  if (live) {
    const missing = [source, target].filter((h) => !h.migrationNetwork).map((h) => h.name);
    if (missing.length) {
      block('migration-network', `${list(missing)} ${missing.length === 1 ? 'has' : 'have'} no migration network (vMotion / live-migration network) configured`, true);
    }
  }

  for (const d of vm.devices) {
    if (!d.connected) continue;
    const label = DEVICE_LABEL[d.kind];
    const iso = (d.kind === 'cdrom' || d.kind === 'floppy') && d.backing !== undefined && !d.hostDevice;
    if (iso) {
      if (isoVisibleFrom(d.backing!, target)) continue;
      if (live) block('iso', `its ${label} has ${d.backing} mounted, which ${target.name} cannot see; eject it or copy the image to ${target.name}'s library`, true);
      else warn('iso', `its ${label} has ${d.backing} mounted, which ${target.name} cannot see, so it will not find the image when it starts there`);
      continue;
    }
    if (!live) continue;
    if (d.hostDevice || d.kind !== 'usb') {
      block('device', `its ${label} is connected${d.backing ? ` to ${d.backing}` : ''} on ${source.name}; disconnect it first`, true);
    } else {
      warn('device', `its ${label} is connected${d.backing ? ` to ${d.backing}` : ''} and will be disconnected by the move`);
    }
  }

  if (live && (vm.affinity.cpu || vm.affinity.memory)) {
    const what = vm.affinity.cpu && vm.affinity.memory ? 'CPU and memory affinity' : vm.affinity.cpu ? 'CPU affinity' : 'memory affinity';
    block('affinity', `it has ${what} set, which pins it to ${source.name}; clear it first`, true);
  }

  // Virtual Fibre Channel (seeds 000, 002): the target needs an NPIV-capable port on each fabric.
  for (const a of vm.vfc) {
    const ok = target.hbas.some((h) => h.npivCapable && normWwn(h.fabric) === normWwn(a.fabric));
    if (ok) continue;
    const why = `its virtual Fibre Channel adapter '${a.name}' needs fabric ${normWwn(a.fabric)} and ${target.name} has no NPIV-capable HBA on it`;
    if (live) block('npiv', why);
    else warn('npiv', `${why}; it will not reach its storage when started there`);
  }

  if (vm.antiAffinityGroup && opts.targetVms) {
    const peers = opts.targetVms.filter((o) => o.antiAffinityGroup === vm.antiAffinityGroup && o.id !== vm.id).map((o) => o.name);
    if (peers.length) warn('anti-affinity', `${target.name} already runs ${list(peers)} of anti-affinity group '${vm.antiAffinityGroup}'`);
  }
  return out;
}

function cpuFindings(vm: VmFacts, source: HostFacts, target: HostFacts, live: boolean): Finding[] {
  const s = source.cpu;
  const t = target.cpu;
  const lead = live ? 'cannot move live to' : 'cannot resume its saved state on';
  const msg = (why: string): Finding => blockFinding(vm.name, lead, target.name, 'cpu', why);
  if (normVendor(s.vendor) !== normVendor(t.vendor)) {
    return [msg(`${source.name} has ${vendorLabel(s.vendor)} CPUs and ${target.name} has ${vendorLabel(t.vendor)} CPUs`)];
  }
  const sameBaseline = s.baseline !== undefined && s.baseline === t.baseline;
  if (s.family.toLowerCase() !== t.family.toLowerCase() && !sameBaseline) {
    const baselines = s.baseline && t.baseline ? ` (baselines ${s.baseline} and ${t.baseline})` : '';
    return [msg(`${source.name} is ${s.family} and ${target.name} is ${t.family} with no common CPU baseline (EVC / processor compatibility)${baselines}`)];
  }
  if (s.baseline && t.baseline && s.baseline !== t.baseline) {
    // Same family, different masks: fine when the target exposes at least the source's features; only the platform knows.
    const why = `it runs at CPU baseline ${s.baseline} on ${source.name} and ${target.name} runs at ${t.baseline}`;
    return [{ code: 'cpu', severity: 'warn', message: `${vm.name} can move to ${target.name}, but ${why}.`, target: target.name, reason: why }];
  }
  return [];
}

function memoryFindings(
  vm: VmFacts,
  target: HostFacts,
  headroom: number,
  block: (c: FindingCode, why: string) => void,
  warn: (c: FindingCode, why: string) => void,
): void {
  const free = target.memoryMiB - target.memoryUsedMiB;
  const after = target.memoryUsedMiB + vm.memoryMiB;
  if (vm.memoryMiB > free) {
    block('memory', `${target.name} has ${formatMiB(Math.max(0, free))} of memory free and ${vm.name} needs ${formatMiB(vm.memoryMiB)}`);
  } else if (after > target.memoryMiB * (1 - headroom)) {
    warn('memory', `${target.name} would be ${Math.round((after / target.memoryMiB) * 100)}% committed afterwards (headroom ${Math.round(headroom * 100)}%)`);
  }
}

function datastoreFindings(
  vm: VmFacts,
  source: HostFacts,
  target: HostFacts,
  opts: CheckOptions,
  block: (c: FindingCode, why: string) => void,
  warn: (c: FindingCode, why: string) => void,
): void {
  if (opts.datastore) {
    // Combined host + storage move (seed 003): the target's datastore and its free space decide.
    const ds = target.datastores.find((d) => d.name === opts.datastore);
    if (!ds) {
      const hint = suggest(opts.datastore, target.datastores.map((d) => d.name));
      const known = target.datastores.map((d) => d.name);
      block('datastore', `${target.name} has no datastore '${opts.datastore}'${hint ? `; did you mean ${hint}?` : known.length ? ` (it has ${list(known)})` : ''}`);
      return;
    }
    const sourceDs = source.datastores.find((d) => d.name === ds.name);
    // A disk already on this very datastore stays put only when both hosts see the same shared storage.
    const sameStorage = ds.shared && sourceDs?.shared === true;
    const moving = vm.disks.filter((d) => !(d.datastore === ds.name && sameStorage));
    const need = moving.reduce((sum, d) => sum + d.sizeGiB, 0);
    if (moving.length === 0 && target.name === source.name) {
      block('same-host', `its disks are already on ${ds.name}`);
      return;
    }
    const headroom = opts.storageHeadroom ?? DEFAULT_STORAGE_HEADROOM;
    const required = need * (1 + headroom);
    if (ds.freeGiB < required) {
      block(
        'datastore-space',
        `datastore ${ds.name} has ${formatGiB(ds.freeGiB)} free and ${vm.name}'s disks need ${formatGiB(need)} plus ${Math.round(headroom * 100)}% headroom (${formatGiB(required)})`,
      );
    } else if (ds.capacityGiB > 0 && ds.freeGiB - need < ds.capacityGiB * 0.1) {
      warn('datastore-space', `datastore ${ds.name} would be ${Math.round(((ds.capacityGiB - ds.freeGiB + need) / ds.capacityGiB) * 100)}% full afterwards`);
    }
    return;
  }
  // Plain live/cold migration: every disk must stay where it is, on storage both hosts share (seed 004 §4.2).
  const byDs = new Map<string, string[]>();
  for (const d of vm.disks) byDs.set(d.datastore, [...(byDs.get(d.datastore) ?? []), d.path]);
  for (const [name, paths] of byDs) {
    const t = target.datastores.find((d) => d.name === name);
    const s = source.datastores.find((d) => d.name === name);
    const disks = `${paths.length === 1 ? 'its disk' : 'its disks'} ${list(paths.map(baseName))}`;
    if (!t) {
      block('datastore', `${disks} ${paths.length === 1 ? 'is' : 'are'} on datastore ${name}, which ${target.name} cannot see`);
    } else if (!t.shared || s?.shared === false) {
      // Same name, local on each host ("datastore1"): different disks, not shared storage.
      const local = s?.shared === false ? source.name : target.name;
      block('datastore', `${disks} ${paths.length === 1 ? 'is' : 'are'} on datastore ${name}, which is local to ${local}, not shared storage`);
    }
  }
}

function baseName(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'), path.lastIndexOf(']'));
  return path.slice(i + 1).trim() || path;
}

// ---------------------------------------------------------------------------------------
// Single VM: `precheck web01 to hyp05`, `migrate web01 to hyp05 [datastore ds2]`

/** One VM's move: what a migrate precheck checks and what the workers carry out. */
export interface MoveSpec {
  vm: string;
  vmId: string;
  source: string;
  target: string;
  mode: MigrationMode;
  datastore?: string;
}

export interface MigratePrecheck extends MoveSpec {
  /** No input error and no blocking finding. */
  ok: boolean;
  /** Bad input, one sentence: nothing to check further (same host, other cluster without shared storage…). */
  error?: string;
  findings: Finding[];
}

export function precheckMigrate(vm: VmFacts, source: HostFacts, target: HostFacts, opts: CheckOptions = {}): MigratePrecheck {
  const mode = opts.mode ?? defaultMode(vm);
  const base = { vm: vm.name, vmId: vm.id, source: source.name, target: target.name, mode, ...(opts.datastore ? { datastore: opts.datastore } : {}) };
  const fail = (error: string): MigratePrecheck => ({ ...base, ok: false, error, findings: [] });

  if (vm.host !== source.name) return fail(`${vm.name} is on ${vm.host}, not ${source.name}; check again with fresh inventory.`);
  if (target.name === source.name && !opts.datastore) {
    return fail(`${vm.name} is already on ${target.name}; name another host, or add "datastore <name>" to move only its storage.`);
  }
  const findings = sortFindings(checkVmOnTarget(vm, source, target, { ...opts, mode }));
  if (target.cluster !== source.cluster && !opts.datastore && findings.some((f) => f.code === 'datastore' && isBlocking(f))) {
    const stores = [...new Set(vm.disks.map((d) => d.datastore))];
    const example = target.datastores.find((d) => d.shared)?.name ?? target.datastores[0]?.name ?? '<name>';
    return fail(
      `${target.name} is in cluster ${target.cluster}, not ${source.cluster}, and cannot see ${vm.name}'s storage (${list(stores)}); ` +
        `add a datastore of ${target.name} to move the storage too, e.g. migrate ${vm.name} to ${target.name} datastore ${example}.`,
    );
  }
  return { ...base, ok: !findings.some(isBlocking), findings };
}

/** A precheck with findings from outside the pure checks (the adapter's migration-path test). */
export function withFindings(p: MigratePrecheck, extra: readonly Finding[]): MigratePrecheck {
  if (p.error || extra.length === 0) return p;
  const findings = sortFindings([...p.findings, ...extra]);
  return { ...p, findings, ok: !findings.some(isBlocking) };
}

/** Short sentences for a single-VM precheck: the verdict first, then each finding. */
export function renderMigratePrecheck(p: MigratePrecheck): string[] {
  if (p.error) return [p.error];
  const how = p.mode === 'live' ? 'live' : 'cold (powered off)';
  const storage = p.datastore ? ` with its storage on ${p.datastore}` : '';
  const head = p.ok
    ? `${p.vm} can move ${how} from ${p.source} to ${p.target}${storage}.`
    : `${p.vm} cannot move to ${p.target}: ${plural(p.findings.filter(isBlocking).length, 'problem')}.`;
  return [head, ...p.findings.map((f) => f.message)];
}

// ---------------------------------------------------------------------------------------
// Drain (seed 001 + seed 004 per candidate)

/**
 * live    moves by live migration to `target`
 * cold    powered off / saved, moves cold to `target` (opt-in, seed 001 rule 2)
 * save    running non-HA, will be saved in place and cut off (override given, seed 001 rule 1)
 * skip    stays on the host, reported (powered off / saved without cold migration, or no cold target)
 * refuse  blocks the drain: running non-HA without override, or no host can take it
 */
export type VmAction = 'live' | 'cold' | 'save' | 'skip' | 'refuse';

export interface VmVerdict {
  vm: string;
  vmId: string;
  power: PowerState;
  ha: boolean;
  memoryMiB: number;
  action: VmAction;
  /** For live and cold. */
  target?: string;
  /** One sentence naming the VM, the target (if any) and the reason. */
  sentence: string;
  /** Supporting sentences: warnings for the chosen target, or why each host was refused. */
  details: string[];
}

export interface DrainInput {
  host: HostFacts;
  /** The host's VMs (the snapshot). */
  vms: readonly VmFacts[];
  /** Every host of the cluster, the source included. */
  clusterHosts: readonly HostFacts[];
  /** VMs on the other hosts, for anti-affinity. Memory comes from HostFacts.memoryUsedMiB. */
  vmsByHost?: Readonly<Record<string, readonly VmFacts[]>>;
  /** Hosts of the cluster allowed in maintenance at once, this one included (default 1). */
  maxInMaintenance?: number;
  /** Seed 001 rule 1 override: running non-HA VMs are saved in place instead of refusing. */
  allowSaveNonHa?: boolean;
  /** Seed 001 rule 2 option: move powered-off and saved VMs by cold migration. */
  coldMigratePoweredOff?: boolean;
  /** Fraction of each host's memory kept free (default 0.1). */
  memoryHeadroom?: number;
}

export interface DrainPrecheck {
  host: string;
  cluster: string;
  /** The drain may start: no host blocker and no refused VM. */
  ok: boolean;
  /** Host-level blocking findings (already in maintenance, last host, maintenance limit, capacity). */
  blockers: Finding[];
  /** Host-level warnings (N+1). */
  warnings: Finding[];
  /** One per VM, in name order. */
  verdicts: VmVerdict[];
  /** The raw placement (what the ledger stores). */
  plan: PlacementPlan;
  counts: Record<VmAction, number>;
}

/**
 * Seed 001 rule 1 describes Hyper-V / SCVMM maintenance: a failover cluster node drains only
 * its clustered (highly available) roles, and a running VM that is not one is put in saved
 * state. The lab simulates that behaviour. vSphere has no such rule (Ferry vMotions every VM
 * itself; vSphere HA is about restarts after a failure and plays no part in vMotion), nor
 * has libvirt (no cluster roles: Ferry migrates every domain with virsh).
 */
export function maintenanceSavesNonHa(adapter: HostFacts['adapter']): boolean {
  return adapter === 'hyperv' || adapter === 'lab';
}

function unavailable(h: HostFacts): boolean {
  return h.maintenance || h.cordoned === true;
}

export function precheckDrain(input: DrainInput): DrainPrecheck {
  const { host } = input;
  const headroom = input.memoryHeadroom ?? DEFAULT_MEMORY_HEADROOM;
  const limit = input.maxInMaintenance ?? 1;
  const others = input.clusterHosts.filter((h) => h.name !== host.name).sort((a, b) => cmp(a.name, b.name));
  const healthy = others.filter((h) => !unavailable(h));
  const blockers: Finding[] = [];
  const warnings: Finding[] = [];

  if (host.maintenance || host.cordoned) {
    const state = host.maintenance ? 'in maintenance' : 'cordoned';
    blockers.push({ code: 'host-maintenance', severity: 'block', message: `${host.name} is already ${state}; restore ${host.name} brings it back, or drain another host.` });
  }
  if (healthy.length === 0) {
    blockers.push({
      code: 'last-host',
      severity: 'block',
      message: `${host.name} is the last healthy host of ${host.cluster}; draining it would leave its VMs nowhere to run.`,
    });
  } else {
    // Counting other hosts already down; draining this one adds one (skip the redundant sentence for last-host).
    const down = others.filter(unavailable).map((h) => h.name);
    if (down.length + 1 > limit) {
      blockers.push({
        code: 'maintenance-limit',
        severity: 'block',
        message: `${down.length} of ${input.clusterHosts.length} hosts of ${host.cluster} ${down.length === 1 ? 'is' : 'are'} already in maintenance (${list(down)}; limit ${limit}).`,
      });
    }
  }

  // Seed 001: what moves, what stays, what is refused.
  const sorted = [...input.vms].sort((a, b) => cmp(a.name, b.name) || cmp(a.id, b.id));
  const toMove: VmFacts[] = [];
  const verdicts = new Map<string, VmVerdict>();
  const verdict = (vm: VmFacts, action: VmAction, sentence: string, details: string[] = [], target?: string): VmVerdict => ({
    vm: vm.name,
    vmId: vm.id,
    power: vm.power,
    ha: vm.ha,
    memoryMiB: vm.memoryMiB,
    action,
    ...(target ? { target } : {}),
    sentence,
    details,
  });
  const nonHaRule = maintenanceSavesNonHa(host.adapter);
  if (input.allowSaveNonHa && !nonHaRule) {
    // The override asks for something this platform never does: say so rather than ignore it.
    warnings.push({
      code: 'save-non-ha-moot',
      severity: 'warn',
      message: `save-non-ha changes nothing on ${host.adapter === 'vsphere' ? 'vSphere' : host.adapter}: ${host.name}'s maintenance saves no VM, and Ferry moves its running VMs live whether or not they are highly available.`,
    });
  }
  for (const vm of sorted) {
    const live = defaultMode(vm) === 'live';
    if (live && !vm.ha && nonHaRule) {
      verdicts.set(
        vm.id,
        input.allowSaveNonHa
          ? verdict(vm, 'save', `${vm.name} is ${vm.power} and not highly available: it will be saved on ${host.name} and cut off until ${host.name} leaves maintenance (override given).`)
          : verdict(
              vm,
              'refuse',
              `${vm.name} is ${vm.power} and not highly available: maintenance would put it in saved state and cut off its users; move it by hand first, or override to save it.`,
            ),
      );
    } else if (!live && !input.coldMigratePoweredOff) {
      verdicts.set(
        vm.id,
        verdict(vm, 'skip', `${vm.name} is ${powerWord(vm.power)}: live migration does not move it, so it stays on ${host.name} while it is in maintenance (cold migration can move it).`),
      );
    } else {
      toMove.push(vm);
    }
  }

  const plan = planPlacement({ vms: toMove, source: host, candidates: others, vmsByHost: input.vmsByHost ?? {}, mode: 'auto', memoryHeadroom: headroom });
  for (const a of plan.assignments) {
    const vm = toMove.find((v) => v.id === a.vmId)!;
    const sentence =
      a.mode === 'live'
        ? `${vm.name} moves live to ${a.target} (${a.reason}).`
        : `${vm.name} is ${powerWord(vm.power)} and moves cold to ${a.target} (${a.reason}).`;
    verdicts.set(vm.id, verdict(vm, a.mode, sentence, a.warnings, a.target));
  }
  for (const u of plan.unplaced) {
    const vm = toMove.find((v) => v.id === u.vmId)!;
    verdicts.set(
      vm.id,
      defaultMode(vm) === 'live'
        ? verdict(vm, 'refuse', `${vm.name} cannot move: no host of ${host.cluster} can take it, and maintenance would cut it off.`, u.reasons)
        : verdict(vm, 'skip', `${vm.name} is ${powerWord(vm.power)} and no host of ${host.cluster} can take it cold, so it stays on ${host.name}.`, u.reasons),
    );
  }

  // The source's own migration network decides for every live VM: say it once, at host level.
  const liveMoves = toMove.filter((v) => defaultMode(v) === 'live').length;
  if (!host.migrationNetwork && liveMoves > 0) {
    blockers.push({
      code: 'migration-network',
      severity: 'block',
      message: `${host.name} has no migration network (vMotion / live-migration network) configured, so none of its ${plural(liveMoves, 'running VM')} can move live.`,
    });
  }

  // Capacity (N): can the healthy hosts hold what moves, keeping headroom? Said once for the host,
  // even though the planner also refuses the VMs that did not fit.
  const moving = toMove.reduce((s, v) => s + v.memoryMiB, 0);
  const room = healthy.reduce((s, h) => s + Math.max(0, h.memoryMiB * (1 - headroom) - h.memoryUsedMiB), 0);
  if (healthy.length > 0 && moving > room) {
    blockers.push({
      code: 'capacity',
      severity: 'block',
      message: `${list(healthy.map((h) => h.name))} ${healthy.length === 1 ? 'has' : 'have'} ${formatMiB(room)} of memory free (keeping ${Math.round(headroom * 100)}% headroom) and the ${plural(toMove.length, 'VM')} to move from ${host.name} need ${formatMiB(moving)}.`,
    });
  }

  // N+1: after the drain, could the cluster still absorb the loss of its busiest remaining host?
  if (healthy.length > 0) {
    const usedAfter = new Map(healthy.map((h) => [h.name, h.memoryUsedMiB]));
    for (const a of plan.assignments) usedAfter.set(a.target, (usedAfter.get(a.target) ?? 0) + a.memoryMiB);
    const busiest = [...healthy].sort((a, b) => usedAfter.get(b.name)! - usedAfter.get(a.name)! || cmp(a.name, b.name))[0]!;
    const rest = healthy.filter((h) => h !== busiest);
    const spare = rest.reduce((s, h) => s + Math.max(0, h.memoryMiB - usedAfter.get(h.name)!), 0);
    const load = usedAfter.get(busiest.name)!;
    if (load > spare) {
      warnings.push({
        code: 'n-plus-one',
        severity: 'warn',
        message: rest.length
          ? `With ${host.name} drained, ${host.cluster} has no spare host: if ${busiest.name} failed, its ${formatMiB(load)} of VMs would not fit in the ${formatMiB(spare)} free on ${list(rest.map((h) => h.name))}.`
          : `With ${host.name} drained, ${busiest.name} is the only host left running in ${host.cluster}; nothing could take its VMs if it failed.`,
      });
    }
  }

  const ordered = sorted.map((v) => verdicts.get(v.id)!);
  const counts: Record<VmAction, number> = { live: 0, cold: 0, save: 0, skip: 0, refuse: 0 };
  for (const v of ordered) counts[v.action]++;
  return {
    host: host.name,
    cluster: host.cluster,
    ok: blockers.length === 0 && counts.refuse === 0,
    blockers,
    warnings,
    verdicts: ordered,
    plan,
    counts,
  };
}

function powerWord(p: PowerState): string {
  return p === 'off' ? 'powered off' : p;
}

export interface RenderOptions {
  /** Supporting sentences shown per VM (the rest are counted). Default 3. */
  maxDetails?: number;
}

/** Short sentences: the verdict, host blockers and warnings, then one sentence per VM (details indented by two spaces). */
export function renderDrainPrecheck(p: DrainPrecheck, opts: RenderOptions = {}): string[] {
  const max = opts.maxDetails ?? 3;
  const c = p.counts;
  const parts: string[] = [];
  if (c.live) parts.push(`${plural(c.live, 'VM')} move${c.live === 1 ? 's' : ''} live`);
  if (c.cold) parts.push(`${c.cold} move${c.cold === 1 ? 's' : ''} cold`);
  if (c.save) parts.push(`${c.save} will be saved in place`);
  if (c.skip) parts.push(`${c.skip} stay${c.skip === 1 ? 's' : ''} (not running)`);
  if (c.refuse) parts.push(`${c.refuse} refused`);
  const summary = parts.length ? parts.join(', ') : 'no VMs';
  const head = p.ok
    ? `${p.host} can be drained: ${summary}.`
    : `${p.host} cannot be drained${p.blockers.length ? `: ${plural(p.blockers.length, 'host problem')}` : ''}${c.refuse ? `${p.blockers.length ? ',' : ':'} ${plural(c.refuse, 'VM')} refused` : ''}.`;
  const out = [head, ...p.blockers.map((f) => f.message), ...p.warnings.map((f) => f.message)];
  for (const v of p.verdicts) {
    out.push(v.sentence);
    for (const d of v.details.slice(0, max)) out.push(`  ${d}`);
    if (v.details.length > max) out.push(`  …and ${v.details.length - max} more.`);
  }
  return out;
}

/**
 * One VM's per-host refusals with hosts that fail alike merged:
 * "web01 cannot move live to hyp01…hyp04, hyp06: hyp07 has no migration network configured."
 * Order of first appearance is kept (hosts come in name order from the planner).
 */
export function summarizeRefusals(findings: readonly Finding[]): string[] {
  const groups = new Map<string, { lead: string; reason: string; targets: string[]; first: string }>();
  for (const f of findings) {
    const at = f.target && f.reason !== undefined ? f.message.indexOf(` ${f.target}: `) : -1;
    if (at < 0) {
      if (!groups.has(f.message)) groups.set(f.message, { lead: '', reason: '', targets: [], first: f.message });
      continue;
    }
    const lead = f.message.slice(0, at);
    const key = `${lead}\u0000${f.reason}`;
    const g = groups.get(key) ?? { lead, reason: f.reason!, targets: [], first: f.message };
    if (!g.targets.includes(f.target!)) g.targets.push(f.target!);
    groups.set(key, g);
  }
  return [...groups.values()].map((g) => (g.targets.length <= 1 ? g.first : sentence(`${g.lead} ${compressNames(g.targets)}: ${g.reason}`)));
}

/** Findings as sentences, blockers first. */
export function renderFindings(findings: readonly CheckFinding[]): string[] {
  return sortFindings(findings).map((f) => f.message);
}
