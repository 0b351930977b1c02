/** Shared by the drain e2e tests and bench/drain.ts: a small lab cluster and a host with N clean VMs. */
import type { Redis } from 'ioredis';
import type { VmFacts } from '../../src/adapters/types.js';
import type { LabHostState } from '../../src/adapters/lab/fleet.js';
import { labKeys } from '../../src/adapters/lab/control.js';
import type { Runtime } from '../../src/runtime.js';
import type { Deps } from '../../src/jobs/context.js';

export function drainLabYaml(opts: { latencyMs?: number; migrationMs?: number; hosts?: string; concurrency?: number; retries?: number; maxInMaintenance?: number } = {}): string {
  return `
timezone: UTC
lab:
  seed: 7
  latencyMs: ${opts.latencyMs ?? 2}
  migrationMs: ${opts.migrationMs ?? 60}
limits:
  migrationRetries: ${opts.retries ?? 1}
  migrationConcurrency: ${opts.concurrency ?? 2}
clusters:
  prod-a:
    adapter: lab
    hosts: ["${opts.hosts ?? 'hyp[01-06]'}"]${opts.maxInMaintenance ? `
    maxInMaintenance: ${opts.maxInMaintenance}` : ''}
  prod-b:
    adapter: lab
    hosts: ["hyp[07-09]"]
groups:
  operators: [alice, bob, carol, dave]
  approvers: [bob, carol]
console:
  user: alice
`;
}

export function vmName(host: string, i: number): string {
  return `vm-${host}-${String(i).padStart(2, '0')}`;
}

/** Replace a lab host's VMs with n running HA VMs on shared storage (drainable anywhere in the cluster). */
export async function setHostVms(deps: Deps, host: string, n: number, opts: { memoryMiB?: number; npiv?: number[] } = {}): Promise<string[]> {
  const { rt } = deps;
  await rt.adapters.forHost(host).listVms(host); // seeds the lab
  const keys = labKeys(rt.prefix);
  const state = JSON.parse((await rt.redis.get(keys.host(host)))!) as LabHostState;
  const cluster = state.facts.cluster;
  const ds = state.facts.datastores.find((d) => d.shared)!.name;
  const pg = state.facts.portGroups.find((p) => !p.internalOnly)!;
  const vms: VmFacts[] = [];
  state.vports = [];
  for (let i = 1; i <= n; i++) {
    const name = vmName(host, i);
    const vm: VmFacts = {
      name,
      id: `00000000-0000-4000-8000-${host.padStart(6, '0')}${String(i).padStart(6, '0')}`,
      host,
      power: 'running',
      ha: true,
      memoryMiB: opts.memoryMiB ?? 2048,
      cpus: 2,
      disks: [{ path: `${ds}/${name}/${name}.vhdx`, datastore: ds, sizeGiB: 40 }],
      networks: [{ portGroup: pg.name, vlan: pg.vlan }],
      devices: [],
      affinity: { cpu: false, memory: false },
      vfc: [],
    };
    if (opts.npiv?.includes(i)) {
      vm.vfc = state.facts.hbas.map((hba, k) => ({
        name: `Fibre Channel Adapter ${k + 1}`,
        fabric: hba.fabric,
        wwnn: `C003FF00${String(i).padStart(4, '0')}${k}00${host.slice(-2)}`.slice(0, 16).padEnd(16, '0'),
        wwpns: [`C003FF01${String(i).padStart(4, '0')}${k}0${host.slice(-2)}`.slice(0, 16).padEnd(16, '0'), `C003FF02${String(i).padStart(4, '0')}${k}0${host.slice(-2)}`.slice(0, 16).padEnd(16, '0')],
      }));
      for (const [k, a] of vm.vfc.entries()) state.vports.push({ host, hbaWwpn: state.facts.hbas[k]!.wwpn, wwpn: a.wwpns[0]!, wwnn: a.wwnn, fabric: a.fabric, fcId: 0x30000 + i });
    }
    vms.push(vm);
  }
  state.vms = vms;
  state.facts.memoryUsedMiB = vms.reduce((s, v) => s + v.memoryMiB, 0);
  await rt.redis.set(keys.host(host), JSON.stringify(state));
  void cluster;
  return vms.map((v) => v.name);
}

export async function hostState(rt: Runtime, host: string): Promise<LabHostState> {
  return JSON.parse((await rt.redis.get(labKeys(rt.prefix).host(host)))!) as LabHostState;
}

/** Where each VM is, by name, over the given hosts. */
export async function whereIs(rt: Runtime, hosts: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const h of hosts) for (const v of (await hostState(rt, h)).vms) out.set(v.name, h);
  return out;
}

/**
 * Migrations the lab performed per VM, from its own count (written with each move), over every
 * lab host under the prefix. Not from Ferry's audit: a worker killed after the move and before
 * its "ok" entry leaves a VM that moved once with no such entry.
 */
export async function migrationsPerVm(redis: Redis, prefix: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', labKeys(prefix).host('*'), 'COUNT', 500);
    cursor = next;
    for (const raw of keys.length ? await redis.mget(...keys) : []) {
      const arrivals = raw ? (JSON.parse(raw) as LabHostState).arrivals ?? {} : {};
      for (const [vm, n] of Object.entries(arrivals)) out.set(vm, (out.get(vm) ?? 0) + n);
    }
  } while (cursor !== '0');
  return out;
}
