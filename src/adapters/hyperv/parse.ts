/**
 * Parsing of the scripts' JSON into the adapter contract. Lenient where PowerShell is
 * inconsistent (a single object where an array was meant, Windows PowerShell 5.1's
 * {"value":[…],"Count":n} array wrapping, null for empty, byte arrays as numbers, hex or
 * base64), strict where a wrong value would be dangerous (a WWN that is not 8 bytes fails).
 */
import { z } from 'zod';
import { normalizeWwn, type Datastore, type DeviceKind, type NpivInventory, type PhysicalHba, type PowerState, type VirtualPort, type VmDevice, type VmFacts, type Wwn } from '../types.js';

/** {"ok":true,"data":…} | {"ok":false,"error":{…}} as written by wrapScript. */
export const envelopeSchema = z.union([
  z.object({ ok: z.literal(true), data: z.unknown() }),
  z.object({
    ok: z.literal(false),
    error: z.object({
      code: z.string().nullish(),
      message: z.string().nullish(),
      type: z.string().nullish(),
      category: z.string().nullish(),
      errorId: z.string().nullish(),
      line: z.number().nullish(),
    }),
  }),
]);
export type Envelope = z.infer<typeof envelopeSchema>;

/** Undo Windows PowerShell 5.1's {"value":[…],"Count":n} wrapping, everywhere in a document. */
export function unwrapPsArrays(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrapPsArrays);
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length === 2 && Array.isArray(obj.value) && typeof obj.Count === 'number') return unwrapPsArrays(obj.value);
    return Object.fromEntries(keys.map((k) => [k, unwrapPsArrays(obj[k])]));
  }
  return value;
}

/** An array field that PowerShell may have unwrapped to one object, or printed as null. */
function arr<T extends z.ZodTypeAny>(item: T) {
  return z.preprocess((v) => (v === null || v === undefined ? [] : Array.isArray(v) ? v : [v]), z.array(item));
}

const str = z.string().nullish().transform((v) => v ?? '');
const num = z.number().nullish();

/** WWN bytes: int array (our scripts), hex string (Msvm_* classes), or base64 (PowerShell 7's byte[]). */
const wwnField = z.union([z.array(z.number().int().min(0).max(255)), z.string()]).nullish();

export function wwnOf(value: number[] | string | null | undefined): Wwn | undefined {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    if (value.length !== 8) throw new Error(`WWN byte array of length ${value.length}: [${value.join(',')}]`);
    return normalizeWwn(value);
  }
  if (value.trim() === '') return undefined;
  if (!/^(0x)?[0-9A-Fa-f:\- ]+$/.test(value) && /^[A-Za-z0-9+/]{11}=$/.test(value)) return normalizeWwn([...Buffer.from(value, 'base64')]);
  return normalizeWwn(value);
}

const ZERO_WWN = '0000000000000000';

// ---------------------------------------------------------------- npiv-inventory

const virtualPortSchema = z.object({
  WWPN: wwnField,
  WWNN: wwnField,
  FabricWWN: wwnField,
  FCId: num,
  Status: num,
  VirtualName: z.union([z.array(z.number()), z.string()]).nullish(),
});

export const npivSchema = z.object({
  Physical: arr(
    z.object({
      InstanceName: str,
      Active: z.boolean().nullish(),
      WWPN: wwnField,
      WWNN: wwnField,
      NumberVirtualPorts: num,
      VirtualPorts: arr(virtualPortSchema),
    }),
  ),
  Endpoints: arr(z.union([z.string(), z.object({ WWPN: str, SystemName: str })])),
  External: arr(z.object({ WWPN: str, WWNN: str, DeviceID: str, ElementName: str })),
  Fabrics: arr(z.object({ PortWWN: wwnField, FabricName: wwnField })).optional(),
  Capabilities: arr(z.object({ InstanceName: str, MaxNumberVirtualPorts: num })).optional(),
  Owners: arr(z.object({ VMName: str, SetA: str, SetB: str })).optional(),
});
export type NpivRaw = z.infer<typeof npivSchema>;

/** MSFC_VirtualFibrePortAttributes.VirtualName is uint16[64] (UTF-16 code units, NUL padded). */
export function virtualName(value: number[] | string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  const end = value.indexOf(0);
  return String.fromCharCode(...(end === -1 ? value : value.slice(0, end)));
}

