/**
 * Pure parsers for virsh output: "Key: value" tables (dominfo, nodeinfo, domjobinfo), name lists,
 * and the XML documents (dumpxml, capabilities, pool/net/nodedev dumpxml) through fast-xml-parser.
 * Malformed input throws LibvirtParseError; the adapter turns it into an AdapterError for the host.
 */
import { XMLParser } from 'fast-xml-parser';
import { normalizeWwn, type DeviceKind, type VmDevice, type Wwn } from '../types.js';

export class LibvirtParseError extends Error {
  override name = 'LibvirtParseError';
}

export const FERRY_XMLNS = 'https://ferry.dev/xmlns/1';

type XmlNode = Record<string, unknown>;

// Elements that may repeat are always arrays, so one and many look the same to the code below.
const ARRAYS = new Set(['disk', 'interface', 'hostdev', 'redirdev', 'serial', 'parallel', 'capability', 'vcpupin', 'tag', 'vhba', 'feature', 'portgroup']);
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => ARRAYS.has(name.replace(/^.*:/, '')),
});

function parseXml(xml: string, root: string, what: string): XmlNode {
  let doc: unknown;
  try {
    doc = parser.parse(xml, true);
  } catch (err) {
    throw new LibvirtParseError(`${what}: not well-formed XML (${(err as Error).message.split('\n')[0]})`);
  }
  const node = (doc as XmlNode)[root];
  if (!node || typeof node !== 'object') throw new LibvirtParseError(`${what}: expected a <${root}> document`);
  return node as XmlNode;
}

const obj = (v: unknown): XmlNode | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as XmlNode) : undefined);
const arr = (v: unknown): XmlNode[] => (Array.isArray(v) ? v.map((x) => (typeof x === 'object' && x ? (x as XmlNode) : { '#text': x })) : obj(v) ? [v as XmlNode] : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : obj(v) && typeof obj(v)!['#text'] === 'string' ? (obj(v)!['#text'] as string) : undefined);
const attr = (n: XmlNode | undefined, name: string): string | undefined => str(n?.[`@${name}`]);

/** Lines of `virsh … --name` output. */
export function parseNameList(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** "Key:   value" lines (dominfo, nodeinfo, domjobinfo, pool-info). */
export function parseKeyValues(stdout: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line.trim());
    if (m) out[m[1]!.trim()] = m[2]!.trim();
  }
  if (Object.keys(out).length === 0) throw new LibvirtParseError(`${what}: no "key: value" lines in output ${JSON.stringify(stdout.slice(0, 80))}`);
  return out;
}

const SIZE_UNITS: Record<string, number> = { b: 1, bytes: 1, kib: 1024, k: 1024, kb: 1000, mib: 1024 ** 2, m: 1024 ** 2, mb: 1e6, gib: 1024 ** 3, g: 1024 ** 3, gb: 1e9, tib: 1024 ** 4, t: 1024 ** 4, tb: 1e12 };

/** "8388608 KiB", "1.50 GiB", "123 bytes" -> bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^([\d.]+)\s*([A-Za-z]*)$/.exec(text.trim());
  const factor = SIZE_UNITS[(m?.[2] || 'b').toLowerCase()];
  if (!m || factor === undefined || !Number.isFinite(Number(m[1]))) throw new LibvirtParseError(`${what}: not a size: ${JSON.stringify(text)}`);
  return Number(m[1]) * factor;
}

function elementBytes(node: unknown, defaultUnit: string, what: string): number {
  const text = str(node);
  if (text === undefined) throw new LibvirtParseError(`${what}: missing size`);
  return parseSize(`${text} ${attr(obj(node), 'unit') ?? defaultUnit}`, what);
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

export interface DomInfo {
  name: string;
  uuid: string;
  state: string;
  persistent: boolean;
  managedSave: boolean;
  maxMemoryMiB: number;
  cpus: number;
}

export function parseDominfo(stdout: string): DomInfo {
  const kv = parseKeyValues(stdout, 'dominfo');
  const need = (k: string): string => {
    const v = kv[k];
    if (v === undefined) throw new LibvirtParseError(`dominfo: missing "${k}"`);
    return v;
  };
  return {
    name: need('Name'),
    uuid: need('UUID'),
    state: need('State'),
    persistent: kv['Persistent'] === 'yes',
    managedSave: kv['Managed save'] === 'yes',
    maxMemoryMiB: Math.round(parseSize(need('Max memory'), 'dominfo Max memory') / MiB),
    cpus: Number(need('CPU(s)')),
  };
}

export interface NodeInfo {
  cpuModel: string;
  cpus: number;
  memoryMiB: number;
}

export function parseNodeinfo(stdout: string): NodeInfo {
  const kv = parseKeyValues(stdout, 'nodeinfo');
  const cpus = Number(kv['CPU(s)']);
  const mem = kv['Memory size'];
  if (!Number.isFinite(cpus) || !mem) throw new LibvirtParseError('nodeinfo: missing "CPU(s)" or "Memory size"');
  return { cpuModel: kv['CPU model'] ?? 'unknown', cpus, memoryMiB: Math.round(parseSize(mem, 'nodeinfo Memory size') / MiB) };
}

export interface HostCpu {
  arch?: string;
  vendor?: string;
  model?: string;
}

export function parseCapabilities(xml: string): HostCpu {
  const caps = parseXml(xml, 'capabilities', 'capabilities');
  const cpu = obj(obj(caps['host'])?.['cpu']);
  return { arch: str(cpu?.['arch']), vendor: str(cpu?.['vendor']), model: str(cpu?.['model']) };
}

/** Power state from dominfo's State (and managed save: a saved domain is "shut off" + managed save). */
export function powerState(state: string, managedSave: boolean): 'running' | 'off' | 'saved' | 'paused' {
  const s = state.toLowerCase();
  if (s === 'running' || s === 'idle' || s === 'in shutdown' || s === 'blocked') return 'running';
  if (s === 'paused' || s === 'pmsuspended') return 'paused';
  if (managedSave) return 'saved';
  return 'off';
}

