/**
 * libvirt/KVM adapter: `virsh` over SSH (one RemoteShell, pooled per host).
 *
 * Safety: every name that reaches a command line came out of the host's own listing
 * (`list --all --name`, `nodedev-list`, `pool-list`) and is passed with an explicit option
 * (`--domain`, `--device`, `--pool`) so it can never be read as a virsh flag; argv quoting is the
 * RemoteShell's job.
 *
 * HA: libvirt has none. A domain is HA when Ferry's metadata says so
 * (<ferry:vm xmlns:ferry="https://ferry.dev/xmlns/1" ha="true"/>); without metadata, a
 * persistent domain whose disks all sit on shared pools counts as HA, because any host of the
 * cluster could define and start it again — which is what HA means for Ferry's drain rules.
 *
 * Maintenance: libvirt has none either; Ferry keeps a cordon flag in Redis
 * (`${prefix}:libvirt:cordon:<host>`).
 */
import type { Redis } from 'ioredis';
import { durationMs } from '../../core/duration.js';
import { pMap } from '../../core/pmap.js';
import type { Logger } from '../../log.js';
import { execChecked } from '../ssh/exec.js';
import { parseSshAddress } from '../ssh/address.js';
import type { ExecOptions, RemoteShell } from '../ssh/types.js';
import {
  AdapterError,
  UnsupportedError,
  type CallOptions,
  type Capabilities,
  type CheckFinding,
  type CommandResult,
  type Datastore,
  type HostFacts,
  type HypervisorAdapter,
  type MigrateProgress,
  type MigrateRequest,
  type MigrateResult,
  type NpivInventory,
  type PhysicalHba,
  type PortGroup,
  type VirtualFcAdapter,
  type VirtualPort,
  type VmFacts,
  type Wwn,
} from '../types.js';
import {
  LibvirtParseError,
  FERRY_XMLNS,
  ferryMetaXml,
  parseCapabilities,
  parseDomainXml,
  parseDomblkinfoAll,
  parseDominfo,
  parseDomjobinfo,
  parseNameList,
  parseNetXml,
  parseNodedevXml,
  parseNodeinfo,
  parsePoolXml,
  powerState,
  type DomainXml,
  type DomInfo,
  type NodedevXml,
  type PoolXml,
} from './parse.js';

export interface LibvirtSettings {
  cluster: string;
  hosts: string[];
  /** virsh URI on the host; "{host}" is replaced by the Ferry host name (lets tests give each alias its own test driver file). */
  uri: string;
  /** Migration destination URI template; {host} is the target's address. */
  migrateUri: string;
  virsh: string;
  /** host -> address, for {host} in migrateUri. */
  addresses: Record<string, string>;
  /** Pools treated as shared whatever their type (e.g. a "dir" pool on a cluster filesystem). */
  sharedPools?: string[];
  /** Longest one `virsh migrate` may run; then Ferry aborts it (domjobabort) and the domain stays on its source. */
  migrateTimeoutMs?: number;
  /** `virsh migrate --bandwidth` in MiB/s; undefined leaves QEMU's default. */
  migrateBandwidthMiBs?: number;
  /** `virsh migrate --auto-converge`: throttle the guest's vCPUs when its memory changes faster than it copies. */
  autoConverge?: boolean;
  /** How long the migration-path check in the precheck may take. */
  pathCheckTimeoutMs?: number;
  /** domjobinfo polling interval during a migration. */
  pollMs?: number;
  /** Hosts queried at once by findVm. */
  concurrency?: number;
}

export interface LibvirtDeps {
  shell: RemoteShell;
  redis: Redis;
  prefix: string;
  log: Logger;
}

/** Names we accept from a host's listing: no control characters, not an option. */
function safeName(host: string, op: string, name: string): string {
  if (!name || name.startsWith('-') || /[\u0000-\u001f\u007f]/.test(name) || name.length > 255) {
    throw new AdapterError(host, op, `refusing unsafe name from ${host}: ${JSON.stringify(name)}`, { code: 'unsafe-name' });
  }
  return name;
}

/**
 * virsh's answer when a domain from `list` is gone by the time it is asked about: migrated away
 * (--undefinesource) or undefined in between. During a drain this is the normal case, not an
 * error: the other migrations running at the same time move domains off this very host.
 */
const VANISHED = /failed to get domain|Domain not found|no domain with matching (name|uuid)/i;

interface HostNpiv {
  devs: NodedevXml[];
  hbas: NodedevXml[];
  vports: NodedevXml[];
}

export class LibvirtAdapter implements HypervisorAdapter {
  readonly kind = 'libvirt' as const;
  readonly capabilities: Capabilities = {
    liveMigration: true,
    storageMigration: false,
    coldMigration: true,
    maintenance: 'cordon',
    npiv: true,
    removeVirtualPort: true,
    nativeChecks: false,
    migrationCancel: true,
    hostCommands: true,
  };

  constructor(
    private readonly settings: LibvirtSettings,
    private readonly deps: LibvirtDeps,
  ) {}

  hostNames(): string[] {
    return [...this.settings.hosts];
  }

  // ---- plumbing -------------------------------------------------------------------------