export function toNpivInventory(host: string, raw: NpivRaw): NpivInventory {
  const fabricByPort = new Map<Wwn, Wwn>();
  for (const f of raw.Fabrics ?? []) {
    const port = wwnOf(f.PortWWN);
    const fabric = wwnOf(f.FabricName);
    if (port && fabric) fabricByPort.set(port, fabric);
  }
  const maxByInstance = new Map<string, number>();
  for (const c of raw.Capabilities ?? []) if (typeof c.MaxNumberVirtualPorts === 'number') maxByInstance.set(c.InstanceName, c.MaxNumberVirtualPorts);

  const hbas: PhysicalHba[] = [];
  const virtualPorts: VirtualPort[] = [];
  for (const p of raw.Physical) {
    const wwpn = wwnOf(p.WWPN);
    if (!wwpn) throw new Error(`MSFC_FibrePortNPIVAttributes ${p.InstanceName} has no WWPN`);
    const ports = p.VirtualPorts.map((v) => {
      const vw = wwnOf(v.WWPN);
      if (!vw) throw new Error(`a virtual port on ${p.InstanceName} has no WWPN`);
      const port: VirtualPort = {
        host,
        hbaWwpn: wwpn,
        wwpn: vw,
        wwnn: wwnOf(v.WWNN) ?? ZERO_WWN,
        fabric: wwnOf(v.FabricWWN) ?? ZERO_WWN,
        // The physical port's CIM InstanceName: MSFC_FibrePortNPIVMethods has the same key.
        handle: p.InstanceName,
      };
      if (typeof v.FCId === 'number') port.fcId = v.FCId;
      return port;
    });
    virtualPorts.push(...ports);
    const hba: PhysicalHba = {
      wwpn,
      wwnn: wwnOf(p.WWNN) ?? ZERO_WWN,
      fabric: fabricByPort.get(wwpn) ?? ports.find((v) => v.fabric !== ZERO_WWN)?.fabric ?? ZERO_WWN,
      instance: p.InstanceName,
      npivCapable: true,
    };
    const max = maxByInstance.get(p.InstanceName);
    if (max !== undefined) hba.maxVports = max;
    hbas.push(hba);
  }
  // Physical ports Hyper-V knows (Msvm_ExternalFcPort) that report no NPIV attributes.
  for (const e of raw.External) {
    const wwpn = wwnOf(e.WWPN);
    if (!wwpn || hbas.some((h) => h.wwpn === wwpn)) continue;
    hbas.push({ wwpn, wwnn: wwnOf(e.WWNN) ?? ZERO_WWN, fabric: fabricByPort.get(wwpn) ?? ZERO_WWN, instance: e.DeviceID || e.ElementName, npivCapable: false });
  }

  // Seed 000 lists Msvm_FcEndpoint WWPNs with duplicates; a set keeps the subtraction the same.
  const endpointWwpns: Wwn[] = [];
  for (const e of raw.Endpoints) {
    const w = wwnOf(typeof e === 'string' ? e : e.WWPN);
    if (w && !endpointWwpns.includes(w)) endpointWwpns.push(w);
  }
  const inv: NpivInventory = { host, hbas, virtualPorts, endpointWwpns };
  const owners: Record<Wwn, string> = {};
  for (const o of raw.Owners ?? []) {
    for (const set of [o.SetA, o.SetB]) {
      const w = wwnOf(set);
      if (w && endpointWwpns.includes(w)) owners[w] = o.VMName;
    }
  }
  if (Object.keys(owners).length > 0) inv.endpointOwners = owners;
  return inv;
}

// ---------------------------------------------------------------- remove-virtual-port

export const removeSchema = z.object({
  Removed: z.boolean(),
  Reason: z.string().nullish(),
  Status: num,
  Gone: z.boolean().nullish(),
  Instance: z.string().nullish(),
});

/** NPIV WMI Status out-parameter values (Windows driver docs, "NPIV status codes"). */
export const NPIV_STATUS: Record<number, string> = {
  0: 'NPIV_SUCCESS',
  1: 'NPIV_UNKNOWN_ERROR',
  2: 'NPIV_NOT_SUPPORTED_HOST',
  3: 'NPIV_NOT_SUPPORTED_FABRIC',
  4: 'NPIV_OUT_OF_RESOURCES',
  5: 'NPIV_MAX_VPORT_COUNT',
  6: 'NPIV_WWPN_IN_USE',
  7: 'NPIV_WWPN_INVALID_FORMAT',
  8: 'NPIV_LINK_DOWN',
  9: 'NPIV_WWPN_NOT_FOUND',
};

// ---------------------------------------------------------------- host-facts

const bytes = z.number().nullish();