export interface FerryVhba {
  wwnn: Wwn;
  /** [primary] or [primary, secondary] (seed 002). */
  wwpns: Wwn[];
  fabric?: Wwn;
  name?: string;
}

/** Ferry's own per-domain metadata: <ferry:vm xmlns:ferry="https://ferry.dev/xmlns/1" ha="true" antiAffinity="g">. */
export interface FerryMeta {
  ha?: boolean;
  antiAffinity?: string;
  vhbas: FerryVhba[];
}

export interface DomainDisk {
  target: string;
  device: string;
  /** File path, block device, "pool/volume", or network source name. */
  path: string;
  pool?: string;
}

export interface DomainXml {
  name: string;
  uuid: string;
  memoryMiB: number;
  vcpus: number;
  disks: DomainDisk[];
  networks: { portGroup: string; vlan?: number }[];
  devices: VmDevice[];
  affinity: { cpu: boolean; memory: boolean };
  /** scsi_host adapters passed through (<hostdev type='scsi'><source><adapter name=…>): vHBAs in use. */
  scsiHostAdapters: string[];
  meta: FerryMeta | null;
}

function ferryMeta(metadata: XmlNode | undefined): FerryMeta | null {
  if (!metadata) return null;
  for (const [key, value] of Object.entries(metadata)) {
    const node = arr(value)[0];
    if (!node || !/(^|:)vm$/.test(key)) continue;
    const prefix = key.includes(':') ? key.slice(0, key.indexOf(':')) : '';
    if (attr(node, prefix ? `xmlns:${prefix}` : 'xmlns') !== FERRY_XMLNS) continue;
    const ha = attr(node, 'ha');
    const vhbas = arr(node[prefix ? `${prefix}:vhba` : 'vhba']).map((v) => {
      const wwnn = attr(v, 'wwnn');
      const wwpn = attr(v, 'wwpn');
      if (!wwnn || !wwpn) throw new LibvirtParseError('ferry metadata: <vhba> needs wwnn and wwpn');
      const secondary = attr(v, 'secondary');
      const fabric = attr(v, 'fabric');
      return {
        wwnn: normalizeWwn(wwnn),
        wwpns: secondary ? [normalizeWwn(wwpn), normalizeWwn(secondary)] : [normalizeWwn(wwpn)],
        fabric: fabric ? normalizeWwn(fabric) : undefined,
        name: attr(v, 'name'),
      };
    });
    return { ha: ha === undefined ? undefined : ha === 'true' || ha === 'yes', antiAffinity: attr(node, 'antiAffinity'), vhbas };
  }
  return null;
}

/** The ferry:vm element for `virsh metadata --set` (attribute values are validated WWNs / simple names). */
export function ferryMetaXml(meta: FerryMeta): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  const attrs = [meta.ha === undefined ? '' : ` ha="${meta.ha}"`, meta.antiAffinity ? ` antiAffinity="${esc(meta.antiAffinity)}"` : ''].join('');
  const kids = meta.vhbas
    .map((v) => `<vhba wwnn="${v.wwnn}" wwpn="${v.wwpns[0]}"${v.wwpns[1] ? ` secondary="${v.wwpns[1]}"` : ''}${v.fabric ? ` fabric="${v.fabric}"` : ''}${v.name ? ` name="${esc(v.name)}"` : ''}/>`)
    .join('');
  return `<vm${attrs}>${kids}</vm>`;
}