  private checkHost(host: string, op: string): void {
    if (!this.settings.hosts.includes(host)) throw new AdapterError(host, op, `${host} is not a host of libvirt cluster ${this.settings.cluster}`, { code: 'unknown-host' });
  }

  private virshArgv(host: string, args: readonly string[]): string[] {
    return [this.settings.virsh, '-c', this.settings.uri.replaceAll('{host}', host), ...args];
  }

  private async virsh(host: string, op: string, args: readonly string[], opts: CallOptions & ExecOptions = {}): Promise<string> {
    const res = await execChecked(this.deps.shell, host, op, this.virshArgv(host, args), opts);
    return res.stdout;
  }

  /** Parse with host/op attribution: malformed output is an AdapterError, not a TypeError. */
  private parse<T>(host: string, op: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LibvirtParseError || (err instanceof Error && !(err instanceof AdapterError))) {
        throw new AdapterError(host, op, `unexpected output from virsh on ${host}: ${err.message}`, { code: 'malformed', cause: err });
      }
      throw err;
    }
  }

  /** A per-domain call after a listing: null when the domain left the host in between (see VANISHED). */
  private async ifStillThere<T>(fn: () => Promise<T>): Promise<T | null> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof AdapterError && err.code === 'exit' && VANISHED.test(err.message)) return null;
      throw err;
    }
  }

  private cordonKey(host: string): string {
    return `${this.deps.prefix}:libvirt:cordon:${host}`;
  }

  private async domainNames(host: string, opts: CallOptions): Promise<string[]> {
    const out = await this.virsh(host, 'list', ['list', '--all', '--name'], opts);
    return parseNameList(out).map((n) => safeName(host, 'list', n));
  }

  private async pools(host: string, opts: CallOptions): Promise<PoolXml[]> {
    const names = parseNameList(await this.virsh(host, 'pool-list', ['pool-list', '--all', '--name'], opts)).map((n) => safeName(host, 'pool-list', n));
    const shared = new Set(this.settings.sharedPools ?? []);
    return Promise.all(
      names.map(async (name) => {
        const xml = await this.virsh(host, 'pool-dumpxml', ['pool-dumpxml', '--pool', name], opts);
        const pool = this.parse(host, 'pool-dumpxml', () => parsePoolXml(xml));
        return shared.has(pool.name) ? { ...pool, shared: true } : pool;
      }),
    );
  }

  // ---- inventory ------------------------------------------------------------------------

  async describeHost(host: string, opts: CallOptions = {}): Promise<HostFacts> {
    this.checkHost(host, 'describeHost');
    const [nodeinfoOut, capsOut, pools, nets, infos, npiv, cordon] = await Promise.all([
      this.virsh(host, 'nodeinfo', ['nodeinfo'], opts),
      this.virsh(host, 'capabilities', ['capabilities'], opts),
      this.pools(host, opts),
      this.networks(host, opts),
      this.domainNames(host, opts).then(async (names) =>
        (
          await Promise.all(
            names.map((n) =>
              this.ifStillThere(async () => {
                const out = await this.virsh(host, 'dominfo', ['dominfo', '--domain', n], opts);
                return this.parse(host, 'dominfo', () => parseDominfo(out));
              }),
            ),
          )
        ).filter((d): d is DomInfo => d !== null),
      ),
      // NPIV is one part of the host's picture: when nodedev-* fails the rest still shows, and the note says so.
      this.hostNpiv(host, opts).catch((err: unknown): string => (err instanceof AdapterError ? err.message : String(err))),
      this.deps.redis.get(this.cordonKey(host)),
    ]);
    const node = this.parse(host, 'nodeinfo', () => parseNodeinfo(nodeinfoOut));
    const cpu = this.parse(host, 'capabilities', () => parseCapabilities(capsOut));
    const vendor = (cpu.vendor ?? 'unknown').toLowerCase();
    const model = cpu.model ?? node.cpuModel;
    return {
      name: host,
      cluster: this.settings.cluster,
      adapter: 'libvirt',
      cpu: { vendor, family: model.toLowerCase(), model, baseline: cpu.model, cores: node.cpus },
      memoryMiB: node.memoryMiB,
      memoryUsedMiB: infos.reduce((sum, d) => sum + d.maxMemoryMiB, 0),
      maintenance: cordon !== null,
      cordoned: cordon !== null,
      portGroups: nets,
      datastores: pools.map((p): Datastore => ({ name: p.name, shared: p.shared, capacityGiB: p.capacityGiB, freeGiB: p.freeGiB })),
      // Configured, not proven: the precheck tests the path itself (checkMigrationPath).
      migrationNetwork: this.settings.migrateUri.length > 0,
      hbas: typeof npiv === 'string' ? [] : npiv.hbas.map((d) => this.hba(d)),
      ...(typeof npiv === 'string' ? { notes: [`NPIV (Fibre Channel HBAs and vHBAs) could not be read on ${host}: ${npiv}`] } : {}),
      // ISO images under a shared pool's directory are visible to every host that mounts it.
      isoLibraries: pools.filter((p) => p.shared && p.targetPath).map((p) => p.targetPath!),
      version: undefined,
    };
  }

  private async networks(host: string, opts: CallOptions): Promise<PortGroup[]> {
    const names = parseNameList(await this.virsh(host, 'net-list', ['net-list', '--all', '--name'], opts)).map((n) => safeName(host, 'net-list', n));
    return Promise.all(
      names.map(async (name) => {
        const xml = await this.virsh(host, 'net-dumpxml', ['net-dumpxml', '--network', name], opts);
        const n = this.parse(host, 'net-dumpxml', () => parseNetXml(xml));
        return { name: n.name, ...(n.vlan === undefined ? {} : { vlan: n.vlan }), ...(n.internalOnly ? { internalOnly: true } : {}) };
      }),
    );
  }

  async listVms(host: string, opts: CallOptions = {}): Promise<VmFacts[]> {
    this.checkHost(host, 'listVms');
    const [names, pools] = await Promise.all([this.domainNames(host, opts), this.pools(host, opts)]);
    let npiv: HostNpiv | null = null;
    const facts = (await Promise.all(names.map((n) => this.ifStillThere(() => this.vmFacts(host, n, opts))))).filter((f) => f !== null);
    // Only hosts with passed-through vHBAs need the nodedev picture; without it those VMs list without their vHBA WWPNs.
    if (facts.some((f) => f.dom.scsiHostAdapters.length > 0)) npiv = await this.hostNpivOrNull(host, opts);
    return facts.map((f) => this.toVm(host, f.dom, f.info, f.sizes, pools, npiv));
  }

  private async vmFacts(host: string, name: string, opts: CallOptions): Promise<{ info: DomInfo; dom: DomainXml; sizes: Record<string, number> }> {
    const [infoOut, xml, blk] = await Promise.all([
      this.virsh(host, 'dominfo', ['dominfo', '--domain', name], opts),
      this.virsh(host, 'dumpxml', ['dumpxml', '--domain', name], opts),
      // Sizes are informative (free-space checks); a domain without block info still lists.
      this.virsh(host, 'domblkinfo', ['domblkinfo', '--domain', name, '--all'], opts).catch(() => ''),
    ]);
    const info = this.parse(host, 'dominfo', () => parseDominfo(infoOut));
    const dom = this.parse(host, 'dumpxml', () => parseDomainXml(xml));
    return { info, dom, sizes: parseDomblkinfoAll(blk) };
  }

  private toVm(host: string, dom: DomainXml, info: DomInfo, sizes: Record<string, number>, pools: PoolXml[], npiv: HostNpiv | null): VmFacts {
    const poolOf = (d: DomainXml['disks'][number]): PoolXml | undefined =>
      d.pool ? pools.find((p) => p.name === d.pool) : pools.filter((p) => p.targetPath && d.path.startsWith(`${p.targetPath.replace(/\/$/, '')}/`)).sort((a, b) => b.targetPath!.length - a.targetPath!.length)[0];
    const disks = dom.disks.map((d) => ({ path: d.path, datastore: poolOf(d)?.name ?? '', sizeGiB: Math.round(((sizes[d.target] ?? 0) / 1024 ** 3) * 10) / 10 }));
    // A domain without disks has nothing on shared storage that another host could start it from.
    const allShared = dom.disks.length > 0 && dom.disks.every((d) => poolOf(d)?.shared === true);
    const vfc: VirtualFcAdapter[] = [];
    for (const v of dom.meta?.vhbas ?? []) vfc.push({ name: v.name ?? `vhba-${v.wwpns[0]}`, fabric: v.fabric ?? '0000000000000000', wwnn: v.wwnn, wwpns: v.wwpns });
    const seen = new Set(vfc.flatMap((v) => v.wwpns));
    for (const d of dom.disks) {
      const fc = poolOf(d)?.fcAdapter;
      if (fc && !seen.has(fc.wwpn)) {
        seen.add(fc.wwpn);
        vfc.push({ name: `pool ${poolOf(d)!.name}`, fabric: '0000000000000000', wwnn: fc.wwnn, wwpns: [fc.wwpn] });
      }
    }
    for (const a of dom.scsiHostAdapters) {
      const dev = npiv?.vports.find((v) => v.name === a);
      if (dev?.fc && !seen.has(dev.fc.wwpn)) {
        seen.add(dev.fc.wwpn);
        vfc.push({ name: a, fabric: dev.fc.fabric ?? '0000000000000000', wwnn: dev.fc.wwnn, wwpns: [dev.fc.wwpn] });
      }
    }
    return {
      name: dom.name,
      id: dom.uuid,
      host,
      power: powerState(info.state, info.managedSave),
      ha: dom.meta?.ha ?? (info.persistent && allShared),
      memoryMiB: dom.memoryMiB,
      cpus: dom.vcpus,
      disks,
      // A <vlan> tag on the domain's own <interface> is part of the domain XML and moves with it:
      // the target only has to offer the same network. Reporting it as the VLAN the network must
      // carry made Ferry's prechecks refuse every tagged domain on every untagged network.
      networks: dom.networks.map((n) => ({ portGroup: n.portGroup })),
      devices: dom.devices,
      affinity: dom.affinity,
      ...(dom.meta?.antiAffinity ? { antiAffinityGroup: dom.meta.antiAffinity } : {}),
      vfc,
    };
  }

  private async vmOn(host: string, name: string, opts: CallOptions): Promise<VmFacts> {
    const [pools, f] = await Promise.all([this.pools(host, opts), this.vmFacts(host, name, opts)]);
    const npiv = f.dom.scsiHostAdapters.length > 0 ? await this.hostNpivOrNull(host, opts) : null;
    return this.toVm(host, f.dom, f.info, f.sizes, pools, npiv);
  }

  async findVm(name: string, opts: CallOptions = {}): Promise<VmFacts | null> {
    const failures: AdapterError[] = [];
    const found = await pMap(this.settings.hosts, this.settings.concurrency ?? 8, async (host) => {
      try {
        return (await this.domainNames(host, opts)).includes(name) ? host : null;
      } catch (err) {
        if (err instanceof AdapterError) failures.push(err);
        else throw err;
        return null;
      }
    });
    const host = found.find((h) => h !== null);
    if (host) return this.vmOn(host, name, opts);
    // Absent only if every host answered; otherwise "not found" would be a guess.
    if (failures.length > 0) {
      const f = failures[0]!;
      throw new AdapterError(f.host, 'findVm', `${name} not found on the hosts that answered; ${failures.length} host(s) did not: ${failures.map((e) => `${e.host}: ${e.message}`).join('; ')}`, {
        retryable: failures.some((e) => e.retryable),
        cause: f,
      });
    }
    return null;
  }

  // ---- maintenance (Ferry's cordon) -----------------------------------------------------

  async enterMaintenance(host: string, _opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'enterMaintenance');
    await this.deps.redis.set(this.cordonKey(host), JSON.stringify({ since: new Date().toISOString() }), 'NX');
  }

  async exitMaintenance(host: string, _opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'exitMaintenance');
    await this.deps.redis.del(this.cordonKey(host));
  }

  // ---- NPIV -----------------------------------------------------------------------------

  private async hostNpiv(host: string, opts: CallOptions): Promise<HostNpiv> {
    // fc_host covers physical HBAs and vHBAs alike; vport_ops marks the NPIV-capable parents.
    const [fcNames, vportNames] = await Promise.all([
      this.virsh(host, 'nodedev-list', ['nodedev-list', '--cap', 'fc_host'], opts),
      this.virsh(host, 'nodedev-list', ['nodedev-list', '--cap', 'vports'], opts),
    ]);
    const names = [...new Set([...parseNameList(fcNames), ...parseNameList(vportNames)])].map((n) => safeName(host, 'nodedev-list', n));
    const devs = await Promise.all(
      names.map(async (n) => {
        const xml = await this.virsh(host, 'nodedev-dumpxml', ['nodedev-dumpxml', '--device', n], opts);
        return this.parse(host, 'nodedev-dumpxml', () => parseNodedevXml(xml));
      }),
    );
    const hbas = devs.filter((d) => d.vportOps && d.fc);
    const hbaNames = new Set(hbas.map((h) => h.name));
    const vports = devs.filter((d) => d.fc && !d.vportOps && d.parent !== undefined && hbaNames.has(d.parent));
    return { devs, hbas, vports };
  }

  private async hostNpivOrNull(host: string, opts: CallOptions): Promise<HostNpiv | null> {
    try {
      return await this.hostNpiv(host, opts);
    } catch (err) {
      if (!(err instanceof AdapterError)) throw err;
      this.deps.log.warn({ host, err: err.message }, 'NPIV could not be read; VMs list without their vHBA WWPNs');
      return null;
    }
  }

  private hba(d: NodedevXml): PhysicalHba {
    return {
      wwpn: d.fc!.wwpn,
      wwnn: d.fc!.wwnn,
      fabric: d.fc!.fabric ?? '0000000000000000',
      instance: d.name,
      // libvirt only reports vport_ops where sysfs has vport_create, i.e. the HBA does NPIV.
      npivCapable: d.vportOps !== undefined,
      ...(d.vportOps && d.vportOps.maxVports > 0 ? { maxVports: d.vportOps.maxVports } : {}),
    };
  }

  async npivInventory(host: string, opts: CallOptions = {}): Promise<NpivInventory> {
    this.checkHost(host, 'npivInventory');
    const [npiv, names, pools] = await Promise.all([this.hostNpiv(host, opts), this.domainNames(host, opts), this.pools(host, opts)]);
    const hbaByName = new Map(npiv.hbas.map((h) => [h.name, h]));
    const virtualPorts: VirtualPort[] = npiv.vports.map((v) => {
      const parent = hbaByName.get(v.parent!)!;
      return {
        host,
        hbaWwpn: parent.fc!.wwpn,
        wwpn: v.fc!.wwpn,
        wwnn: v.fc!.wwnn,
        fabric: v.fc!.fabric ?? parent.fc!.fabric ?? '0000000000000000',
        handle: v.name,
      };
    });
    // Endpoints: vHBA WWPNs referenced by *running* domains, directly (scsi hostdev, metadata)
    // or through an fc_host-backed pool their disks use. Seed 000's subtraction happens in core.
    const owners: Record<Wwn, string> = {};
    const poolFc = new Map(pools.filter((p) => p.fcAdapter).map((p) => [p.name, p]));
    await Promise.all(
      names.map(async (name) => {
        const got = await this.ifStillThere(async () => {
          const state = (await this.virsh(host, 'domstate', ['domstate', '--domain', name], opts)).trim();
          return powerState(state, false) === 'off' ? 'off' : this.virsh(host, 'dumpxml', ['dumpxml', '--domain', name], opts);
        });
        if (got === null || got === 'off') return;
        const d = this.parse(host, 'dumpxml', () => parseDomainXml(got));
        for (const a of d.scsiHostAdapters) {
          const v = npiv.vports.find((p) => p.name === a);
          if (v?.fc) owners[v.fc.wwpn] = d.name;
        }
        for (const disk of d.disks) {
          const pool = (disk.pool && poolFc.get(disk.pool)) || pools.find((p) => p.fcAdapter && p.targetPath && disk.path.startsWith(`${p.targetPath}/`));
          if (pool?.fcAdapter) owners[pool.fcAdapter.wwpn] = d.name;
        }
        // Only the WWPN the domain runs on now: the pair's other half is what migration moves to.
        for (const v of d.meta?.vhbas ?? []) if (v.wwpns[0]) owners[v.wwpns[0]] = d.name;
      }),
    );
    return {
      host,
      hbas: npiv.hbas.map((d) => this.hba(d)),
      virtualPorts,
      endpointWwpns: Object.keys(owners),
      endpointOwners: owners,
    };
  }

  async removeVirtualPort(port: VirtualPort, opts: CallOptions = {}): Promise<void> {
    const host = port.host;
    this.checkHost(host, 'removeVirtualPort');
    // Checked again at execution time: the handle must still be that WWPN and no running VM may use it.
    const inv = await this.npivInventory(host, opts);
    const live = inv.virtualPorts.find((v) => v.wwpn === port.wwpn);
    if (!live) throw new AdapterError(host, 'removeVirtualPort', `no virtual port ${port.wwpn} on ${host} (already removed?)`, { code: 'not-found' });
    if (inv.endpointWwpns.includes(port.wwpn)) {
      throw new AdapterError(host, 'removeVirtualPort', `virtual port ${port.wwpn} on ${host} is in use by ${inv.endpointOwners?.[port.wwpn] ?? 'a running domain'}; not removed`, { code: 'in-use' });
    }
    await this.destroyVport(host, live, opts);
  }

  /** nodedev-destroy; where libvirt did not create the vport (or refuses), sysfs vport_delete on the parent fc_host. */
  private async destroyVport(host: string, port: VirtualPort, opts: CallOptions): Promise<void> {
    const handle = safeName(host, 'nodedev-destroy', port.handle ?? '');
    try {
      await this.virsh(host, 'nodedev-destroy', ['nodedev-destroy', '--device', handle], opts);
      return;
    } catch (err) {
      if (!(err instanceof AdapterError) || err.code !== 'exit') throw err;
      this.deps.log.warn({ host, wwpn: port.wwpn, err: err.message }, 'nodedev-destroy failed; trying sysfs vport_delete');
      const inv = await this.hostNpiv(host, opts);
      const parent = inv.hbas.find((h) => h.fc?.wwpn === port.hbaWwpn);
      if (parent?.hostNumber === undefined) throw err;
      // Kernel format "WWPN:WWNN"; both are validated 16-hex-digit WWNs, the path is built from a number.
      const sysfs = `/sys/class/fc_host/host${parent.hostNumber}/vport_delete`;
      await execChecked(this.deps.shell, host, 'vport_delete', ['sh', '-c', 'printf "%s" "$1" > "$2"', 'vport_delete', `${port.wwpn}:${port.wwnn}`, sysfs], opts);
    }
  }

  private async createVhba(host: string, parent: string, wwnn: Wwn, wwpn: Wwn, opts: CallOptions): Promise<string> {
    const xml = `<device><parent>${parent}</parent><capability type='scsi_host'><capability type='fc_host'><wwnn>${wwnn}</wwnn><wwpn>${wwpn}</wwpn></capability></capability></device>\n`;
    const out = await this.virsh(host, 'nodedev-create', ['nodedev-create', '/dev/stdin'], { ...opts, stdin: xml });
    const m = /Node device (\S+) created/.exec(out);
    if (!m) throw new AdapterError(host, 'nodedev-create', `nodedev-create on ${host} did not name the new device: ${out.trim().slice(0, 120)}`, { code: 'malformed' });
    return m[1]!;
  }

  // ---- migration ------------------------------------------------------------------------

  async checkMigration(_vm: string, _target: string, _opts?: CallOptions): Promise<CheckFinding[]> {
    return []; // capabilities.nativeChecks is false: Ferry's pure prechecks decide.
  }

  /** The destination URI of a migration to `target`: {host} becomes the target's address (no user or port). */
  private migrateUriFor(target: string): string {
    return this.settings.migrateUri.replaceAll('{host}', this.settings.addresses[target] ?? target);
  }

  /**
   * The path a live migration takes, tried for real: on the source host, `virsh -c <migrateUri>`
   * opens the target's libvirt exactly as `virsh migrate` will (same user, same SSH key and
   * known_hosts of the source host), and the host UUID it answers with must be the target's —
   * not the source's own, nor a third host's. A wrong port, an unknown host key or a missing
   * key all show here, before anything moves. (QEMU's own data connection, on the ports in the
   * target's qemu.conf, is not tried: only a migration opens it.)
   */
  async checkMigrationPath(source: string, target: string, opts: CallOptions = {}): Promise<(CheckFinding & { code: 'migration-network' })[]> {
    this.checkHost(source, 'checkMigrationPath');
    this.checkHost(target, 'checkMigrationPath');
    const uri = this.migrateUriFor(target);
    const hostUuid = (xml: string): string | undefined => /<host>\s*<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1]?.trim();
    const timeoutMs = this.settings.pathCheckTimeoutMs ?? 30_000;
    const [viaSource, own, targetOwn] = await Promise.allSettled([
      execChecked(this.deps.shell, source, 'migration path', [this.settings.virsh, '-c', uri, 'capabilities'], { ...opts, timeoutMs }),
      this.virsh(source, 'capabilities', ['capabilities'], opts),
      this.virsh(target, 'capabilities', ['capabilities'], opts),
    ]);
    const block = (message: string): (CheckFinding & { code: 'migration-network' })[] => [{ code: 'migration-network', severity: 'block', message }];
    if (viaSource.status === 'rejected') {
      const e = viaSource.reason as unknown;
      const why = e instanceof AdapterError ? e.message.replace(/^.*? exited \d+: /, '') : String(e);
      return block(`${source} cannot reach ${target}'s libvirt at ${uri}, the path a live migration takes: ${why}`);
    }
    const seen = hostUuid(viaSource.value.stdout);
    const mine = own.status === 'fulfilled' ? hostUuid(own.value) : undefined;
    const theirs = targetOwn.status === 'fulfilled' ? hostUuid(targetOwn.value) : undefined;
    // Host UUIDs only tell hosts apart when they differ (libvirt itself refuses to migrate between equal ones).
    if (seen && mine && theirs && mine !== theirs) {
      if (seen === mine) return block(`${uri} leads from ${source} back to ${source} itself (host UUID ${seen}), not to ${target}`);
      if (seen !== theirs) return block(`${uri} leads from ${source} to a libvirt host with UUID ${seen}, but ${target} has ${theirs}`);
    }
    return [];
  }

  async migrateVm(req: MigrateRequest, onProgress?: (p: MigrateProgress) => void, opts: CallOptions = {}): Promise<MigrateResult> {
    const { source, target } = req;
    this.checkHost(source, 'migrateVm');
    this.checkHost(target, 'migrateVm');
    if (source === target) throw new AdapterError(source, 'migrateVm', `${req.vm} is already on ${target}`, { code: 'same-host' });
    if (req.datastore) throw new UnsupportedError(source, 'migrate with storage', 'libvirt', 'Ferry migrates libvirt domains between hosts sharing storage only (no --copy-storage-all)');
    // The caller's fresh reading of the VM on the source spares two rounds of virsh calls; without
    // one it is read here. Either way `virsh migrate` itself refuses a domain the source lacks.
    const vm = req.seen && req.seen.host === source && req.seen.name === req.vm ? req.seen : await this.vmFromSource(source, req.vm, opts);
    if (req.mode === 'live' && vm.power !== 'running') throw new AdapterError(source, 'migrateVm', `${req.vm} is ${vm.power}; live migration needs it running`, { code: 'not-running' });
    const started = Date.now();
    const dom = safeName(source, 'migrateVm', req.vm);

    // Seed 002: the VM's secondary WWPN moves to the target as a new vHBA before the memory does.
    const pairs = vm.vfc.filter((v) => v.wwpns.length === 2);
    const undo: (() => Promise<void>)[] = [];
    const rollback = async (): Promise<string[]> => {
      const problems: string[] = [];
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      return problems;
    };

    try {
      if (pairs.length > 0) {
        const [srcNpiv, tgtNpiv] = await Promise.all([this.npivInventory(source, opts), this.hostNpiv(target, opts)]);
        for (const pair of pairs) {
          const [, secondary] = pair.wwpns as [Wwn, Wwn];
          // The secondary may not be logged in twice: drop it on the source first, restore on rollback.
          const srcSecondary = srcNpiv.virtualPorts.find((p) => p.wwpn === secondary);
          if (srcSecondary) {
            await this.destroyVport(source, srcSecondary, opts);
            const parentName = srcNpiv.hbas.find((h) => h.wwpn === srcSecondary.hbaWwpn)?.instance;
            undo.push(async () => {
              if (parentName) await this.createVhba(source, parentName, srcSecondary.wwnn, secondary, {});
            });
          }
          const hasRoom = (h: NodedevXml): boolean => !h.vportOps?.maxVports || h.vportOps.vports < h.vportOps.maxVports;
          const parent = tgtNpiv.hbas.find((h) => h.fc?.fabric === pair.fabric && hasRoom(h)) ?? tgtNpiv.hbas.find(hasRoom);
          if (!parent) throw new AdapterError(target, 'migrateVm', `${target} has no NPIV-capable HBA for ${req.vm}'s vHBA ${secondary}`, { code: 'no-npiv' });
          const created = await this.createVhba(target, parent.name, pair.wwnn, secondary, opts);
          undo.push(async () => {
            await this.virsh(target, 'nodedev-destroy', ['nodedev-destroy', '--device', created], {});
          });
        }
      }

      await this.runMigration(source, target, dom, req.mode, onProgress, opts);
    } catch (err) {
      const problems = await rollback();
      if (problems.length > 0) {
        throw new AdapterError(source, 'migrateVm', `migration of ${req.vm} failed (${(err as Error).message}) AND rollback was incomplete: ${problems.join('; ')}`, { code: 'rollback-failed', cause: err });
      }
      throw err;
    }

    // Landed: the primary on the source is no longer needed; the pair swaps roles on the target.
    let lingering: VirtualPort[] = [];
    if (pairs.length > 0) {
      const srcNpiv = await this.npivInventory(source, opts);
      for (const pair of pairs) {
        const primary = srcNpiv.virtualPorts.find((p) => p.wwpn === pair.wwpns[0]);
        if (!primary) continue;
        try {
          await this.destroyVport(source, primary, opts);
        } catch (err) {
          this.deps.log.warn({ host: source, wwpn: primary.wwpn, err: err }, 'primary vHBA left on source after migration');
        }
      }
      const meta = { ha: vm.ha, antiAffinity: vm.antiAffinityGroup, vhbas: vm.vfc.filter((v) => v.wwpns.length === 2).map((v) => ({ wwnn: v.wwnn, wwpns: [v.wwpns[1]!, v.wwpns[0]!], fabric: v.fabric, name: v.name })) };
      await this.virsh(target, 'metadata', ['metadata', '--domain', dom, '--uri', FERRY_XMLNS, '--key', 'ferry', '--set', ferryMetaXml(meta), '--live', '--config'], opts).catch((err: Error) =>
        this.deps.log.warn({ host: target, vm: dom, err: err.message }, 'could not record swapped vHBA pair in domain metadata'),
      );
      const after = await this.npivInventory(source, opts);
      const wanted = new Set(pairs.flatMap((p) => p.wwpns));
      lingering = after.virtualPorts.filter((p) => wanted.has(p.wwpn));
    }
    return { vm: req.vm, host: target, durationMs: Date.now() - started, ...(lingering.length ? { lingeringPorts: lingering } : {}) };
  }

  private async vmFromSource(source: string, name: string, opts: CallOptions): Promise<VmFacts> {
    const names = await this.domainNames(source, opts);
    if (!names.includes(name)) throw new AdapterError(source, 'migrateVm', `${name} is not on ${source}`, { code: 'not-found' });
    return this.vmOn(source, name, opts);
  }

  private async runMigration(source: string, target: string, dom: string, mode: 'live' | 'cold', onProgress: ((p: MigrateProgress) => void) | undefined, opts: CallOptions): Promise<void> {
    const targetUri = this.migrateUriFor(target);
    const flags = mode === 'live' ? ['--live', '--persistent', '--undefinesource'] : ['--offline', '--persistent', '--undefinesource'];
    if (this.settings.migrateBandwidthMiBs !== undefined) flags.push('--bandwidth', String(this.settings.migrateBandwidthMiBs));
    if (mode === 'live' && this.settings.autoConverge) flags.push('--auto-converge');
    const limitMs = this.settings.migrateTimeoutMs ?? 2 * 3_600_000;
    const migrateAbort = new AbortController();
    let stopped: 'cancel' | 'timeout' | null = null;
    let last: { percent?: number; remainingMiB?: number } = {};
    const stop = (why: 'cancel' | 'timeout'): void => {
      if (stopped) return;
      stopped = why;
      // Ask libvirt to stop the job; the migrate command then fails by itself and the domain stays on the source.
      this.virsh(source, 'domjobabort', ['domjobabort', '--domain', dom]).catch((err: Error) => {
        this.deps.log.warn({ host: source, vm: dom, err: err.message }, 'domjobabort failed; closing the migrate command');
        migrateAbort.abort();
      });
    };
    const onAbort = (): void => stop('cancel');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => stop('timeout'), limitMs);
    let done = false;
    // The poll's nap ends the moment the migration does: waiting out a whole interval (and a
    // domjobinfo round trip) after `virsh migrate` returned was pure delay on every migration.
    let wake = (): void => undefined;
    const poll = (async () => {
      const every = this.settings.pollMs ?? 1000;
      while (!done) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, every);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        if (done) break;
        try {
          const info = parseDomjobinfo(await this.virsh(source, 'domjobinfo', ['domjobinfo', '--domain', dom]));
          if (!done && info.type.toLowerCase() !== 'none' && info.percent !== undefined) {
            last = { percent: info.percent, ...(info.remainingMiB !== undefined ? { remainingMiB: info.remainingMiB } : {}) };
            onProgress?.({ percent: info.percent, phase: 'migrating memory', ...(info.remainingMiB !== undefined ? { remainingMiB: info.remainingMiB } : {}) });
          }
        } catch {
          /* progress is best-effort; the migrate command's own result decides */
        }
      }
    })();
    try {
      if (opts.signal?.aborted) throw new AdapterError(source, 'migrate', `migration of ${dom} cancelled before it started`, { code: 'cancelled' });
      onProgress?.({ percent: 0, phase: 'starting' });
      await this.virsh(source, 'migrate', ['migrate', ...flags, '--domain', dom, '--desturi', targetUri], {
        // domjobabort at limitMs is what ends it; the command's own limit is the backstop.
        timeoutMs: limitMs + 60_000,
        signal: migrateAbort.signal,
      });
    } catch (err) {
      if (stopped === 'cancel') throw new AdapterError(source, 'migrate', `migration of ${dom} to ${target} cancelled (domjobabort); it stays on ${source}`, { code: 'cancelled', cause: err });
      if (stopped === 'timeout') {
        const where = last.percent !== undefined ? ` (at ${last.percent}% of the data${last.remainingMiB !== undefined ? `, ${last.remainingMiB} MiB still to copy` : ''}: the guest changes its memory faster than it copies)` : '';
        throw new AdapterError(source, 'migrate', `migration of ${dom} to ${target} did not finish within the migrate timeout of ${formatMs(limitMs)}${where}; Ferry aborted it (domjobabort) and ${dom} stays on ${source}`, {
          code: 'timeout',
          cause: err,
        });
      }
      throw err;
    } finally {
      done = true;
      wake();
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    // A domjobinfo already in flight finishes on its own (its answer is dropped); it is not waited for.
    void poll;
    await this.checkLanding(source, target, dom, mode);
    onProgress?.({ percent: 100, phase: 'done' });
  }

  /**
   * Resolve only when both hosts say the move happened: the domain runs (live) and is persistent
   * on the target, and the source no longer has it (--undefinesource). Both hosts are asked at
   * once: one round trip after the migration, not two.
   */
  private async checkLanding(source: string, target: string, dom: string, mode: 'live' | 'cold'): Promise<void> {
    const [infoOut, sourceNames] = await Promise.all([this.virsh(target, 'dominfo', ['dominfo', '--domain', dom]), this.domainNames(source, {})]);
    const info = this.parse(target, 'dominfo', () => parseDominfo(infoOut));
    const state = powerState(info.state, info.managedSave);
    if (mode === 'live' && state !== 'running') {
      throw new AdapterError(target, 'migrate', `${dom} reached ${target} but is "${info.state}", not running`, { code: 'landed-not-running' });
    }
    if (!info.persistent) throw new AdapterError(target, 'migrate', `${dom} reached ${target} but is not persistent there (a restart of ${target}'s libvirt would lose it)`, { code: 'landed-not-persistent' });
    if (sourceNames.includes(dom)) {
      throw new AdapterError(source, 'migrate', `${dom} runs on ${target} but ${source} still has a definition of it (--undefinesource did not take): starting it there would run the VM twice`, { code: 'source-still-defined' });
    }
  }

  // ---- host commands --------------------------------------------------------------------

  /**
   * The patch hook: `sh -c <command>` on the host. The command is configuration, run as given;
   * the RemoteShell quotes it as one argument. A timeout or cancel kills it (SshRemoteShell's
   * posixKill) and throws; a non-zero exit is returned.
   */
  async runCommand(host: string, command: string, opts: CallOptions & { timeoutMs?: number } = {}): Promise<CommandResult> {
    this.checkHost(host, 'runCommand');
    const started = Date.now();
    const res = await this.deps.shell.exec(host, ['sh', '-c', command], {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (res.code === null) throw new AdapterError(host, 'runCommand', `the command on ${host} was killed by a signal before it exited`, { code: 'killed' });
    return { stdout: res.stdout, stderr: res.stderr, exitCode: res.code, durationMs: Date.now() - started };
  }

  async close(): Promise<void> {
    await this.deps.shell.close();
  }
}

export function libvirtSettingsFrom(
  cluster: string,
  hosts: string[],
  cfg: { uri: string; migrateUri: string; virsh: string; sharedPools?: string[]; migrateTimeout?: string | number; migrateBandwidth?: number; autoConverge?: boolean },
  addresses: Record<string, string>,
): LibvirtSettings {
  // {host} in migrateUri is the address alone: the SSH user and port of `ssh.addresses` are how
  // Ferry reaches the host, not how the hosts reach each other (the URI says that itself).
  const hostOnly = Object.fromEntries(Object.entries(addresses).map(([h, a]) => {
    const parsed = parseSshAddress(a);
    return [h, parsed.ok ? parsed.value.host : a];
  }));
  return {
    cluster,
    hosts,
    uri: cfg.uri,
    migrateUri: cfg.migrateUri,
    virsh: cfg.virsh,
    addresses: hostOnly,
    sharedPools: cfg.sharedPools,
    migrateTimeoutMs: cfg.migrateTimeout === undefined ? undefined : durationMs(cfg.migrateTimeout),
    ...(cfg.migrateBandwidth !== undefined ? { migrateBandwidthMiBs: cfg.migrateBandwidth } : {}),
    ...(cfg.autoConverge ? { autoConverge: true } : {}),
  };
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 100) / 10} s`;
}
