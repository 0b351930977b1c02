/**
 * The hypervisor adapter contract.
 *
 * Shaped from the real platforms (SPEC "Adapters"):
 *  - Hyper-V: CIM classes MSFC_FibrePortNPIVAttributes (virtual ports on physical HBAs),
 *    Msvm_FcEndpoint (WWPNs in use by running VMs, plus the physical ports),
 *    Msvm_ExternalFcPort (physical HBA WWPNs), Get-VM, Move-VM / Move-ClusterVirtualMachineRole,
 *    Suspend-/Resume-ClusterNode, Compare-VM.
 *  - libvirt: virsh list/dominfo/dumpxml/nodeinfo/capabilities, nodedev-* for vHBAs (fc_host
 *    parents with vport_ops), migrate --live --persistent --undefinesource, domjobinfo.
 *  - vSphere: PropertyCollector inventory, Enter/ExitMaintenanceMode_Task, RelocateVM_Task,
 *    MigrateVM_Task, QueryVMotionCompatibility / CheckMigrate, task progress.
 *
 * Adapters report raw facts; policy (what is stale, what is compatible, where a VM goes)
 * lives in pure modules (src/core). Every method is read-only unless it says it mutates.
 * A platform that cannot do something throws UnsupportedError naming the operation, never
 * pretends.
 */

export type AdapterKind = 'lab' | 'hyperv' | 'libvirt' | 'vsphere';

/** WWPN/WWNN as 16 upper-case hex digits, no separators: "C003FF6EDB4A0004" (seed 000's form). */
export type Wwn = string;

export type PowerState = 'running' | 'off' | 'saved' | 'paused';

export interface CpuInfo {
  vendor: 'intel' | 'amd' | string;
  /** Family/generation string comparable between hosts, e.g. "skylake", "zen3", "6/85". */
  family: string;
  model?: string;
  /**
   * Cluster feature baseline the host runs at (vSphere EVC mode, Hyper-V processor
   * compatibility, libvirt host-model name). Two hosts with the same vendor and baseline can
   * exchange live VMs even when their families differ.
   */
  baseline?: string;
  cores: number;
}

export interface PortGroup {
  name: string;
  vlan?: number;
  /** A switch with no physical uplink (seed 004): VMs on it cannot vMotion. */
  internalOnly?: boolean;
}

export interface Datastore {
  name: string;
  /** Visible to more than one host (SAN/NFS/CSV). */
  shared: boolean;
  capacityGiB: number;
  freeGiB: number;
}

export interface PhysicalHba {
  /** Physical port WWPN (Msvm_ExternalFcPort.WWPN, libvirt fc_host port_name). */
  wwpn: Wwn;
  wwnn: Wwn;
  /** Fabric WWN the port is logged into ("100000C0..."), as seed 000's FabricWWN in hex. */
  fabric: Wwn;
  /** Platform-specific handle: CIM InstanceName, libvirt nodedev name ("scsi_host3"). */
  instance: string;
  npivCapable: boolean;
  maxVports?: number;
}

export interface HostFacts {
  name: string;
  cluster: string;
  adapter: AdapterKind;
  cpu: CpuInfo;
  memoryMiB: number;
  /** Memory already committed to VMs placed on the host (running or not). */
  memoryUsedMiB: number;
  maintenance: boolean;
  /**
   * The platform is still taking the host into maintenance (vSphere: EnterMaintenanceMode_Task
   * runs until the last powered-on VM has left the host). `maintenance` is already true then:
   * the host takes no new VMs, so placement, limits and the drain treat it as in maintenance.
   */
  enteringMaintenance?: boolean;
  /**
   * Plain sentences about the host worth showing to the operator: an enter-maintenance task
   * that failed (the host is then NOT in maintenance), vCenter DRS that would move VMs itself.
   */
  notes?: string[];
  /** Ferry's own cordon where the platform has no maintenance mode (libvirt). */
  cordoned?: boolean;
  portGroups: PortGroup[];
  datastores: Datastore[];
  /** A migration network is configured (vMotion-tagged VMkernel port, Hyper-V LM network, libvirt migrate URI). */
  migrationNetwork: boolean;
  /** ISO images reachable from this host (paths or "[datastore] path" forms). */
  isoLibraries?: string[];
  hbas: PhysicalHba[];
  /** Platform version for display ("Windows Server 2022", "libvirt 9.0.0", "ESXi 8.0"). */
  version?: string;
}

export type DeviceKind = 'cdrom' | 'floppy' | 'serial' | 'parallel' | 'usb';

export interface VmDevice {
  kind: DeviceKind;
  connected: boolean;
  /** ISO path or host device backing; ISO paths are checked against the target's isoLibraries. */
  backing?: string;
  /** Backed by a physical device of the host (always blocks live migration when connected). */
  hostDevice?: boolean;
}

