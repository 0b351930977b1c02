/**
 * The Hyper-V adapter end to end through the real SSH layer and a real OpenSSH sshd on loopback
 * (test/support/sshd.ts). There is no Windows here, so the sshd's ForceCommand is a stand-in for
 * powershell.exe (test/peers/hyperv-standin.mjs): it receives the exact command line the SSH
 * layer sent, decodes the -EncodedCommand, checks the script's envelope, records it and answers
 * with the fixture for the script's marker. What these tests prove: the command survives
 * node-ssh + sshd + the remote shell untouched (the stand-in's decoded script equals what the
 * adapter built), the registry factory wires the SSH shell from the cluster's config, and every
 * answer, exit code and fault comes back through the real transport as the adapter expects.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { ADAPTER_FACTORIES } from '../../src/adapters/index.js';
import { AdapterRegistry } from '../../src/adapters/registry.js';
import '../../src/adapters/hyperv/index.js';
import { HypervAdapter } from '../../src/adapters/hyperv/adapter.js';
import { cancelMigrationScript, npivInventoryScript, saveVmScript, startVmScript, vmFactsScript } from '../../src/adapters/hyperv/scripts.js';
import { SshRemoteShell, type SshSettings } from '../../src/adapters/ssh/index.js';
import { type MigrateProgress } from '../../src/adapters/types.js';
import { configSchema } from '../../src/config/schema.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { silentLogger } from '../../src/log.js';
import { FIXTURES } from '../fixtures/hyperv/fake-shell.js';
import { requirePeer, sshdAvailable, startSshd, type SshdPeer } from '../support/sshd.js';
import { rejection } from '../support/rejection.js';

const haveSshd = requirePeer('sshd', sshdAvailable(), 'openssh-server (sshd) and ssh-keygen are needed for the Hyper-V adapter over SSH');
const STANDIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'hyperv-standin.mjs');
const HOSTS = ['hyp01', 'hyp02', 'hyp03'];

interface StandinResponse {
  fixture?: string;
  stdout?: string;
  stderr?: string;
  exit?: number;
  delayMs?: number;
  touch?: string;
  untilFile?: string;
  ifFile?: { name: string; then: StandinResponse };
}

interface Recorded {
  marker: string | null;
  script: string;
  argv: string[];
}

describe.skipIf(!haveSshd)('Hyper-V adapter over a real sshd with a stand-in powershell.exe', () => {
  let peer: SshdPeer;
  let stateDir: string;
  let ssh: SshSettings;
  let redis: Redis;
  const closers: (() => Promise<unknown>)[] = [];

  const scenario = (responses: Record<string, StandinResponse | StandinResponse[]>): void => {
    for (const f of fs.readdirSync(stateDir)) fs.rmSync(path.join(stateDir, f), { force: true });
    fs.writeFileSync(path.join(stateDir, 'scenario.json'), JSON.stringify({ powershell: 'powershell.exe', fixtures: FIXTURES, responses }));
  };
  const recorded = (): Recorded[] => {
    const file = path.join(stateDir, 'calls.jsonl');
    if (!fs.existsSync(file)) return [];
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Recorded);
  };
  const direct = (over: Partial<ConstructorParameters<typeof HypervAdapter>[1]> = {}): HypervAdapter => {
    const a = new HypervAdapter(new SshRemoteShell(ssh, { log: silentLogger() }), {
      cluster: 'hv',
      hosts: HOSTS,
      failoverCluster: true,
      progressIntervalMs: 100,
      lingerCheckDelayMs: 50,
      ...over,
    });
    closers.push(() => a.close());
    return a;
  };

  beforeAll(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-hyperv-standin-'));
    fs.chmodSync(stateDir, 0o755);
    peer = await startSshd({ forceCommand: `${process.execPath} ${STANDIN} ${stateDir}` });
    ssh = {
      user: peer.user,
      port: peer.port,
      privateKeyPath: peer.privateKeyPath,
      knownHosts: peer.knownHostsPath,
      connectTimeout: '5s',
      commandTimeout: '20s',
      addresses: Object.fromEntries(HOSTS.map((h) => [h, peer.host])),
    };
    redis = new Redis(inject('redisUrl'));
  });
  beforeEach(() => scenario({}));
  afterAll(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    await redis?.quit();
    await peer?.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('the registry builds the adapter with an SSH shell from the cluster config; seed 000 sweep end to end', async () => {
    const config = configSchema.parse({
      clusters: { hv: { adapter: 'hyperv', hosts: HOSTS, ssh: { ...ssh, trustOnFirstUse: false }, hyperv: { failoverCluster: true } } },
    });
    const inventory = { hosts: HOSTS, clusters: { hv: HOSTS }, clusterOf: Object.fromEntries(HOSTS.map((h) => [h, 'hv'])) };
    const registry = new AdapterRegistry(config, inventory, { log: silentLogger(), redis, prefix: `t-hvsshd-${process.pid}` }, ADAPTER_FACTORIES);
    closers.push(() => registry.close());
    const a = registry.forHost('hyp01');
    expect(a.kind).toBe('hyperv');
    scenario({ 'npiv-inventory': { fixture: 'npiv-inventory.json' } });

    const inv = await a.npivInventory('hyp01');
    expect(inv.virtualPorts[0]).toMatchObject({ wwpn: 'C003FF6EDB4A0004', fcId: 199427, fabric: '100000C0DD1A2B3C' });
    expect(findStalePorts(inv).map((p) => p.wwpn)).toEqual(['C003FF6EDB4A0005', 'C003FFAB37C40003']);

    const calls = recorded();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.argv).toEqual(['powershell.exe', '-NoProfile', '-NonInteractive', '-EncodedCommand']);
    // Byte for byte what the adapter built: nothing was lost or re-quoted on the way.
    expect(calls[0]!.script).toBe(npivInventoryScript());
  });

  it('a hostile VM name crosses SSH only inside a PowerShell literal of the encoded script', async () => {
    scenario({ 'vm-facts': { fixture: 'vm-facts-empty.json' } });
    const name = "x'; Stop-Computer -Force; '`$(calc)\u2019";
    await expect(direct().findVm(name)).resolves.toBeNull();
    const calls = recorded();
    expect(calls).toHaveLength(3);
    for (const c of calls) {
      expect(c.script).toBe(vmFactsScript(name, true));
      expect(c.script).toContain("if($x.Name -eq 'x''; Stop-Computer -Force; ''`$(calc)\u2019\u2019'){$x}");
    }
  });

  it('describeHost and listVms parse the fixtures as they arrive over SSH', async () => {
    scenario({ 'host-facts': { fixture: 'host-facts-paused.json' }, 'npiv-inventory': { fixture: 'npiv-inventory.json' }, 'vm-facts': { fixture: 'vm-facts.json' } });
    const a = direct();
    const h = await a.describeHost('hyp02');
    expect(h).toMatchObject({ name: 'hyp02', maintenance: true, cpu: { vendor: 'intel', family: '6/85', cores: 32 }, migrationNetwork: true });
    expect(h.hbas).toHaveLength(2);
    const vms = await a.listVms('hyp02');
    expect(vms.map((v) => `${v.name}:${v.power}:${v.ha ? 'ha' : 'non-ha'}`)).toEqual(['sql01:running:ha', 'web01:running:ha', 'build01:off:non-ha']);
    expect(vms[0]!.vfc[0]!.wwpns).toEqual(['C003FF6EDB4A0004', 'C003FF6EDB4A0005']);
  });

  it('maintenance and port removal round-trip', async () => {
    scenario({
      'enter-maintenance': { fixture: 'maintenance.json' },
      'exit-maintenance': { fixture: 'maintenance-exit.json' },
      'remove-virtual-port': [{ fixture: 'remove-virtual-port.json' }, { fixture: 'remove-virtual-port-absent.json' }],
    });
    const a = direct();
    await a.enterMaintenance('hyp01');
    await a.exitMaintenance('hyp01');
    const port = { host: 'hyp01', hbaWwpn: '50014380242A5B00', wwpn: 'C003FF6EDB4A0005', wwnn: 'C003FF0000FFFF00', fabric: '100000C0DD1A2B3C' };
    await a.removeVirtualPort(port);
    await a.removeVirtualPort(port); // a retried delivery: already absent, nothing removed twice
    const calls = recorded();
    expect(calls.map((c) => c.marker)).toEqual(['enter-maintenance', 'exit-maintenance', 'remove-virtual-port', 'remove-virtual-port']);
    expect(calls[0]!.script).toContain('Suspend-ClusterNode -Name $hn');
    expect(calls[0]!.script).not.toContain('-Drain');
    expect(calls[2]!.script).toContain('.RemoveVirtualPort([byte[]](0xC0,0x03,0xFF,0x6E,0xDB,0x4A,0x00,0x05))');
  });

  it('save-non-ha: Save-VM and Start-VM arrive exactly as built, and the state read back decides', async () => {
    scenario({
      'save-vm': [{ fixture: 'save-vm.json' }, { stdout: '{"ok":true,"data":{"State":"Running"}}' }, { fixture: 'error-save-vm.json', exit: 1 }],
      'start-vm': { fixture: 'start-vm.json' },
    });
    const a = direct();
    await a.saveVm('hyp02', 'log04');
    expect(await rejection(a.saveVm('hyp02', 'log04'))).toMatchObject({ code: 'not-saved', message: 'saveVm on hyp02: Save-VM ran but log04 is Running' });
    const failed = await rejection(a.saveVm('hyp02', 'log04'));
    expect(failed).toMatchObject({ host: 'hyp02', op: 'saveVm', code: 'powershell' });
    expect(failed.message).toContain("'web01' failed to change state.");
    await a.resumeVm('hyp02', 'log04');
    const calls = recorded();
    expect(calls.map((c) => c.marker)).toEqual(['save-vm', 'save-vm', 'save-vm', 'start-vm']);
    expect(calls[0]!.script).toBe(saveVmScript('log04'));
    expect(calls[3]!.script).toBe(startVmScript('log04'));
  });

  it('live migration with progress polled in parallel sessions, and the ports left on the source', async () => {
    // The move ends once the second progress poll has started: polls run one after another, so
    // the first one's 42 % has been handled by then, however slow the machine.
    scenario({
      'vm-facts': { fixture: 'vm-facts.json' },
      'migrate-vm': { fixture: 'migrate-vm.json', untilFile: 'second-poll' },
      'migration-progress': [{ fixture: 'migration-progress.json' }, { fixture: 'migration-progress.json', touch: 'second-poll' }],
      'npiv-inventory': { fixture: 'npiv-inventory.json' },
    });
    const progress: MigrateProgress[] = [];
    const res = await direct().migrateVm({ vm: 'sql01', source: 'hyp01', target: 'hyp02', mode: 'live' }, (p) => progress.push(p));
    expect(res).toMatchObject({ vm: 'sql01', host: 'hyp02' });
    expect(progress).toContainEqual({ percent: 42, phase: 'Moving Virtual Machine' });
    expect(progress.at(-1)).toEqual({ percent: 100, phase: 'done' });
    expect(res.lingeringPorts?.map((p) => p.wwpn)).toContain('C003FF6EDB4A0005');
    const markers = recorded().map((c) => c.marker);
    // Polled in other sessions while the move ran (the move only ends once the second poll has
    // started). Sessions open in parallel, so on a loaded machine the first poll can reach the
    // host before the move's own session does: order of arrival is not asserted, overlap is.
    expect(markers.filter((m) => m === 'migration-progress').length).toBeGreaterThanOrEqual(2);
    expect(markers.filter((m) => m === 'migrate-vm')).toHaveLength(1);
  });

  it('cancel: the abort reaches Msvm_MigrationJob through another session and the move reports cancelled', async () => {
    const cancelledRecord = JSON.stringify({ ok: false, error: { code: 'powershell', message: 'The operation was cancelled by the user.' } });
    scenario({
      'vm-facts': { fixture: 'vm-facts.json' },
      // Long enough that a loaded machine still reads progress before it ends; the cancel ends it early.
      'migrate-vm': { fixture: 'migrate-vm.json', delayMs: 20_000, ifFile: { name: 'cancelled', then: { stdout: cancelledRecord, exit: 1 } } },
      'migration-progress': { fixture: 'migration-progress.json' },
      'cancel-migration': { fixture: 'cancel-migration.json', touch: 'cancelled' },
    });
    const ac = new AbortController();
    // Abort once the move is under way (the first progress read), as an operator's cancel would.
    const onProgress = (p: MigrateProgress): void => {
      if (p.percent > 0) ac.abort();
    };
    const err = await rejection(direct().migrateVm({ vm: 'sql01', source: 'hyp01', target: 'hyp02', mode: 'live' }, onProgress, { signal: ac.signal }));
    expect(err).toMatchObject({ host: 'hyp01', op: 'migrateVm', code: 'cancelled' });
    const cancels = recorded().filter((c) => c.marker === 'cancel-migration');
    expect(cancels).toHaveLength(1);
    // Byte for byte the script that terminates sql01's Msvm_MigrationJob, through sshd in a
    // session of its own: the Move-VM session only ended because this one ran (its ifFile).
    expect(cancels[0]!.script).toBe(cancelMigrationScript('9b1e6c44-3f02-4c1a-8e7d-2a5b6c7d8e9f'));
    expect(cancels[0]!.argv).toEqual(['powershell.exe', '-NoProfile', '-NonInteractive', '-EncodedCommand']);
  });

  it('faults through the real transport: error record, malformed JSON, non-zero exit, a mangled command line', async () => {
    scenario({ 'npiv-inventory': { fixture: 'error-record.json', exit: 1 } });
    const a = direct();
    const rec = await rejection(a.npivInventory('hyp03'));
    expect(rec).toMatchObject({ host: 'hyp03', op: 'npivInventory', code: 'powershell' });
    expect(rec.message).toMatch(/^npivInventory on hyp03 failed: Invalid namespace "root\\virtualization\\v2"/);

    scenario({ 'vm-facts': { stdout: '{"ok":true,"data":[{"Name":"sql01",' } });
    const bad = await rejection(a.listVms('hyp03'));
    expect(bad).toMatchObject({ host: 'hyp03', op: 'listVms', code: 'malformed' });

    scenario({ 'host-facts': { stderr: 'Get-VMHost : The term is not recognized\r\n', exit: 1 }, 'npiv-inventory': { fixture: 'npiv-inventory.json' } });
    const exit = await rejection(a.describeHost('hyp03'));
    expect(exit).toMatchObject({ host: 'hyp03', op: 'describeHost', code: 'exit' });
    expect(exit.message).toBe('describeHost on hyp03: powershell.exe exited with code 1: Get-VMHost : The term is not recognized');

    // The stand-in refuses anything but the exact encoded form (here: another executable name).
    scenario({ 'vm-facts': { fixture: 'vm-facts-empty.json' } });
    const wrong = await rejection(direct({ powershell: 'pwsh' }).listVms('hyp01'));
    expect(wrong.message).toMatch(/^listVms on hyp01: pwsh exited with code 64: hyperv-standin: unexpected command line: "pwsh -NoProfile/);
  });
});