const DEVICE_KINDS: Record<string, DeviceKind> = { cdrom: 'cdrom', floppy: 'floppy' };

export function parseDomainXml(xml: string): DomainXml {
  const dom = parseXml(xml, 'domain', 'dumpxml');
  const name = str(dom['name']);
  const uuid = str(dom['uuid']);
  if (!name || !uuid) throw new LibvirtParseError('dumpxml: <domain> without <name> or <uuid>');
  const devs = obj(dom['devices']) ?? {};
  const disks: DomainDisk[] = [];
  const devices: VmDevice[] = [];
  for (const d of arr(devs['disk'])) {
    const device = attr(d, 'device') ?? 'disk';
    const src = obj(d['source']) ?? arr(d['source'])[0];
    const pool = attr(src, 'pool');
    const path = attr(src, 'file') ?? attr(src, 'dev') ?? (pool ? `${pool}/${attr(src, 'volume') ?? ''}` : undefined) ?? attr(src, 'name');
    const kind = DEVICE_KINDS[device];
    if (kind) {
      devices.push({ kind, connected: path !== undefined, backing: path });
      continue;
    }
    disks.push({ target: attr(obj(d['target']), 'dev') ?? '?', device, path: path ?? '', pool });
  }
  const scsiHostAdapters: string[] = [];
  for (const h of arr(devs['hostdev'])) {
    const type = attr(h, 'type');
    const adapter = attr(obj(obj(h['source'])?.['adapter']), 'name');
    if (type === 'scsi' && adapter) scsiHostAdapters.push(adapter);
    if (type === 'usb') devices.push({ kind: 'usb', connected: true, hostDevice: true, backing: 'host usb' });
  }
  for (const r of arr(devs['redirdev'])) devices.push({ kind: 'usb', connected: true, backing: `redirected (${attr(r, 'type') ?? '?'})` });
  for (const kind of ['serial', 'parallel'] as const) {
    for (const s of arr(devs[kind])) {
      const type = attr(s, 'type');
      // pty/file/unix/tcp backings follow the VM; only a host device ties it to this host.
      if (type === 'dev') devices.push({ kind, connected: true, hostDevice: true, backing: attr(obj(s['source']), 'path') });
    }
  }
  const networks = arr(devs['interface']).map((i) => {
    const src = obj(i['source']);
    const portGroup = attr(src, 'network') ?? attr(src, 'bridge') ?? attr(src, 'dev') ?? attr(i, 'type') ?? '?';
    const tag = arr(obj(i['vlan'])?.['tag'])[0];
    const vlan = attr(tag, 'id');
    return vlan === undefined ? { portGroup } : { portGroup, vlan: Number(vlan) };
  });
  const vcpuNode = dom['vcpu'];
  const cputune = obj(dom['cputune']);
  const numatune = obj(dom['numatune']);
  return {
    name,
    uuid,
    memoryMiB: Math.round(elementBytes(dom['memory'], 'KiB', 'dumpxml memory') / MiB),
    vcpus: Number(str(vcpuNode) ?? '1'),
    disks,
    networks,
    devices,
    affinity: {
      cpu: attr(obj(vcpuNode), 'cpuset') !== undefined || arr(cputune?.['vcpupin']).length > 0 || obj(cputune?.['emulatorpin']) !== undefined,
      memory: attr(obj(numatune?.['memory']), 'mode') === 'strict',
    },
    scsiHostAdapters,
    meta: ferryMeta(obj(dom['metadata'])),
  };
}

/** Pool types whose storage other hosts can reach too. dir/fs/logical/disk/zfs are local. */
const SHARED_POOL_TYPES = new Set(['netfs', 'iscsi', 'iscsi-direct', 'rbd', 'gluster', 'sheepdog', 'scsi', 'mpath', 'vstorage']);

export interface PoolXml {
  name: string;
  type: string;
  shared: boolean;
  capacityGiB: number;
  freeGiB: number;
  targetPath?: string;
  /** scsi pools backed by a vHBA: <source><adapter type='fc_host' wwnn wwpn parent/>. */
  fcAdapter?: { wwnn: Wwn; wwpn: Wwn; parent?: string };
}