export interface VmDisk {
  path: string;
  datastore: string;
  sizeGiB: number;
}

export interface VirtualFcAdapter {
  /** Adapter name in the VM ("Fibre Channel Adapter 1", libvirt vHBA name). */
  name: string;
  /** Virtual SAN / fabric the adapter connects to. */
  fabric: Wwn;
  wwnn: Wwn;
  /**
   * Hyper-V: address sets A and B (live migration alternates between them; seed 000).
   * libvirt: [primary] or [primary, secondary] vHBA WWPNs (seed 002). vSphere: the NPIV WWPNs.
   */
  wwpns: Wwn[];
}

export interface VmFacts {
  name: string;
  /** Stable platform id (Hyper-V VMId, libvirt UUID, vSphere instanceUuid/moref): detects renames. */
  id: string;
  host: string;
  power: PowerState;
  /** Highly available (clustered role / vSphere HA-protected). Seed 001 rule 1. */
  ha: boolean;
  memoryMiB: number;
  cpus: number;
  disks: VmDisk[];
  networks: { portGroup: string; vlan?: number }[];
  devices: VmDevice[];
  affinity: { cpu: boolean; memory: boolean };
  /** Anti-affinity group: VMs sharing a group should not share a host. */
  antiAffinityGroup?: string;
  vfc: VirtualFcAdapter[];
}

/** One NPIV virtual port instantiated on a physical HBA of a host. */
export interface VirtualPort {
  host: string;
  /** Physical HBA the vport lives on. */
  hbaWwpn: Wwn;
  wwpn: Wwn;
  wwnn: Wwn;
  fabric: Wwn;
  /** Fibre Channel id on the fabric if logged in (seed 000 FCId). */
  fcId?: number;
  /** Platform handle needed to remove it (libvirt nodedev name, CIM instance). */
  handle?: string;
}

/**
 * The raw NPIV picture of one host, exactly what seed 000's Get-FCNPIVInactivePort reads:
 * stale = virtualPorts − endpointWwpns − physical WWPNs (computed in src/core/stale-ports.ts).
 */
export interface NpivInventory {
  host: string;
  hbas: PhysicalHba[];
  virtualPorts: VirtualPort[];
  /** WWPNs of virtual FC endpoints attached to running VMs (Msvm_FcEndpoint; may include physical ones). */
  endpointWwpns: Wwn[];
  /** Which VM each in-use WWPN belongs to, when the platform can say. */
  endpointOwners?: Record<Wwn, string>;
}

export type MigrationMode = 'live' | 'cold';

export interface MigrateRequest {
  vm: string;
  /** Host the VM is on now (the adapter verifies; a mismatch is an error, not a guess). */
  source: string;
  target: string;
  mode: MigrationMode;
  /** Move storage too (vSphere RelocateVM_Task with datastore, Hyper-V Move-VM -IncludeStorage). */
  datastore?: string;
  /**
   * The VM as the caller read it on `source` just before (the migration step looks it up before
   * every attempt): an adapter may use it instead of reading it again. The platform itself still
   * refuses a VM that is not on the source.
   */
  seen?: VmFacts;
}

export interface MigrateProgress {
  /** 0..100 */
  percent: number;
  phase?: string;
  /** Bytes or MiB remaining where the platform reports it (domjobinfo "Memory remaining"). */
  remainingMiB?: number;
}

export interface MigrateResult {
  vm: string;
  host: string;
  datastore?: string;
  durationMs: number;
  /** Source-side NPIV ports of this VM still present after the move (seed 000's failure). */
  lingeringPorts?: VirtualPort[];
}

export interface CheckFinding {
  /** Stable code shared with the pure prechecks ("cpu", "datastore", "network", "device", …). */
  code: string;
  severity: 'block' | 'warn' | 'info';
  message: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface Capabilities {
  liveMigration: boolean;
  storageMigration: boolean;
  coldMigration: boolean;
  /** 'native': the platform has maintenance mode; 'cordon': Ferry keeps the flag itself. */
  maintenance: 'native' | 'cordon';
  npiv: boolean;
  removeVirtualPort: boolean;
  /** The platform can check a migration itself (Compare-VM, QueryVMotionCompatibility, CheckMigrate). */
  nativeChecks: boolean;
  migrationCancel: boolean;
  /** The adapter can run a shell command on a host (runCommand): the command patch hook needs it. */
  hostCommands: boolean;
}

/** What a command run on a host did. A non-zero exit is a result, not an exception. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

export interface HypervisorAdapter {
  readonly kind: AdapterKind;
  readonly capabilities: Capabilities;

  /** Hosts this adapter manages, as configured names. */
  hostNames(): string[];
  describeHost(host: string, opts?: CallOptions): Promise<HostFacts>;
  listVms(host: string, opts?: CallOptions): Promise<VmFacts[]>;
  /** Find a VM by name anywhere this adapter reaches; null if absent. */
  findVm(name: string, opts?: CallOptions): Promise<VmFacts | null>;

