/**
 * The libvirt adapter end to end: real sshd on loopback (test/support/sshd.ts) -> real virsh with
 * libvirt's test driver, one driver XML file per host alias (test/fixtures/libvirt/fleet.ts).
 * The only stand-in is virsh-testdriver.sh answering `nodedev-list --cap X`, which the test
 * driver rejects in virsh 9 (see the script); nodedev-dumpxml and everything else is real virsh.
 * Migration, domjobinfo and nodedev-create/destroy are covered in libvirt-recorded.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LibvirtAdapter } from '../../src/adapters/libvirt/index.js';
import { SshRemoteShell } from '../../src/adapters/ssh/index.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { silentLogger } from '../../src/log.js';
import { VIRSH_TESTDRIVER, writeFleet, type FleetHost } from '../fixtures/libvirt/fleet.js';
import { findProgram, requirePeer, sshdAvailable, startSshd, type SshdPeer } from '../support/sshd.js';
import { rejection } from '../support/rejection.js';

const ok = requirePeer('sshd', sshdAvailable(), 'openssh-server is needed') && requirePeer('virsh', findProgram('virsh') !== null, 'libvirt-clients (virsh) is needed for the libvirt adapter tests');
const HOSTS = ['kvm01', 'kvm02', 'kvm03'];
const PREFIX = `ferry-test-libvirt-${process.pid}`;

describe.skipIf(!ok)('libvirt adapter over real sshd + virsh test driver', () => {
  let peer: SshdPeer;
  let redis: Redis;
  let fleet: FleetHost[];
  let fleetDir: string;
  const adapters: LibvirtAdapter[] = [];

  const adapter = (over: { virsh?: string; hosts?: string[] } = {}): LibvirtAdapter => {
    const hosts = over.hosts ?? HOSTS;
    const shell = new SshRemoteShell(
      { user: peer.user, port: peer.port, privateKeyPath: peer.privateKeyPath, knownHosts: peer.knownHostsPath, addresses: Object.fromEntries(hosts.map((h) => [h, peer.host])), commandTimeout: '20s' },
      { posixKill: true },
    );
    const a = new LibvirtAdapter(
      { cluster: 'kvm', hosts, uri: `test://${fleetDir}/{host}.xml`, migrateUri: 'qemu+ssh://{host}/system', virsh: over.virsh ?? VIRSH_TESTDRIVER, addresses: {} },
      { shell, redis, prefix: PREFIX, log: silentLogger() },
    );
    adapters.push(a);
    return a;
  };

  beforeAll(async () => {
    peer = await startSshd();
    fleetDir = path.join(peer.dir, 'fleet');
    fleet = writeFleet(fleetDir, HOSTS);
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await Promise.all(adapters.map((a) => a.close()));
    const keys = await redis.keys(`${PREFIX}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await peer?.stop();
  });

  it('lists VMs with power, HA (metadata and inferred), disks, networks, devices, affinity and NPIV pairs', async () => {
    const f = fleet[0]!;
    const vms = await adapter().listVms('kvm01');
    const by = Object.fromEntries(vms.map((v) => [v.name, v]));
    expect(Object.keys(by).sort()).toEqual([f.vms.batch, f.vms.db, f.vms.scratch, f.vms.web].sort());

    const web = by[f.vms.web]!;
    expect(web).toMatchObject({ host: 'kvm01', power: 'running', ha: true, memoryMiB: 4096, cpus: 2, antiAffinityGroup: 'web', id: '00000000-0000-4000-8000-000001000001' });
    // The interface's own <vlan> tag moves with the domain; only the network name is a need on the target.
    expect(web.networks).toEqual([{ portGroup: 'prod' }]);
    expect(web.disks).toEqual([{ path: `/san/${f.vms.web}.qcow2`, datastore: 'san', sizeGiB: expect.any(Number) }]);
    expect(web.vfc).toEqual([{ name: 'vfc0', fabric: '100000C0DD00AA01', wwnn: 'C003FF0000000010', wwpns: [f.usedVhbaWwpn, f.secondaryWwpn] }]);

    const db = by[f.vms.db]!;
    expect(db).toMatchObject({ power: 'running', ha: true, affinity: { cpu: true, memory: false }, cpus: 4, memoryMiB: 8192 });
    expect(db.devices).toEqual([{ kind: 'cdrom', connected: true, backing: '/iso/tools.iso' }]);

    expect(by[f.vms.batch]).toMatchObject({ power: 'off', ha: false, disks: [{ datastore: 'local' }], networks: [{ portGroup: 'backplane' }] });
    expect(by[f.vms.scratch]).toMatchObject({ power: 'running', ha: false }); // transient: nothing to restart elsewhere
  });

  it('describes a host: CPU, memory, pools as datastores, networks, HBAs', async () => {
    const facts = await adapter().describeHost('kvm02');
    expect(facts).toMatchObject({ name: 'kvm02', cluster: 'kvm', adapter: 'libvirt', memoryMiB: 262144, memoryUsedMiB: 4096 + 8192 + 2048 + 1024, maintenance: false, migrationNetwork: true, isoLibraries: ['/san'] });
    expect(facts.cpu.cores).toBe(32);
    expect(facts.datastores.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'local', shared: false, capacityGiB: 100, freeGiB: expect.any(Number) },
      { name: 'san', shared: true, capacityGiB: 100, freeGiB: expect.any(Number) },
    ]);
    expect(facts.portGroups.sort((a, b) => a.name.localeCompare(b.name))).toEqual([{ name: 'backplane', internalOnly: true }, { name: 'prod' }]);
    expect(facts.hbas).toEqual([{ wwpn: fleet[1]!.hbaWwpn, wwnn: expect.stringMatching(/^20000000C9A1/), fabric: '100000C0DD00AA01', instance: 'scsi_host5', npivCapable: true }]); // the test driver reports max_vports 0: omitted
  });

  it('reports the raw NPIV inventory; the core stale computation finds exactly the unreferenced vHBA', async () => {
    const f = fleet[2]!;
    const inv = await adapter().npivInventory('kvm03');
    expect(inv.hbas.map((h) => h.wwpn)).toEqual([f.hbaWwpn]);
    expect(inv.virtualPorts.map((p) => [p.wwpn, p.handle, p.hbaWwpn]).sort()).toEqual(
      [
        [f.usedVhbaWwpn, 'scsi_host9', f.hbaWwpn],
        [f.staleVhbaWwpn, 'scsi_host10', f.hbaWwpn],
      ].sort(),
    );
    expect(inv.endpointWwpns).toEqual([f.usedVhbaWwpn]);
    expect(inv.endpointOwners).toEqual({ [f.usedVhbaWwpn]: f.vms.web });
    expect(findStalePorts(inv).map((p) => p.wwpn)).toEqual([f.staleVhbaWwpn]);
  });

  it('finds a VM on whichever host has it, and says null when every host answered without it', async () => {
    const a = adapter();
    expect((await a.findVm(fleet[1]!.vms.db))?.host).toBe('kvm02');
    expect(await a.findVm('no-such-vm')).toBeNull();
  });

  it('keeps the cordon in Redis (libvirt has no maintenance mode); enter/exit are idempotent', async () => {
    const a = adapter();
    await a.enterMaintenance('kvm01');
    await a.enterMaintenance('kvm01');
    expect(await redis.exists(`${PREFIX}:libvirt:cordon:kvm01`)).toBe(1);
    expect(await a.describeHost('kvm01')).toMatchObject({ maintenance: true, cordoned: true });
    await a.exitMaintenance('kvm01');
    await a.exitMaintenance('kvm01');
    expect(await a.describeHost('kvm01')).toMatchObject({ maintenance: false, cordoned: false });
    expect(a.capabilities.maintenance).toBe('cordon');
  });

  it('refuses a live-in-use vHBA and removes nothing (test driver state is per call, so removal itself is in the recorded suite)', async () => {
    const f = fleet[0]!;
    const a = adapter();
    const inv = await a.npivInventory('kvm01');
    const used = inv.virtualPorts.find((p) => p.wwpn === f.usedVhbaWwpn)!;
    const err = await rejection(a.removeVirtualPort(used));
    expect(err.code).toBe('in-use');
    expect(err.message).toContain(f.vms.web);
  });

  it('turns a virsh failure into an AdapterError with exit code and stderr', async () => {
    fs.renameSync(path.join(fleetDir, 'kvm03.xml'), path.join(fleetDir, 'kvm03.xml.away'));
    try {
      const err = await rejection(adapter().listVms('kvm03'));
      expect(err).toMatchObject({ host: 'kvm03', code: 'exit' });
      expect(['list', 'pool-list']).toContain(err.op); // issued in parallel: either fails first
      expect(err.message).toMatch(/exited 1: .*(No such file|failed to connect)/i);
    } finally {
      fs.renameSync(path.join(fleetDir, 'kvm03.xml.away'), path.join(fleetDir, 'kvm03.xml'));
    }
  });

  it('refuses names that could be read as options, and hosts outside the cluster', async () => {
    // `echo` as "virsh": the listing becomes "-c test:///… list --all --name", i.e. a name starting with "-".
    const err = await rejection(adapter({ virsh: 'echo' }).listVms('kvm01'));
    expect(err.code).toBe('unsafe-name');
    const err2 = await rejection(adapter().describeHost('kvm99'));
    expect(err2.code).toBe('unknown-host');
  });

  it('reports an unreachable host as a retryable per-host error and findVm does not guess "absent"', async () => {
    const a = adapter({ hosts: ['kvm01', 'kvm-down'] });
    // kvm-down resolves to an address nothing listens on (addresses map points it at port-less loopback alias).
    (a as unknown as { deps: { shell: SshRemoteShell } }).deps.shell = new SshRemoteShell({
      user: peer.user,
      port: peer.port,
      privateKeyPath: peer.privateKeyPath,
      knownHosts: peer.knownHostsPath,
      connectTimeout: '2s',
      addresses: { kvm01: peer.host, 'kvm-down': '127.0.0.2' },
    });
    const err = await rejection(a.findVm('no-such-vm'));
    expect(err.message).toMatch(/kvm-down/);
    expect(err.retryable).toBe(true);
    expect((await a.findVm(fleet[0]!.vms.web))?.host).toBe('kvm01');
  });
});