export function parsePoolXml(xml: string): PoolXml {
  const pool = parseXml(xml, 'pool', 'pool-dumpxml');
  const name = str(pool['name']);
  const type = attr(pool, 'type');
  if (!name || !type) throw new LibvirtParseError('pool-dumpxml: <pool> without type or name');
  const adapter = obj(obj(pool['source'])?.['adapter']);
  const wwnn = attr(adapter, 'wwnn');
  const wwpn = attr(adapter, 'wwpn');
  return {
    name,
    type,
    shared: SHARED_POOL_TYPES.has(type),
    capacityGiB: Math.round((elementBytes(pool['capacity'], 'bytes', 'pool capacity') / GiB) * 10) / 10,
    freeGiB: Math.round((elementBytes(pool['available'], 'bytes', 'pool available') / GiB) * 10) / 10,
    targetPath: str(obj(pool['target'])?.['path']),
    fcAdapter: attr(adapter, 'type') === 'fc_host' && wwnn && wwpn ? { wwnn: normalizeWwn(wwnn), wwpn: normalizeWwn(wwpn), parent: attr(adapter, 'parent') } : undefined,
  };
}

export interface NetXml {
  name: string;
  vlan?: number;
  /** No <forward>: an isolated network with no uplink (seed 004's internal-only switch). */
  internalOnly: boolean;
}

export function parseNetXml(xml: string): NetXml {
  const net = parseXml(xml, 'network', 'net-dumpxml');
  const name = str(net['name']);
  if (!name) throw new LibvirtParseError('net-dumpxml: <network> without <name>');
  const tag = arr(obj(net['vlan'])?.['tag'])[0];
  const vlan = attr(tag, 'id');
  return { name, internalOnly: net['forward'] === undefined, ...(vlan === undefined ? {} : { vlan: Number(vlan) }) };
}

export interface NodedevXml {
  name: string;
  parent?: string;
  /** scsi_host number (N of scsi_hostN / hostN in sysfs). */
  hostNumber?: number;
  fc?: { wwnn: Wwn; wwpn: Wwn; fabric?: Wwn };
  /** Present on HBAs that can carry NPIV vports. */
  vportOps?: { maxVports: number; vports: number };
}

export function parseNodedevXml(xml: string): NodedevXml {
  const dev = parseXml(xml, 'device', 'nodedev-dumpxml');
  const name = str(dev['name']);
  if (!name) throw new LibvirtParseError('nodedev-dumpxml: <device> without <name>');
  const out: NodedevXml = { name, parent: str(dev['parent']) };
  const walk = (caps: XmlNode[]): void => {
    for (const c of caps) {
      const type = attr(c, 'type');
      if (type === 'scsi_host' && str(c['host']) !== undefined) out.hostNumber = Number(str(c['host']));
      if (type === 'fc_host') {
        const wwnn = str(c['wwnn']);
        const wwpn = str(c['wwpn']);
        if (!wwnn || !wwpn) throw new LibvirtParseError(`nodedev-dumpxml ${name}: fc_host without wwnn/wwpn`);
        const fabric = str(c['fabric_wwn']);
        out.fc = { wwnn: normalizeWwn(wwnn), wwpn: normalizeWwn(wwpn), ...(fabric ? { fabric: normalizeWwn(fabric) } : {}) };
      }
      if (type === 'vport_ops') out.vportOps = { maxVports: Number(str(c['max_vports']) ?? 0), vports: Number(str(c['vports']) ?? 0) };
      walk(arr(c['capability']));
    }
  };
  walk(arr(dev['capability']));
  return out;
}

export interface JobInfo {
  type: string;
  percent?: number;
  remainingMiB?: number;
}

/** domjobinfo: "Job type: Unbounded", "Data processed: 1.2 GiB", "Data remaining: …", "Data total: …". */
export function parseDomjobinfo(stdout: string): JobInfo {
  const kv = parseKeyValues(stdout, 'domjobinfo');
  const type = kv['Job type'];
  if (!type) throw new LibvirtParseError('domjobinfo: missing "Job type"');
  const size = (k: string): number | undefined => (kv[k] ? parseSize(kv[k]!, `domjobinfo ${k}`) : undefined);
  const total = size('Data total');
  const remaining = size('Data remaining');
  const memRemaining = size('Memory remaining');
  const out: JobInfo = { type };
  if (total && remaining !== undefined) out.percent = Math.max(0, Math.min(100, Math.round(((total - remaining) / total) * 1000) / 10));
  const rem = memRemaining ?? remaining;
  if (rem !== undefined) out.remainingMiB = Math.round(rem / MiB);
  return out;
}

/** `domblkinfo --all`: "Target Capacity Allocation Physical" table in bytes ("-" for empty drives). */
export function parseDomblkinfoAll(stdout: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\S+)\s+(\d+|-)\s+/.exec(line);
    if (!m || m[1] === 'Target' || m[2] === '-') continue;
    out[m[1]!] = Number(m[2]);
  }
  return out;
}