  /**
   * Mutates. Puts the host in maintenance WITHOUT evacuating: Ferry moves VMs itself. Idempotent.
   * Where the platform only finishes entering once the host is empty (vSphere), this returns as
   * soon as the host refuses new VMs; describeHost then reports maintenance true with
   * enteringMaintenance until the last VM has left, and a later failure in its notes.
   */
  enterMaintenance(host: string, opts?: CallOptions): Promise<void>;
  /** Mutates. Idempotent; stops an unfinished enter. Never fails VMs back: Ferry's ledger restores (seed 001 rule 3). */
  exitMaintenance(host: string, opts?: CallOptions): Promise<void>;

  /**
   * Mutates. Moves one VM; resolves when the VM runs on the target. Reports progress; honours
   * opts.signal by cancelling the platform job where it can (domjobabort, CancelTask).
   * NPIV VMs keep their WWPN set; the adapter handles vHBA pairs (seed 002) and rolls its own
   * partial work back before throwing.
   */
  migrateVm(req: MigrateRequest, onProgress?: (p: MigrateProgress) => void, opts?: CallOptions): Promise<MigrateResult>;

  /**
   * Mutates. Saves a running VM in place (its memory to disk, its users cut off) and resolves
   * once the platform reports it saved: seed 001's override for a running non-HA VM where
   * maintenance would otherwise refuse (Hyper-V Save-VM, the lab). Absent where the platform
   * has no such rule (vSphere, libvirt: Ferry moves every VM there).
   */
  saveVm?(host: string, vm: string, opts?: CallOptions): Promise<void>;
  /** Mutates. Starts a saved VM again from its saved state (restore of a drained host). */
  resumeVm?(host: string, vm: string, opts?: CallOptions): Promise<void>;

  npivInventory(host: string, opts?: CallOptions): Promise<NpivInventory>;
  /** Mutates. Removes one virtual port (MSFC_FibrePortNPIVMethods.RemoveVirtualPort, nodedev-destroy / vport_delete). */
  removeVirtualPort(port: VirtualPort, opts?: CallOptions): Promise<void>;

  /** Platform-native migration checks; [] when the platform has none (capabilities.nativeChecks false). */
  checkMigration(vm: string, target: string, opts?: CallOptions): Promise<CheckFinding[]>;

  /**
   * Optional: try the path a live migration from `source` to `target` would take (libvirt: the
   * migrate URI opened from the source host). Blocking findings when it does not work.
   */
  checkMigrationPath?(source: string, target: string, opts?: CallOptions): Promise<(CheckFinding & { code: 'migration-network' })[]>;

  /**
   * Mutates (whatever the command does). Runs one command on the host itself (a POSIX shell on
   * libvirt hosts, PowerShell on Hyper-V hosts). The command comes ONLY from configuration
   * (patchWindows.hook.command, written by whoever deploys Ferry), never from a user's message:
   * it is run as given, with no quoting or checking by the adapter.
   * A non-zero exit is returned in exitCode, not thrown, so the caller can report it with the
   * output; connection faults, a timeout (opts.timeoutMs) or a cancel (opts.signal) throw
   * AdapterError. Adapters whose platform cannot (capabilities.hostCommands false) throw
   * UnsupportedError with a plain reason.
   */
  runCommand(host: string, command: string, opts?: CallOptions & { timeoutMs?: number }): Promise<CommandResult>;

  close(): Promise<void>;
}

/** What an adapter failure means to its caller, whatever the platform. */
export type AdapterErrorKind = 'unreachable' | 'auth' | 'not-found' | 'conflict' | 'timeout' | 'cancelled' | 'invalid' | 'unsupported' | 'malformed' | 'platform';

/**
 * Every code an adapter throws with, and its kind: a closed set (the compiler refuses any
 * other). One spelling per meaning: a timeout is 'timeout' whether the connect, a command or a
 * migration ran out; a missing thing is 'not-found' whatever it is; a cancel is 'cancelled'.
 */