export const hostFactsSchema = z.object({
  ComputerName: str,
  MemoryCapacity: bytes,
  VirtualMachineMigrationEnabled: z.boolean().nullish(),
  UseAnyNetworkForMigration: z.boolean().nullish(),
  OsCaption: str,
  Processors: arr(z.object({ Manufacturer: str, Name: str, Caption: str, NumberOfCores: num })),
  Vms: arr(z.object({ Name: str, MemoryStartup: bytes, MemoryAssigned: bytes, Compat: z.boolean().nullish(), CompatMode: str })),
  Switches: arr(z.object({ Name: str, SwitchType: str })),
  Volumes: arr(z.object({ Letter: str, Size: bytes, Free: bytes })),
  MigrationNetworks: arr(z.string()),
  ClusterNode: z.object({ Name: str, State: str }).nullish(),
  Csv: arr(z.object({ Name: str, Path: str, Size: bytes, Free: bytes })),
  ClusterNetworks: arr(z.object({ Name: str, Role: str })),
});
export type HostFactsRaw = z.infer<typeof hostFactsSchema>;

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const gib = (b: number | null | undefined): number => Math.round(((b ?? 0) / GIB) * 10) / 10;

/** "Intel64 Family 6 Model 85 Stepping 4" -> "6/85" (comparable between hosts, as the contract asks). */
export function cpuFamily(caption: string): string | undefined {
  const m = /Family (\d+) Model (\d+)/i.exec(caption);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

export function cpuVendor(manufacturer: string): string {
  if (/intel/i.test(manufacturer)) return 'intel';
  if (/amd/i.test(manufacturer)) return 'amd';
  return manufacturer.toLowerCase() || 'unknown';
}

/** Last path component of a CSV mount ("C:\ClusterStorage\Volume1" -> "Volume1"). */
export function leaf(path: string): string {
  return path.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? path;
}

/**
 * Which datastore a VM file lives on: a CSV (…\ClusterStorage\<name>\…, shared), an SMB share
 * (\\server\share, shared), else the host's local volume, named "<host>:<letter>" so two hosts'
 * D: drives never look like one shared datastore.
 */
export function datastoreOfPath(host: string, path: string): string {
  const csv = /^[A-Za-z]:\\ClusterStorage\\([^\\]+)/i.exec(path);
  if (csv) return csv[1]!;
  const smb = /^(\\\\[^\\]+\\[^\\]+)/.exec(path);
  if (smb) return smb[1]!;
  const drive = /^([A-Za-z]):/.exec(path);
  if (drive) return `${host}:${drive[1]!.toUpperCase()}`;
  return path;
}

export function hostDatastores(host: string, raw: HostFactsRaw): { datastores: Datastore[]; paths: Record<string, string> } {
  const datastores: Datastore[] = [];
  const paths: Record<string, string> = {};
  for (const c of raw.Csv) {
    const name = leaf(c.Path || c.Name);
    if (datastores.some((d) => d.name === name)) continue;
    datastores.push({ name, shared: true, capacityGiB: gib(c.Size), freeGiB: gib(c.Free) });
    paths[name] = c.Path;
  }
  for (const v of raw.Volumes) {
    const name = `${host}:${v.Letter.toUpperCase()}`;
    datastores.push({ name, shared: false, capacityGiB: gib(v.Size), freeGiB: gib(v.Free) });
    paths[name] = `${v.Letter.toUpperCase()}:\\`;
  }
  return { datastores, paths };
}

export const mib = (b: number | null | undefined): number => Math.round((b ?? 0) / MIB);

// ---------------------------------------------------------------- vm-facts

export const vmFactsSchema = arr(
  z.object({
    Name: z.string(),
    VMId: z.string(),
    State: str,
    IsClustered: z.boolean().nullish(),
    MemoryStartup: bytes,
    MemoryAssigned: bytes,
    ProcessorCount: num,
    Compat: z.boolean().nullish(),
    AntiAffinity: arr(z.string()),
    HardDrives: arr(z.object({ Path: str, FileSize: bytes })),
    NetworkAdapters: arr(z.object({ SwitchName: str, VlanMode: str, AccessVlanId: num })),
    DvdDrives: arr(z.object({ Path: str, DvdMediaType: str })),
    FloppyDrives: arr(z.string().nullable()),
    ComPorts: arr(z.object({ Name: str, Path: str })),
    FibreChannelHbas: arr(
      z.object({
        Name: str,
        SanName: str,
        WorldWideNodeNameSetA: str,
        WorldWidePortNameSetA: str,
        WorldWideNodeNameSetB: str,
        WorldWidePortNameSetB: str,
      }),
    ),
  }),
);
export type VmFactsRaw = z.infer<typeof vmFactsSchema>;

/** Hyper-V VMState names (cast to string by the script; numbers kept for raw CIM output). */
const STATE_NUMBERS: Record<number, string> = { 2: 'Running', 3: 'Off', 4: 'Stopping', 6: 'Saved', 9: 'Paused', 10: 'Starting', 11: 'Reset', 32773: 'Saving', 32776: 'Pausing', 32777: 'Resuming', 32779: 'FastSaved', 32780: 'FastSaving' };

export function powerOf(state: string | number): PowerState {
  const s = typeof state === 'number' ? (STATE_NUMBERS[state] ?? String(state)) : state;
  if (/^(Off|Stopping)/i.test(s)) return 'off';
  if (/^(Saved|Saving|FastSav)/i.test(s)) return 'saved';
  if (/^(Paused|Pausing|Resuming)/i.test(s)) return 'paused';
  if (/^(Running|Starting|Reset|Other)/i.test(s)) return 'running';
  throw new Error(`unknown Hyper-V VM state ${JSON.stringify(state)}`);
}

export function toVmFacts(host: string, raw: VmFactsRaw[number], fabricBySan: Record<string, Wwn> = {}): VmFacts {
  const devices: VmDevice[] = [];
  const push = (kind: DeviceKind, connected: boolean, backing: string | undefined, hostDevice: boolean): void => {
    const d: VmDevice = { kind, connected };
    if (backing) d.backing = backing;
    if (hostDevice) d.hostDevice = true;
    devices.push(d);
  };
  for (const d of raw.DvdDrives) {
    // DvdMediaType None | ISO | PassThrough; a passthrough drive is the host's physical drive.
    const pass = /passthrough/i.test(d.DvdMediaType);
    push('cdrom', d.Path !== '' || pass, d.Path || undefined, pass);
  }
  for (const f of raw.FloppyDrives) push('floppy', !!f, f || undefined, false);
  for (const c of raw.ComPorts) if (c.Path) push('serial', true, c.Path, false);

  const facts: VmFacts = {
    name: raw.Name,
    id: raw.VMId,
    host,
    power: powerOf(raw.State),
    // Seed 001 rule 1: only clustered (HA) VMs live-migrate within the cluster.
    ha: raw.IsClustered === true,
    memoryMiB: Math.max(mib(raw.MemoryStartup), mib(raw.MemoryAssigned)),
    cpus: raw.ProcessorCount ?? 1,
    disks: raw.HardDrives.filter((d) => d.Path).map((d) => ({ path: d.Path, datastore: datastoreOfPath(host, d.Path), sizeGiB: gib(d.FileSize) })),
    networks: raw.NetworkAdapters.map((n) => {
      const net: { portGroup: string; vlan?: number } = { portGroup: n.SwitchName };
      if (/access/i.test(n.VlanMode) && typeof n.AccessVlanId === 'number' && n.AccessVlanId > 0) net.vlan = n.AccessVlanId;
      return net;
    }),
    devices,
    // Hyper-V has no CPU pinning or memory affinity to report.
    affinity: { cpu: false, memory: false },
    vfc: raw.FibreChannelHbas.map((h) => ({
      name: h.SanName ? `${h.Name || 'Fibre Channel Adapter'} (${h.SanName})` : h.Name,
      fabric: fabricBySan[h.SanName] ?? ZERO_WWN,
      wwnn: wwnOf(h.WorldWideNodeNameSetA) ?? ZERO_WWN,
      // Sets A and B: live migration brings up the other set on the target (seed 000).
      wwpns: [wwnOf(h.WorldWidePortNameSetA), wwnOf(h.WorldWidePortNameSetB)].filter((w): w is Wwn => !!w),
    })),
  };
  if (raw.AntiAffinity[0]) facts.antiAffinityGroup = raw.AntiAffinity[0];
  return facts;
}

// ---------------------------------------------------------------- migration

export const migrateSchema = z.object({ VMId: str, Owner: str, MigrationType: str, Seconds: num });
export const progressSchema = z.object({ Jobs: arr(z.object({ PercentComplete: num, JobState: num, ElementName: str, Cancellable: z.boolean().nullish() })) });
export const cancelSchema = z.object({ Requested: arr(z.number()) });
export const startSchema = z.object({ State: str });
export const maintenanceSchema = z.object({ Before: str, After: str });
export const compareSchema = z.object({ Incompatibilities: arr(z.object({ Message: str, MessageId: z.union([z.number(), z.string()]).nullish() })) });

/** Compare-VM messages -> the pure prechecks' codes, by what the message talks about. */
export function findingCode(message: string): string {
  if (/processor|cpu/i.test(message)) return 'cpu';
  if (/switch|network|vlan/i.test(message)) return 'network';
  if (/dvd|\.iso\b|floppy|com port|serial|pass-?through/i.test(message)) return 'device';
  if (/storage|path|file|disk|vhd|csv|volume/i.test(message)) return 'datastore';
  if (/memory|ram\b/i.test(message)) return 'capacity';
  if (/fibre channel|san|wwpn|wwn/i.test(message)) return 'npiv';
  if (/version|configuration version/i.test(message)) return 'version';
  return 'hyperv';
}

// ---------------------------------------------------------------- run-command

export const runCommandSchema = z.object({ ExitCode: z.number().int(), Seconds: num });
