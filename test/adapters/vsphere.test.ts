/**
 * The vSphere adapter against govmomi's real vCenter simulator (our launcher, built from
 * Debian's packages). The launcher shapes the model: DC0_C0 has EVC intel-broadwell and HA,
 * hosts H0/H1 have a vMotion vmknic and H2 has none, DC0_C0_H0 has a Fibre Channel HBA, and
 * DC0_C0_RP0_VM0 has NPIV WWNs, CPU affinity, a connected ISO CD-ROM and HA protection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VsphereAdapter, type VsphereSettings } from '../../src/adapters/vsphere/index.js';
import { VimClient } from '../../src/adapters/vsphere/vim.js';
import { AdapterError, UnsupportedError, type MigrateProgress } from '../../src/adapters/types.js';
import { ADAPTER_FACTORIES } from '../../src/adapters/index.js';
import { AdapterRegistry } from '../../src/adapters/registry.js';
import '../../src/adapters/index.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { buildVcsim, startVcsim, vcsimAvailable, type Vcsim } from '../support/vcsim.js';

const available = vcsimAvailable();
const HOSTS = { DC0_C0_H0: 'esx01', DC0_C0_H1: 'esx02', DC0_C0_H2: 'esx03', DC0_C1_H0: 'esx11', DC0_C1_H1: 'esx12', DC0_C1_H2: 'esx13' };

describe.skipIf(!available)('vSphere adapter against vcsim', () => {
  let sim: Vcsim;
  let adapter: VsphereAdapter;
  const adapters: VsphereAdapter[] = [];

  function make(over: Partial<VsphereSettings> = {}): VsphereAdapter {
    const a = new VsphereAdapter({
      cluster: 'prod-vc',
      hosts: ['esx01', 'esx02', 'esx03'],
      settings: {
        url: sim.url,
        user: sim.user,
        password: sim.password,
        datacenter: 'DC0',
        cluster: 'DC0_C0',
        caFile: sim.caFile,
        hostNames: HOSTS,
        taskPollMs: 50,
        requestTimeoutMs: 10_000,
        ...over,
      },
    });
    adapters.push(a);
    return a;
  }

  beforeAll(async () => {
    const build = buildVcsim();
    console.info(`ferry-vcsim: ${build.cached ? 'cached binary' : `built in ${build.buildMs} ms`} (${build.binary})`);
    sim = await startVcsim(build.binary);
    adapter = make();
  }, 15 * 60_000);

  afterAll(async () => {
    await Promise.allSettled(adapters.map((a) => a.close()));
    await sim?.stop();
  });

  it('logs in and describes a host with CPU, EVC baseline, datastores, vMotion network and FC HBA', async () => {
    const h = await adapter.describeHost('esx01');
    expect(h).toMatchObject({ name: 'esx01', cluster: 'prod-vc', adapter: 'vsphere', maintenance: false, migrationNetwork: true });
    expect(h.cpu).toMatchObject({ vendor: 'intel', family: '6/45', baseline: 'intel-broadwell' });
    expect(h.cpu.cores).toBeGreaterThan(0);
    expect(h.memoryMiB).toBeGreaterThan(1000);
    expect(h.datastores.map((d) => d.name).sort()).toEqual(['LocalDS_0', 'LocalDS_1']);
    expect(h.datastores.every((d) => d.shared && d.capacityGiB > 0 && d.freeGiB <= d.capacityGiB)).toBe(true);
    expect(h.portGroups.map((p) => p.name)).toEqual(expect.arrayContaining(['VM Network', 'DC0_DVPG0']));
    // The launcher's HBA: WWNN above 2^63 arrives as a negative xsd:long.
    expect(h.hbas).toEqual([
      { wwpn: '2100000E1E1C0001', wwnn: 'C003FF6E5B4A0002', fabric: '0000000000000000', instance: 'vmhba2', npivCapable: false },
    ]);
    expect(h.version).toMatch(/ESXi/);
    expect(h.isoLibraries).toContain('[LocalDS_0]');

    const h3 = await adapter.describeHost('esx03');
    expect(h3.migrationNetwork).toBe(false);
    expect(h3.hbas).toEqual([]);
    expect(adapter.hostNames()).toEqual(['esx01', 'esx02', 'esx03']);
  });

  it('lists VMs per host with power, HA, affinity, devices, disks and NPIV WWPNs', async () => {
    const vm = await adapter.findVm('DC0_C0_RP0_VM0');
    expect(vm).not.toBeNull();
    expect(vm!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(['esx01', 'esx02', 'esx03']).toContain(vm!.host);
    expect(vm).toMatchObject({ power: 'running', ha: true, affinity: { cpu: true, memory: false } });
    expect(vm!.memoryMiB).toBeGreaterThan(0);
    expect(vm!.cpus).toBeGreaterThan(0);
    expect(vm!.devices).toContainEqual({ kind: 'cdrom', connected: true, backing: '[LocalDS_0] iso/tools.iso' });
    expect(vm!.disks.length).toBeGreaterThan(0);
    expect(vm!.disks[0]!.datastore).toBe('LocalDS_0');
    expect(vm!.networks).toContainEqual({ portGroup: 'DC0_DVPG0' });
    expect(vm!.vfc).toEqual([{ name: 'NPIV', fabric: '0000000000000000', wwnn: '2800000C29A1B2C3', wwpns: ['2801000C29A1B2C3', 'C003FF6E5B4A0004'] }]);

    const onHost = await adapter.listVms(vm!.host);
    expect(onHost.map((v) => v.name)).toContain('DC0_C0_RP0_VM0');
    expect(onHost.every((v) => v.host === vm!.host)).toBe(true);
    const all = (await Promise.all(['esx01', 'esx02', 'esx03'].map((h) => adapter.listVms(h)))).flat();
    expect(all.map((v) => v.name).sort()).toEqual(['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
    // The other VM: no NPIV, no affinity; HA from the cluster's dasConfig (no dasVmProtection).
    const other = all.find((v) => v.name === 'DC0_C0_RP0_VM1')!;
    expect(other).toMatchObject({ vfc: [], affinity: { cpu: false, memory: false }, ha: true });

    expect(await adapter.findVm('no-such-vm')).toBeNull();
  });

  it('reports NPIV endpoints per host and refuses to remove virtual ports plainly', async () => {
    const vm = (await adapter.findVm('DC0_C0_RP0_VM0'))!;
    const inv = await adapter.npivInventory(vm.host);
    expect(inv.virtualPorts).toEqual([]);
    expect(inv.endpointWwpns).toEqual(['2801000C29A1B2C3', 'C003FF6E5B4A0004']);
    expect(inv.endpointOwners).toEqual({ '2801000C29A1B2C3': 'DC0_C0_RP0_VM0', C003FF6E5B4A0004: 'DC0_C0_RP0_VM0' });
    const err = await adapter
      .removeVirtualPort({ host: 'esx01', hbaWwpn: '2100000E1E1C0001', wwpn: '2801000C29A1B2C3', wwnn: '2800000C29A1B2C3', fabric: '0000000000000000' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as UnsupportedError).message).toMatch(/^vsphere cannot removeVirtualPort: /);
  });

  it('enters and exits maintenance, idempotently, and re-reads the state', async () => {
    await adapter.enterMaintenance('esx03');
    expect((await adapter.describeHost('esx03')).maintenance).toBe(true);
    await adapter.enterMaintenance('esx03'); // already there: no task, no error
    const other = make({ snapshotTtlMs: 0 }); // another session, no cache: vCenter's own state
    expect((await other.describeHost('esx03')).maintenance).toBe(true);
    await adapter.exitMaintenance('esx03');
    expect((await other.describeHost('esx03')).maintenance).toBe(false);
    await adapter.exitMaintenance('esx03');
  });

  it('moves a VM to another host (MigrateVM_Task absent -> RelocateVM_Task) with progress', async () => {
    const vm = (await adapter.findVm('DC0_C0_RP0_VM1'))!;
    const target = ['esx01', 'esx02', 'esx03'].find((h) => h !== vm.host)!;
    const progress: MigrateProgress[] = [];
    const res = await adapter.migrateVm({ vm: vm.name, source: vm.host, target, mode: 'live' }, (p) => progress.push(p));
    expect(res).toMatchObject({ vm: vm.name, host: target });
    expect(res.durationMs).toBeGreaterThanOrEqual(0);
    expect(progress.at(-1)).toEqual({ percent: 100, phase: 'success' });
    expect((await make().findVm(vm.name))!.host).toBe(target);
    expect((await adapter.listVms(target)).map((v) => v.name)).toContain(vm.name);
  });

  it('moves a VM with its storage (RelocateVM_Task host + datastore, seed 003)', async () => {
    const vm = (await adapter.findVm('DC0_C0_RP0_VM0'))!;
    const target = ['esx01', 'esx02'].find((h) => h !== vm.host)!;
    const res = await adapter.migrateVm({ vm: vm.name, source: vm.host, target, mode: 'live', datastore: 'LocalDS_1' });
    expect(res).toMatchObject({ host: target, datastore: 'LocalDS_1' });
    const after = (await make().findVm(vm.name))!;
    expect(after.host).toBe(target);
  });

  it('moves a VM to a host of another cluster, into that cluster\'s root pool', async () => {
    const vm = (await adapter.findVm('DC0_C0_RP0_VM1'))!;
    const res = await adapter.migrateVm({ vm: vm.name, source: vm.host, target: 'esx12', mode: 'live' });
    expect(res.host).toBe('esx12');
    const after = (await make({ snapshotTtlMs: 0 }).findVm(vm.name))!;
    expect(after.host).toBe('esx12');
    // And back, so later tests find it in DC0_C0.
    await adapter.migrateVm({ vm: vm.name, source: 'esx12', target: vm.host, mode: 'live' });
    expect((await make({ snapshotTtlMs: 0 }).findVm(vm.name))!.host).toBe(vm.host);
  });

  it('is built by the registry from a ferry.yml vsphere section (durations parsed)', async () => {
    const yml = [
      'clusters:',
      '  vc:',
      '    adapter: vsphere',
      '    hosts: [esx01, esx02, esx03]',
      '    vsphere:',
      `      url: ${sim.url}`,
      '      user: ${VC_USER}',
      '      password: ${VC_PASSWORD}',
      '      datacenter: DC0',
      `      thumbprint: "${sim.thumbprint}"`,
      '      requestTimeout: 20s',
      '      taskPollInterval: 100ms',
      '      hostNames: { DC0_C0_H0: esx01, DC0_C0_H1: esx02, DC0_C0_H2: esx03 }',
    ].join('\n');
    const { config, inventory } = parseConfig(yml, 'ferry.yml', { VC_USER: sim.user, VC_PASSWORD: sim.password });
    // The vSphere adapter never touches Redis.
    const registry = new AdapterRegistry(config, inventory, { log: silentLogger(), redis: undefined as never, prefix: 'test:' }, ADAPTER_FACTORIES);
    const a = registry.forHost('esx02');
    expect(a).toBeInstanceOf(VsphereAdapter);
    expect(a.hostNames()).toEqual(['esx01', 'esx02', 'esx03']);
    expect((await a.describeHost('esx02')).name).toBe('esx02');
    await registry.close();
  });

  it('refuses a migration whose source is wrong or whose datastore the target lacks', async () => {
    const vm = (await adapter.findVm('DC0_C0_RP0_VM1'))!;
    const wrong = ['esx01', 'esx02', 'esx03'].find((h) => h !== vm.host)!;
    const e1 = await adapter.migrateVm({ vm: vm.name, source: wrong, target: vm.host, mode: 'live' }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(AdapterError);
    expect((e1 as AdapterError).code).toBe('wrong-source');
    const e2 = await adapter.migrateVm({ vm: vm.name, source: vm.host, target: wrong, mode: 'live', datastore: 'NoSuchDS' }).catch((e: unknown) => e);
    expect((e2 as AdapterError).code).toBe('not-found');
    expect((e2 as AdapterError).host).toBe(wrong);
    const e3 = await adapter.describeHost('esx99').catch((e: unknown) => e);
    expect(e3).toMatchObject({ code: 'not-found', host: 'esx99', op: 'describeHost' });
  });

  it('logs in again once when the server terminates the session behind its back', async () => {
    await adapter.describeHost('esx01');
    const key = adapter.client.sessionKey;
    const gen = adapter.client.sessionGeneration;
    expect(key).toBeTruthy();
    const admin = new VimClient({ url: sim.url, user: sim.user, password: sim.password, caFile: sim.caFile, timeoutMs: 10_000, keepAliveMs: 0 });
    await admin.login();
    await admin.call('TerminateSession', admin.requireContent().sessionManager, { sessionId: [key!] });
    await admin.close();
    // Past the snapshot cache, so the next read really goes to vCenter with the dead cookie.
    await new Promise((r) => setTimeout(r, 2100));
    const h = await adapter.describeHost('esx02');
    expect(h.name).toBe('esx02');
    expect(adapter.client.sessionGeneration).toBe(gen + 1);
    expect(adapter.client.sessionKey).not.toBe(key);
  });

  it('returns no native checks on a server without CheckMigrate and says so in capabilities', async () => {
    expect(adapter.capabilities.nativeChecks).toBe(true);
    expect(await adapter.checkMigration('DC0_C0_RP0_VM1', 'esx01')).toEqual([]);
    expect(adapter.capabilities.nativeChecks).toBe(false);
  });

  it('rejects a wrong password with InvalidLogin, naming the vCenter', async () => {
    const bad = make({ password: 'wrong' });
    const err = await bad.describeHost('esx01').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect(err).toMatchObject({ code: 'auth', fault: 'InvalidLogin', host: 'esx01', op: 'describeHost' });
    expect((err as Error).message).toContain('refused the login for ferry');
  });

  it('verifies TLS: pinned thumbprint passes, wrong pin and unknown CA fail, insecure only when asked', async () => {
    expect((await make({ caFile: undefined, thumbprint: sim.thumbprint }).describeHost('esx01')).name).toBe('esx01');
    const wrongPin = await make({ caFile: undefined, thumbprint: 'AA'.repeat(32) }).describeHost('esx01').catch((e: unknown) => e);
    expect(wrongPin).toMatchObject({ code: 'tls' });
    expect((wrongPin as Error).message).toMatch(/does not match the pinned/);
    const noCa = await make({ caFile: undefined }).describeHost('esx01').catch((e: unknown) => e);
    expect(noCa).toMatchObject({ code: 'tls' });
    expect((await make({ caFile: undefined, insecure: true }).describeHost('esx01')).name).toBe('esx01');
  });
});