const KIND_OF = {
  unreachable: 'unreachable',
  connection: 'unreachable',
  dns: 'unreachable',
  auth: 'auth',
  'host-key': 'auth',
  tls: 'auth',
  'not-found': 'not-found',
  'unknown-host': 'not-found',
  'in-use': 'conflict',
  'wrong-state': 'conflict',
  'not-running': 'conflict',
  'powered-on': 'conflict',
  'wrong-source': 'conflict',
  'not-on-source': 'conflict',
  'same-host': 'conflict',
  maintenance: 'conflict',
  'cancel-too-late': 'conflict',
  timeout: 'timeout',
  cancelled: 'cancelled',
  invalid: 'invalid',
  'unsafe-name': 'invalid',
  'too-long': 'invalid',
  unsupported: 'unsupported',
  'no-npiv': 'unsupported',
  malformed: 'malformed',
  exit: 'platform',
  killed: 'platform',
  powershell: 'platform',
  fault: 'platform',
  'maintenance-failed': 'platform',
  'not-moved': 'platform',
  'not-on-target': 'platform',
  'not-saved': 'platform',
  'npiv-status': 'platform',
  partial: 'platform',
  'rollback-failed': 'platform',
  'still-present': 'platform',
  'landed-not-running': 'platform',
  'landed-not-persistent': 'platform',
  'source-still-defined': 'platform',
  injected: 'platform',
} as const satisfies Record<string, AdapterErrorKind>;

export type AdapterErrorCode = keyof typeof KIND_OF;

/** A code that arrives as data (a PowerShell error record, a vSphere fault): its own if Ferry knows it, else `fallback`. */
export function adapterErrorCode(raw: string | null | undefined, fallback: AdapterErrorCode): AdapterErrorCode {
  return typeof raw === 'string' && Object.hasOwn(KIND_OF, raw) ? (raw as AdapterErrorCode) : fallback;
}

/** What a failed call says about its host, by kind: the one place an error kind becomes words. */
const KIND_SENTENCE: Record<AdapterErrorKind, (host: string) => string> = {
  unreachable: (h) => `${h} did not answer`,
  timeout: (h) => `${h} did not answer in time`,
  auth: (h) => `${h} refused Ferry's login or its host key did not match`,
  'not-found': (h) => `${h} answered, but what Ferry asked for is not there`,
  conflict: (h) => `${h} answered, but is not in a state that allows it`,
  cancelled: (h) => `the call to ${h} was cancelled`,
  invalid: (h) => `Ferry did not send the call to ${h}: its input was refused`,
  unsupported: (h) => `${h}'s platform cannot do it`,
  malformed: (h) => `${h} answered something Ferry could not read`,
  platform: (h) => `${h} answered with an error`,
};

/** "hyp03 did not answer", "esx02 refused Ferry's login…": the lead of a sentence about a host whose call failed. */
export function hostFailureLead(host: string, e: unknown): string {
  return KIND_SENTENCE[e instanceof AdapterError ? e.kind : 'unreachable'](host);
}

/**
 * A failed call to a host, for users: the lead its kind gives (hostFailureLead), then the
 * platform's own words unless they already begin with it: "esx02 refused Ferry's login or
 * its host key did not match (describeHost on esx02: vCenter … refused the login)". Every place
 * that tells users a host call failed says it this way, so one kind reads the same everywhere.
 */
export function hostFailureSentence(host: string, e: unknown): string {
  const lead = hostFailureLead(host, e);
  const detail = (e instanceof Error ? e.message : String(e)).trim();
  if (!detail || detail === lead) return lead;
  return detail.startsWith(lead) ? detail : `${lead} (${detail})`;
}

/** A failure talking to a hypervisor, attributed to a host and an operation. */
export class AdapterError extends Error {
  constructor(
    readonly host: string,
    readonly op: string,
    message: string,
    readonly options: { retryable?: boolean; code?: AdapterErrorCode; cause?: unknown; fault?: string } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AdapterError';
  }
  get retryable(): boolean {
    return this.options.retryable ?? false;
  }
  get code(): AdapterErrorCode | undefined {
    return this.options.code;
  }
  /** The platform's own name for it, when it gave one (a vSphere fault type, a PowerShell error code). */
  get fault(): string | undefined {
    return this.options.fault;
  }
  /** What the failure means; an error thrown without a code is the platform's. */
  get kind(): AdapterErrorKind {
    return this.options.code ? KIND_OF[this.options.code] : 'platform';
  }
}

/** The platform cannot do this at all; said plainly to the user. */
export class UnsupportedError extends AdapterError {
  constructor(host: string, op: string, kind: AdapterKind, why: string) {
    super(host, op, `${kind} cannot ${op}: ${why}`, { code: 'unsupported' });
    this.name = 'UnsupportedError';
  }
}

/** Normalise any WWN spelling ("c0:03:ff:…", "0xc003…", byte arrays) to 16 upper-case hex digits. */
export function normalizeWwn(input: string | number[]): Wwn {
  if (Array.isArray(input)) {
    // Seed 000: each byte to two hex digits, concatenated.
    return input.map((b) => (b & 0xff).toString(16).toUpperCase().padStart(2, '0')).join('');
  }
  const hex = input.trim().replace(/^0x/i, '').replace(/[:\-\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{16}$/.test(hex)) throw new Error(`not a WWN: ${JSON.stringify(input)}`);
  return hex;
}
