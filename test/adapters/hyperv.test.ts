/**
 * Hyper-V adapter, offline: (a) the exact PowerShell it sends, decoded from -EncodedCommand
 * (hostile names only ever inside single-quoted literals); (b) parsing of outputs shaped like
 * the real classes (test/fixtures/hyperv, modelled on seed 000's objects); migration progress,
 * cancel and lingering ports; every fault as an AdapterError naming host and operation.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HypervAdapter, type HypervAdapterOptions } from '../../src/adapters/hyperv/adapter.js';
import { MAX_COMMAND_LINE, decodeCommand, encodeCommand, psByteArray, psQuote, wrapScript } from '../../src/adapters/hyperv/ps.js';
import {
  compareVmScript,
  maintenanceScript,
  migrateScript,
  npivInventoryScript,
  removeVirtualPortScript,
  hostFactsScript,
  vmFactsScript,
  migrationProgressScript,
  cancelMigrationScript,
  startVmScript,
  saveVmScript,
} from '../../src/adapters/hyperv/scripts.js';
import { datastoreOfPath, powerOf, wwnOf } from '../../src/adapters/hyperv/parse.js';
import { AdapterError, UnsupportedError, type MigrateProgress } from '../../src/adapters/types.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { RecordingShell, fixture, type Responder } from '../fixtures/hyperv/fake-shell.js';
import { rejection } from '../support/rejection.js';
import { readPsLiteral } from '../support/powershell.js';
import { eventually } from '../support/wait.js';

const HOSTS = ['hyp01', 'hyp02', 'hyp03'];

function adapter(responses: Record<string, Responder>, over: Partial<HypervAdapterOptions> = {}): { a: HypervAdapter; shell: RecordingShell } {
  const shell = new RecordingShell(responses);
  const a = new HypervAdapter(shell, { cluster: 'prod-hv', hosts: HOSTS, failoverCluster: true, progressIntervalMs: 20, lingerCheckDelayMs: 10, ...over });
  return { a, shell };
}

const HOSTILE = [
  "x'; Stop-Computer -Force; '",
  'web\u201901\u2019; Remove-Item C:\\ -Recurse; \u2018',
  '$(Stop-Computer)`n"; & calc',
  "a''b'''",
  'line1\nline2; Format-Volume',
  '[sql]*01?',
];

describe('psQuote', () => {
  it('wraps in single quotes and doubles every kind of single quote', () => {
    expect(psQuote('hyp01')).toBe("'hyp01'");
    expect(psQuote("it's")).toBe("'it''s'");
    expect(psQuote('it\u2019s')).toBe("'it\u2019\u2019s'");
    expect(psQuote('')).toBe("''");
    expect(() => psQuote('a\0b')).toThrow(/NUL/);
  });

  it.each(HOSTILE)('PowerShell reads %j back as exactly one literal with the same value', (name) => {
    const quoted = psQuote(name);
    const { value, end } = readPsLiteral(quoted, 0);
    expect(value).toBe(name);
    expect(end).toBe(quoted.length);
  });

  it('writes WWNs as byte arrays', () => {
    expect(psByteArray('C003FF6EDB4A0004')).toBe('[byte[]](0xC0,0x03,0xFF,0x6E,0xDB,0x4A,0x00,0x04)');
    expect(() => psByteArray("C003'; x")).toThrow();
  });
});

describe('the scripts sent', () => {
  it('every operation is one -EncodedCommand of a wrapped, marked script', async () => {
    const { a, shell } = adapter({ 'npiv-inventory': { fixture: 'npiv-inventory.json' } });
    await a.npivInventory('hyp01');
    const call = shell.calls[0]!;
    expect(call.host).toBe('hyp01');
    expect(call.argv.slice(0, 4)).toEqual(['powershell.exe', '-NoProfile', '-NonInteractive', '-EncodedCommand']);
    expect(call.argv).toHaveLength(5);
    expect(call.argv[4]).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(call.argv[4]!, 'base64').toString('utf16le')).toBe(call.script);
    const s = call.script;
    expect(s.split('\n')[0]).toBe('# ferry:npiv-inventory');
    expect(s).toContain("$ErrorActionPreference='Stop'");
    expect(s).toContain("$ProgressPreference='SilentlyContinue'");
    expect(s).toMatch(/\[pscustomobject\]@\{ok=\$true;data=\$out\}\|ConvertTo-Json -Depth 8 -Compress/);
    expect(s).toMatch(/catch\{[\s\S]*ok=\$false[\s\S]*ConvertTo-Json -Depth 4 -Compress\nexit 1\n\}$/);
  });

  it('npiv-inventory reads seed 000 classes, forcing arrays and int[] bytes', () => {
    const s = npivInventoryScript();
    expect(s).toContain('Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortNPIVAttributes');
    expect(s).toContain('Get-CimInstance -Namespace root\\virtualization\\v2 -ClassName Msvm_FcEndpoint');
    expect(s).toContain('Get-CimInstance -Namespace root\\virtualization\\v2 -ClassName Msvm_ExternalFcPort');
    expect(s).toContain('VirtualPorts=@(foreach($q in $p.VirtualPorts)');
    expect(s).toContain('WWPN=(I $q.WWPN)');
    expect(s).toContain('FabricWWN=(I $q.FabricWWN)');
    expect(s).toContain('Get-VMFibreChannelHba');
    // Only the NPIV class may be missing; Msvm_FcEndpoint failures must surface.
    expect(s).toMatch(/try\{\$n=@\(Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortNPIVAttributes\)\}catch\{if\(\$_.Exception.Message -notmatch 'Invalid class\|Not supported\|Not found'\)\{throw\}\}/);
    expect(s).not.toMatch(/try\{\$ep=/);
  });

  it('remove-virtual-port goes through Get-WmiObject with the WWPN as a byte array and checks Status', () => {
    const s = removeVirtualPortScript('C003FF6EDB4A0005', '50014380242A5B00');
    expect(s.split('\n')[0]).toBe('# ferry:remove-virtual-port');
    expect(s).toContain("$w='C003FF6EDB4A0005';$hba='50014380242A5B00'");
    expect(s).toContain('Get-WmiObject -Namespace root\\wmi -Class MSFC_FibrePortNPIVMethods');
    expect(s).toContain('.RemoveVirtualPort([byte[]](0xC0,0x03,0xFF,0x6E,0xDB,0x4A,0x00,0x05))');
    expect(s).toContain('$st=[int]$r.Status');
    expect(s).toContain("if($ep -contains $w){Fail 'in-use'");
    expect(s).not.toContain('Invoke-CimMethod');
  });

  it('maintenance suspends without -Drain and resumes without failback, checking state first', () => {
    const enter = maintenanceScript('hyp01', true);
    expect(enter).toContain("$hn='hyp01'");
    expect(enter).toContain("if($b -ne 'Paused'){Suspend-ClusterNode -Name $hn|Out-Null}");
    expect(enter).not.toMatch(/-Drain/);
    const exit = maintenanceScript('hyp01', false);
    expect(exit).toContain("if($b -eq 'Paused'){Resume-ClusterNode -Name $hn -Failback NoFailback|Out-Null}");
  });

  it('migration: cluster role move, Move-VM with storage, progress and cancel through Msvm_MigrationJob', () => {
    const live = migrateScript({ vm: 'sql01', target: 'hyp02', mode: 'live', failoverCluster: true });
    expect(live).toContain("$vn='sql01'");
    expect(live).toContain("$mt=if([string]$v.State -eq 'Running'){'Live'}else{'Quick'}");
    expect(live).toContain("Move-ClusterVirtualMachineRole -Name $vn -Node 'hyp02' -MigrationType $mt");
    const cold = migrateScript({ vm: 'sql01', target: 'hyp02', mode: 'cold', failoverCluster: true });
    expect(cold).toContain("$mt=if([string]$v.State -eq 'Running'){'Shutdown'}else{'Quick'}");
    const standalone = migrateScript({ vm: 'build01', target: 'hyp02', mode: 'live', failoverCluster: false, storagePath: 'D:\\build01' });
    expect(standalone).toContain("Move-VM -VM $v -DestinationHost 'hyp02' -IncludeStorage -DestinationStoragePath 'D:\\build01'");
    const coldStandalone = migrateScript({ vm: 'build01', target: 'hyp02', mode: 'cold', failoverCluster: false });
    expect(coldStandalone).toContain("try{Move-VM -VM $v -DestinationHost 'hyp02'}catch{if($was -eq 'Running'){Start-VM -VM $v};throw}");
    const id = '9b1e6c44-3f02-4c1a-8e7d-2a5b6c7d8e9f';
    expect(migrationProgressScript(id)).toContain(`Get-CimInstance -Namespace root\\virtualization\\v2 -ClassName Msvm_MigrationJob)){if($x.VirtualSystemName -eq '${id}')`);
    expect(cancelMigrationScript(id)).toContain('Invoke-CimMethod -InputObject $x -MethodName RequestStateChange -Arguments @{RequestedState=[uint16]4}');
  });

  it('Compare-VM and the VM reads select the VM by exact name, never by wildcard', () => {
    const c = compareVmScript('[sql]*01?', 'hyp02');
    expect(c).toContain("$vn='[sql]*01?'");
    expect(c).toContain('$v=@(foreach($x in @(Get-VM)){if($x.Name -eq $vn){$x}})');
    expect(c).toContain("Compare-VM -VM $v -DestinationHost 'hyp02'");
    expect(c).not.toMatch(/Get-VM -Name/);
    expect(vmFactsScript('web01', true)).toContain("if($x.Name -eq 'web01'){$x}");
    expect(vmFactsScript(undefined, true)).toContain('if($true){$x}');
    expect(hostFactsScript('hyp01', false)).not.toMatch(/Get-Cluster/);
    expect(hostFactsScript('hyp01', true)).toContain("Get-ClusterNode -Name 'hyp01'");
    expect(vmFactsScript(undefined, false)).not.toMatch(/Get-Cluster/);
  });

  it.each(HOSTILE)('a hostile VM name %j reaches every script only as a quoted literal', (name) => {
    const scripts = [
      vmFactsScript(name, true),
      compareVmScript(name, 'hyp02'),
      startVmScript(name),
      migrateScript({ vm: name, target: 'hyp02', mode: 'live', failoverCluster: true }),
      migrateScript({ vm: name, target: 'hyp02', mode: 'cold', failoverCluster: false, storagePath: `D:\\${name}` }),
    ];
    for (const s of scripts) {
      expect(s).toContain(psQuote(name));
      // Cut out every quoted occurrence (the name, or the storage path built from it): PowerShell
      // reads each back as the same value, and nothing of the payload may remain as code.
      let rest = s;
      for (const value of [`D:\\${name}`, name]) {
        const quoted = psQuote(value);
        for (let i = rest.indexOf(quoted); i !== -1; i = rest.indexOf(quoted)) {
          const lit = readPsLiteral(rest, i);
          expect(lit.value).toBe(value);
          rest = rest.slice(0, i) + "'<name>'" + rest.slice(lit.end);
        }
      }
      expect(rest).not.toMatch(/Stop-Computer|Remove-Item|Format-Volume|calc/);
      expect(decodeCommand(encodeCommand(s))).toBe(s);
    }
  });

  it('a hostile name sent through the adapter arrives quoted in the decoded command', async () => {
    const { a, shell } = adapter({ 'vm-facts': { fixture: 'vm-facts-empty.json' } });
    await expect(a.findVm("x'; Stop-Computer -Force; '")).resolves.toBeNull();
    expect(shell.calls).toHaveLength(3);
    for (const c of shell.calls) {
      expect(c.argv).toHaveLength(5);
      expect(c.script).toContain("if($x.Name -eq 'x''; Stop-Computer -Force; '''){$x}");
    }
  });

  it('every script fits cmd.exe\'s command line, even with long quote-laden names', () => {
    const long = "'".repeat(40) + 'x'.repeat(24);
    const scripts = [
      npivInventoryScript(),
      removeVirtualPortScript('C003FF6EDB4A0005', '50014380242A5B00'),
      hostFactsScript(long, true),
      vmFactsScript(long, true),
      maintenanceScript(long, true),
      maintenanceScript(long, false),
      migrateScript({ vm: long, target: long, mode: 'cold', failoverCluster: false, storagePath: `C:\\ClusterStorage\\${long}\\${long}` }),
      migrateScript({ vm: long, target: long, mode: 'cold', failoverCluster: true }),
      migrationProgressScript(long),
      cancelMigrationScript(long),
      startVmScript(long),
      compareVmScript(long, long),
    ];
    for (const s of scripts) {
      const line = ['powershell.exe', '-NoProfile', '-NonInteractive', '-EncodedCommand', encodeCommand(s)].join(' ');
      expect(line.length, s.split('\n')[0]).toBeLessThanOrEqual(MAX_COMMAND_LINE);
    }
    expect(() => wrapScript('huge', 'x'.repeat(4000))).not.toThrow();
  });
});

describe('parsing outputs shaped like the real classes', () => {
  it('turns seed 000 byte arrays into its hex and finds the seed host\'s stale ports', async () => {
    const { a } = adapter({ 'npiv-inventory': { fixture: 'npiv-inventory.json' } });
    const inv = await a.npivInventory('hyp01');
    expect(inv.host).toBe('hyp01');
    expect(inv.hbas.map((h) => h.wwpn)).toEqual(['50014380242A5B00', '50014380242A5B02']);
    expect(inv.hbas[0]).toEqual({
      wwpn: '50014380242A5B00',
      wwnn: '50014380242A5B01',
      fabric: '100000C0DD1A2B3C',
      instance: 'PCI\\VEN_1077&DEV_2532&SUBSYS_3263103C&REV_02\\4&2af89a5&0&0008_0',
      npivCapable: true,
      maxVports: 127,
    });
    // The seed's own example: WWPN {192, 3, 255, 110…} -> WWPN-HEX C003FF6EDB4A0004, FCId 199427, FabricWWN {16, 0, 0, 192…}.
    expect(inv.virtualPorts[0]).toEqual({
      host: 'hyp01',
      hbaWwpn: '50014380242A5B00',
      wwpn: 'C003FF6EDB4A0004',
      wwnn: 'C003FF0000FFFF00',
      fabric: '100000C0DD1A2B3C',
      fcId: 199427,
      handle: 'PCI\\VEN_1077&DEV_2532&SUBSYS_3263103C&REV_02\\4&2af89a5&0&0008_0',
    });
    expect(inv.virtualPorts).toHaveLength(6);
    // Seed 000's Msvm_FcEndpoint list (its duplicate 50014380242A5B02 folded).
    expect(inv.endpointWwpns).toEqual(['50014380242A5B02', '50014380242A5B00', 'C003FFAB37C40002', 'C003FFAB37C40000', 'C003FF6EDB4A0006', 'C003FF6EDB4A0004']);
    // Minus Msvm_ExternalFcPort: the seed's four VM endpoints.
    const physical = new Set(inv.hbas.map((h) => h.wwpn));
    expect(inv.endpointWwpns.filter((w) => !physical.has(w))).toEqual(['C003FFAB37C40002', 'C003FFAB37C40000', 'C003FF6EDB4A0006', 'C003FF6EDB4A0004']);
    expect(inv.endpointOwners).toEqual({ C003FF6EDB4A0004: 'sql01', C003FF6EDB4A0006: 'sql01', C003FFAB37C40000: 'web01', C003FFAB37C40002: 'web01' });
    // The core's stale computation: the B-set ports both VMs left behind.
    expect(findStalePorts(inv).map((p) => [p.wwpn, p.hbaWwpn, p.fabric])).toEqual([
      ['C003FF6EDB4A0005', '50014380242A5B00', '100000C0DD1A2B3C'],
      ['C003FFAB37C40003', '50014380242A5B02', '100000C0DD1A2B3D'],
    ]);
  });

  it('copes with single objects, nulls, {value,Count} arrays and base64 byte[]', async () => {
    const { a } = adapter({ 'npiv-inventory': { fixture: 'npiv-inventory-quirks.json' } });
    const inv = await a.npivInventory('hyp01');
    expect(inv.hbas).toHaveLength(1);
    expect(inv.virtualPorts).toEqual([
      {
        host: 'hyp01',
        hbaWwpn: '50014380242A5B00',
        wwpn: 'C003FF6EDB4A0004',
        wwnn: 'C003FF0000FFFF00',
        fabric: '0000000000000000',
        fcId: 199427,
        handle: 'PCI\\VEN_1077&DEV_2532&SUBSYS_3263103C&REV_02\\4&2af89a5&0&0008_0',
      },
    ]);
    expect(inv.endpointWwpns).toEqual(['50014380242A5B00', 'C003FF6EDB4A0004']);
    expect(findStalePorts(inv)).toEqual([]);
    const empty = await adapter({ 'npiv-inventory': { fixture: 'npiv-inventory-empty.json' } }).a.npivInventory('hyp02');
    expect(empty).toEqual({ host: 'hyp02', hbas: [], virtualPorts: [], endpointWwpns: [] });
  });

  it('wwnOf accepts bytes, hex spellings and base64; rejects short arrays', () => {
    expect(wwnOf([192, 3, 255, 110, 219, 74, 0, 4])).toBe('C003FF6EDB4A0004');
    expect(wwnOf('c0:03:ff:6e:db:4a:00:04')).toBe('C003FF6EDB4A0004');
    expect(wwnOf('wAP/bttKAAQ=')).toBe('C003FF6EDB4A0004');
    expect(wwnOf([])).toBeUndefined();
    expect(wwnOf('')).toBeUndefined();
    expect(() => wwnOf([192, 3, 255, 110])).toThrow(/length 4/);
  });

  it('describeHost: CPU, memory, switches, CSV and local datastores, migration network, HBAs', async () => {
    const { a } = adapter({ 'host-facts': { fixture: 'host-facts.json' }, 'npiv-inventory': { fixture: 'npiv-inventory.json' } });
    const h = await a.describeHost('hyp01');
    expect(h).toMatchObject({
      name: 'hyp01',
      cluster: 'prod-hv',
      adapter: 'hyperv',
      cpu: { vendor: 'intel', family: '6/85', model: 'Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz', cores: 32 },
      memoryMiB: 512 * 1024,
      memoryUsedMiB: (32 + 6 + 8) * 1024,
      maintenance: false,
      migrationNetwork: true,
      version: 'Windows Server 2022 Datacenter',
    });
    expect(h.cpu.baseline).toBeUndefined();
    expect(h.cordoned).toBeUndefined();
    expect(h.portGroups).toEqual([
      { name: 'ConvergedSwitch', internalOnly: false },
      { name: 'LabInternal', internalOnly: true },
      { name: 'Isolated', internalOnly: true },
    ]);
    expect(h.datastores).toEqual([
      { name: 'Volume1', shared: true, capacityGiB: 4096, freeGiB: 1536 },
      { name: 'csv-gold', shared: true, capacityGiB: 2048, freeGiB: 1024 },
      { name: 'hyp01:C', shared: false, capacityGiB: 299, freeGiB: 180 },
      { name: 'hyp01:D', shared: false, capacityGiB: 1024, freeGiB: 600 },
    ]);
    expect(h.isoLibraries).toEqual(['C:\\ClusterStorage\\Volume1', 'C:\\ClusterStorage\\csv-gold']);
    expect(h.hbas.map((x) => x.wwpn)).toEqual(['50014380242A5B00', '50014380242A5B02']);
    const paused = await adapter({ 'host-facts': { fixture: 'host-facts-paused.json' }, 'npiv-inventory': { fixture: 'npiv-inventory.json' } }).a.describeHost('hyp01');
    expect(paused.maintenance).toBe(true);
  });

  it('listVms: power, HA, memory, disks -> datastores, VLANs, devices, vFC sets A/B', async () => {
    const { a } = adapter({ 'vm-facts': { fixture: 'vm-facts.json' } });
    const vms = await a.listVms('hyp01');
    expect(vms.map((v) => [v.name, v.power, v.ha])).toEqual([
      ['sql01', 'running', true],
      ['web01', 'running', true],
      ['build01', 'off', false],
    ]);
    const [sql01, web01, build01] = vms as [(typeof vms)[0], (typeof vms)[0], (typeof vms)[0]];
    expect(sql01).toMatchObject({
      id: '9b1e6c44-3f02-4c1a-8e7d-2a5b6c7d8e9f',
      host: 'hyp01',
      memoryMiB: 32768,
      cpus: 8,
      antiAffinityGroup: 'sql-nodes',
      affinity: { cpu: false, memory: false },
      disks: [
        { path: 'C:\\ClusterStorage\\Volume1\\sql01\\sql01-os.vhdx', datastore: 'Volume1', sizeGiB: 80 },
        { path: 'C:\\ClusterStorage\\csv-gold\\sql01\\sql01-data.vhdx', datastore: 'csv-gold', sizeGiB: 400 },
      ],
      networks: [{ portGroup: 'ConvergedSwitch', vlan: 120 }],
      devices: [{ kind: 'cdrom', connected: true, backing: 'D:\\ISO\\SQLServer2022.iso' }],
    });
    expect(sql01.vfc).toEqual([
      { name: 'Fibre Channel Adapter (vsan-a)', fabric: '0000000000000000', wwnn: 'C003FF0000FFFF00', wwpns: ['C003FF6EDB4A0004', 'C003FF6EDB4A0005'] },
      { name: 'Fibre Channel Adapter (vsan-b)', fabric: '0000000000000000', wwnn: 'C003FF0000FFFF01', wwpns: ['C003FF6EDB4A0006', 'C003FF6EDB4A0007'] },
    ]);
    expect(web01.memoryMiB).toBe(6144);
    expect(web01.networks).toEqual([{ portGroup: 'ConvergedSwitch' }, { portGroup: 'LabInternal', vlan: 5 }]);
    expect(web01.devices).toEqual([{ kind: 'cdrom', connected: false }]);
    expect(build01.disks).toEqual([{ path: 'D:\\Hyper-V\\build01\\build01.vhdx', datastore: 'hyp01:D', sizeGiB: 120 }]);
    expect(build01.devices).toEqual([
      { kind: 'cdrom', connected: true, hostDevice: true },
      { kind: 'floppy', connected: true, backing: 'D:\\floppy\\drivers.vfd' },
      { kind: 'serial', connected: true, backing: '\\\\.\\pipe\\build01-com1' },
    ]);
  });

  it('a single VM printed as an object with null collections still parses', async () => {
    const { a } = adapter({ 'vm-facts': { fixture: 'vm-facts-single.json' } });
    const vms = await a.listVms('hyp01');
    expect(vms).toHaveLength(1);
    expect(vms[0]).toMatchObject({ name: 'web01', devices: [], vfc: [{ wwpns: ['C003FFAB37C40000'] }] });
    expect(vms[0]!.antiAffinityGroup).toBeUndefined();
  });

  it('maps states and paths', () => {
    expect(['Running', 'Off', 'Saved', 'Paused', 'Starting', 'Saving', 'RunningCritical', 'OffCritical'].map(powerOf)).toEqual([
      'running',
      'off',
      'saved',
      'paused',
      'running',
      'saved',
      'running',
      'off',
    ]);
    expect(powerOf(2)).toBe('running');
    expect(() => powerOf('Weird')).toThrow(/unknown Hyper-V VM state/);
    expect(datastoreOfPath('hyp01', 'C:\\ClusterStorage\\Volume1\\a.vhdx')).toBe('Volume1');
    expect(datastoreOfPath('hyp01', '\\\\fs01\\vms\\a\\a.vhdx')).toBe('\\\\fs01\\vms');
    expect(datastoreOfPath('hyp01', 'e:\\vms\\a.vhdx')).toBe('hyp01:E');
  });

  it('findVm asks every host for the exact name and returns the one that has it', async () => {
    const { a, shell } = adapter({ 'vm-facts': (c) => ({ fixture: c.host === 'hyp02' ? 'vm-facts-single.json' : 'vm-facts-empty.json' }) });
    const vm = await a.findVm('web01');
    expect(vm).toMatchObject({ name: 'web01', host: 'hyp02' });
    expect(shell.calls.every((c) => c.script.includes("if($x.Name -eq 'web01'){$x}"))).toBe(true);
  });

  it('findVm does not say "absent" when a host did not answer', async () => {
    const { a } = adapter({ 'vm-facts': (c) => (c.host === 'hyp03' ? { throws: new Error('connect ECONNREFUSED') } : { fixture: 'vm-facts-empty.json' }) });
    const err = await rejection(a.findVm('ghost'));
    expect(err.code).toBe('partial');
    expect(err.message).toMatch(/1 host\(s\) did not answer.*findVm on hyp03: connect ECONNREFUSED/);
  });

  it('checkMigration turns Compare-VM incompatibilities into blocking findings', async () => {
    const { a, shell } = adapter({
      'vm-facts': (c) => ({ fixture: c.host === 'hyp01' ? 'vm-facts-single.json' : 'vm-facts-empty.json' }),
      'compare-vm': { fixture: 'compare-vm.json' },
    });
    const findings = await a.checkMigration('web01', 'hyp02');
    expect(findings.map((f) => [f.code, f.severity])).toEqual([
      ['cpu', 'block'],
      ['network', 'block'],
      ['device', 'block'],
    ]);
    expect(findings[1]!.message).toBe("Compare-VM web01 -> hyp02: Could not find Ethernet switch 'ConvergedSwitch'. (MessageId 33012)");
    expect(shell.byMarker('compare-vm')[0]!.host).toBe('hyp01');
    const clean = adapter({ 'vm-facts': { fixture: 'vm-facts-single.json' }, 'compare-vm': { fixture: 'compare-vm-clean.json' } });
    expect(await clean.a.checkMigration('web01', 'hyp02')).toEqual([]);
  });
});

describe('faults become AdapterErrors naming host and operation', () => {
  it('a PowerShell error record (exit 1 with the error envelope)', async () => {
    const { a } = adapter({ 'npiv-inventory': { fixture: 'error-record.json', code: 1 } });
    const err = await rejection(a.npivInventory('hyp02'));
    expect(err.host).toBe('hyp02');
    expect(err.op).toBe('npivInventory');
    expect(err.code).toBe('powershell');
    expect(err.message).toBe(
      'npivInventory on hyp02 failed: Invalid namespace "root\\virtualization\\v2" (HRESULT 0x8004100e,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand, MetadataError)',
    );
  });

  it('a non-zero exit without JSON', async () => {
    const { a } = adapter({ 'vm-facts': { stdout: '', stderr: "'powershell.exe' is not recognized as an internal or external command", code: 9009 } });
    const err = await rejection(a.listVms('hyp03'));
    expect(err).toMatchObject({ host: 'hyp03', op: 'listVms', code: 'exit' });
    expect(err.message).toMatch(/^listVms on hyp03: powershell\.exe exited with code 9009: 'powershell\.exe' is not recognized/);
  });

  it('malformed JSON, and JSON of the wrong shape', async () => {
    const bad = await rejection(adapter({ 'npiv-inventory': { stdout: '{"ok":true,"data":{"Physical":[{"WWPN":[80,1,' } }).a.npivInventory('hyp01'));
    expect(bad).toMatchObject({ host: 'hyp01', op: 'npivInventory', code: 'malformed' });
    expect(bad.message).toMatch(/^npivInventory on hyp01: malformed JSON from PowerShell/);
    const shape = await rejection(adapter({ 'npiv-inventory': { stdout: '{"ok":true,"data":{"Physical":[{"InstanceName":"x","WWPN":"nope"}],"Endpoints":[],"External":[]}}' } }).a.npivInventory('hyp01'));
    expect(shape.code).toBe('malformed');
    expect(shape.message).toMatch(/npivInventory on hyp01: unexpected PowerShell output: not a WWN/);
    const short = await rejection(adapter({ 'npiv-inventory': { stdout: '{"ok":true,"data":{"Physical":[{"InstanceName":"x","WWPN":[1,2,3],"VirtualPorts":[]}],"Endpoints":[],"External":[]}}' } }).a.npivInventory('hyp01'));
    expect(short.message).toMatch(/WWN byte array of length 3/);
    const noEnvelope = await rejection(adapter({ 'vm-facts': { stdout: 'WARNING: something\n' } }).a.listVms('hyp01'));
    expect(noEnvelope.message).toBe('listVms on hyp01: no JSON in PowerShell output: WARNING: something');
    const wrong = await rejection(adapter({ 'vm-facts': { stdout: '{"ok":true,"data":[{"Name":"a"}]}' } }).a.listVms('hyp01'));
    expect(wrong.message).toMatch(/listVms on hyp01: PowerShell output of vm-facts has an unexpected shape at 0\.VMId/);
  });

  it('stray cmdlet output before the envelope is ignored; CLIXML stderr noise is not an error', async () => {
    const { a } = adapter({ 'vm-facts': { stdout: `Name State\n---- -----\n${'{"ok":true,"data":[]}'}\r\n`, stderr: '#< CLIXML\n<Objs Version="1.1.0.1"></Objs>' } });
    await expect(a.listVms('hyp01')).resolves.toEqual([]);
  });

  it('a timeout (no exit code) is retryable; an SSH failure keeps its error', async () => {
    const t = await rejection(adapter({ 'vm-facts': { stdout: '', code: null } }).a.listVms('hyp01'));
    expect(t).toMatchObject({ code: 'timeout', retryable: true });
    expect(t.message).toMatch(/^listVms on hyp01: PowerShell did not finish/);
    const ssh = await rejection(adapter({ 'vm-facts': { throws: new AdapterError('hyp01', 'ssh', 'host key mismatch for hyp01', { code: 'host-key' }) } }).a.listVms('hyp01'));
    expect(ssh).toMatchObject({ code: 'host-key', kind: 'auth', retryable: false, op: 'listVms' });
    expect(ssh.message).toBe('listVms on hyp01: host key mismatch for hyp01');
  });

  it('unknown hosts are refused before anything is sent', async () => {
    const { a, shell } = adapter({});
    const err = await rejection(a.listVms('hyp99'));
    expect(err.code).toBe('unknown-host');
    expect(shell.calls).toHaveLength(0);
  });
});

describe('removeVirtualPort', () => {
  const port = { host: 'hyp01', hbaWwpn: '50014380242A5B00', wwpn: 'c0:03:ff:6e:db:4a:00:05', wwnn: 'C003FF0000FFFF00', fabric: '100000C0DD1A2B3C' };

  it('removes, treats "already absent" as done, reports NPIV status and in-use refusals', async () => {
    const ok = adapter({ 'remove-virtual-port': { fixture: 'remove-virtual-port.json' } });
    await ok.a.removeVirtualPort(port);
    expect(ok.shell.calls[0]!.script).toContain('.RemoveVirtualPort([byte[]](0xC0,0x03,0xFF,0x6E,0xDB,0x4A,0x00,0x05))');
    await adapter({ 'remove-virtual-port': { fixture: 'remove-virtual-port-absent.json' } }).a.removeVirtualPort(port);
    const status = await rejection(adapter({ 'remove-virtual-port': { fixture: 'remove-virtual-port-status.json' } }).a.removeVirtualPort(port));
    expect(status).toMatchObject({ host: 'hyp01', op: 'removeVirtualPort', code: 'npiv-status' });
    expect(status.message).toBe('removeVirtualPort on hyp01: RemoveVirtualPort(C003FF6EDB4A0005) returned status 6 (NPIV_WWPN_IN_USE)');
    const inUse = await rejection(adapter({ 'remove-virtual-port': { fixture: 'error-in-use.json', code: 1 } }).a.removeVirtualPort(port));
    expect(inUse.code).toBe('in-use');
    const still = await rejection(adapter({ 'remove-virtual-port': { stdout: '{"ok":true,"data":{"Removed":true,"Status":0,"Gone":false,"Instance":"PCI\\\\X"}}' } }).a.removeVirtualPort(port));
    expect(still.code).toBe('still-present');
  });

  it('refuses a WWPN that is not one before building any script', async () => {
    const { a, shell } = adapter({});
    const err = await rejection(a.removeVirtualPort({ ...port, wwpn: "C003'; Stop-Computer" }));
    expect(err.code).toBe('invalid');
    expect(shell.calls).toHaveLength(0);
  });
});

describe('save-non-ha: saveVm (Save-VM) and resumeVm (Start-VM)', () => {
  it('sends exactly the save-vm script to the VM\'s host: the VM by exact name, Save-VM only while Running, the state read back by VMId', async () => {
    const { a, shell } = adapter({ 'save-vm': { fixture: 'save-vm.json' } });
    await a.saveVm('hyp02', 'web01');
    const [call] = shell.byMarker('save-vm');
    expect(shell.calls).toHaveLength(1);
    expect(call!.host).toBe('hyp02');
    expect(call!.script).toBe(saveVmScript('web01'));
    const body = call!.script.split('\n');
    expect(body).toContain("$vn='web01'");
    expect(body).toContain('$v=@(foreach($x in @(Get-VM)){if($x.Name -eq $vn){$x}})');
    expect(body).toContain("if([string]$v.State -eq 'Running'){Save-VM -VM $v}");
    expect(body).toContain('$out=[pscustomobject]@{State=[string](Get-VM -Id $v.VMId).State}');
    // Never a wildcard, never by -Name (which matches patterns), never Stop-VM or -Force.
    expect(call!.script).not.toMatch(/Get-VM -Name|Stop-VM|-Force|Suspend-VM/);
  });

  it('checks the state Hyper-V reports after Save-VM: Saved is done; anything else is an AdapterError naming host, VM and state', async () => {
    // VMState as [string]: Saved, Running, Paused, Off (Microsoft.HyperV.PowerShell.VMState).
    for (const state of ['Running', 'Paused', 'Off']) {
      const err = await rejection(adapter({ 'save-vm': { stdout: JSON.stringify({ ok: true, data: { State: state } }) } }).a.saveVm('hyp02', 'web01'));
      expect(err).toMatchObject({ host: 'hyp02', op: 'saveVm', code: 'not-saved' });
      expect(err.message).toBe(`saveVm on hyp02: Save-VM ran but web01 is ${state}`);
    }
    // Save-VM's own failure (a VirtualizationException record).
    const failed = await rejection(adapter({ 'save-vm': { fixture: 'error-save-vm.json', code: 1 } }).a.saveVm('hyp02', 'web01'));
    expect(failed).toMatchObject({ host: 'hyp02', op: 'saveVm', code: 'powershell' });
    expect(failed.message).toContain("'web01' failed to change state.");
    // A VM that is not on the host: the script's own not-found, nothing saved elsewhere.
    const missing = await rejection(
      adapter({ 'save-vm': { stdout: JSON.stringify({ ok: false, error: { code: 'not-found', message: "VM 'web01' is not on HYP02 (0 matches)" } }), code: 1 } }).a.saveVm('hyp02', 'web01'),
    );
    expect(missing.code).toBe('not-found');
    // Unknown host: refused before anything is sent.
    const { a, shell } = adapter({ 'save-vm': { fixture: 'save-vm.json' } });
    await rejection(a.saveVm('hyp99', 'web01'));
    expect(shell.calls).toHaveLength(0);
  });

  it('the drain\'s check after saving: listVms reads the VM as saved from the vm-facts State', async () => {
    let saved = false;
    const facts = (): string => {
      const doc = JSON.parse(fixture('vm-facts.json')) as { ok: true; data: { Name: string; State: string }[] };
      for (const v of doc.data) if (v.Name === 'web01' && saved) v.State = 'Saved';
      return JSON.stringify(doc);
    };
    const { a } = adapter({ 'vm-facts': () => ({ stdout: facts() }), 'save-vm': () => ((saved = true), { fixture: 'save-vm.json' }), 'start-vm': () => ((saved = false), { fixture: 'start-vm.json' }) });
    expect((await a.listVms('hyp02')).find((v) => v.name === 'web01')?.power).toBe('running');
    await a.saveVm('hyp02', 'web01');
    expect((await a.listVms('hyp02')).find((v) => v.name === 'web01')?.power).toBe('saved');
    await a.resumeVm('hyp02', 'web01');
    expect((await a.listVms('hyp02')).find((v) => v.name === 'web01')?.power).toBe('running');
  });

  it('resumeVm sends Start-VM only when not Running and checks it runs after', async () => {
    const { a, shell } = adapter({ 'start-vm': { fixture: 'start-vm.json' } });
    await a.resumeVm('hyp02', 'web01');
    expect(shell.byMarker('start-vm')[0]!.script).toBe(startVmScript('web01'));
    expect(shell.byMarker('start-vm')[0]!.script.split('\n')).toContain("if([string]$v.State -ne 'Running'){Start-VM -VM $v}");
    const err = await rejection(adapter({ 'start-vm': { stdout: JSON.stringify({ ok: true, data: { State: 'Saved' } }) } }).a.resumeVm('hyp02', 'web01'));
    expect(err).toMatchObject({ op: 'resumeVm', code: 'not-running' });
  });
});

describe('maintenance', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('clustered: Suspend-/Resume-ClusterNode scripts on the host itself', async () => {
    const { a, shell } = adapter({ 'enter-maintenance': { fixture: 'maintenance.json' }, 'exit-maintenance': { fixture: 'maintenance-exit.json' } });
    expect(a.capabilities.maintenance).toBe('native');
    await a.enterMaintenance('hyp02');
    await a.exitMaintenance('hyp02');
    expect(shell.calls.map((c) => [c.host, c.marker])).toEqual([
      ['hyp02', 'enter-maintenance'],
      ['hyp02', 'exit-maintenance'],
    ]);
    const failed = await rejection(adapter({ 'enter-maintenance': { stdout: '{"ok":false,"error":{"code":"state","message":"cluster node hyp02 is Down after Suspend-ClusterNode"}}', code: 1 } }).a.enterMaintenance('hyp02'));
    expect(failed.message).toBe('enterMaintenance on hyp02 failed: cluster node hyp02 is Down after Suspend-ClusterNode');
  });

  it('standalone: a cordon in Redis, idempotent, shown by describeHost', async () => {
    const prefix = `t-hyperv-${process.pid}`;
    const { a, shell } = adapter(
      { 'host-facts': { fixture: 'host-facts.json' }, 'npiv-inventory': { fixture: 'npiv-inventory-empty.json' } },
      { failoverCluster: false, redis, prefix },
    );
    expect(a.capabilities).toMatchObject({ maintenance: 'cordon', storageMigration: true });
    await a.enterMaintenance('hyp03');
    await a.enterMaintenance('hyp03');
    expect(await redis.exists(`${prefix}:hyperv:cordon:hyp03`)).toBe(1);
    expect(await a.describeHost('hyp03')).toMatchObject({ maintenance: true, cordoned: true });
    await a.exitMaintenance('hyp03');
    await a.exitMaintenance('hyp03');
    expect(await redis.exists(`${prefix}:hyperv:cordon:hyp03`)).toBe(0);
    expect(await a.describeHost('hyp03')).toMatchObject({ maintenance: false, cordoned: false });
    expect(shell.calls.some((c) => /maintenance/.test(c.marker ?? ''))).toBe(false);
    expect(shell.byMarker('host-facts')[0]!.script).not.toContain('Get-ClusterNode');
  });
});

describe('migrateVm', () => {
  const req = { vm: 'sql01', source: 'hyp01', target: 'hyp02', mode: 'live' as const };

  /** vm-facts: sql01 on hyp01 before, on hyp02 after. */
  function vmWhere(onTarget: () => boolean): Responder {
    return (c) => {
      const here = c.host === (onTarget() ? 'hyp02' : 'hyp01');
      return { fixture: here ? 'vm-facts.json' : 'vm-facts-empty.json' };
    };
  }

  it('moves, reports progress from Msvm_MigrationJob and returns the source ports left behind', async () => {
    let moved = false;
    // The move ends once the second progress poll starts: polls run one after another, so the
    // first one's 42 % has been handled by then, however slow the machine.
    let polls = 0;
    let secondPoll!: () => void;
    const polledTwice = new Promise<void>((r) => (secondPoll = r));
    const { a, shell } = adapter({
      'vm-facts': vmWhere(() => moved),
      'migrate-vm': async () => {
        await polledTwice;
        moved = true;
        return { fixture: 'migrate-vm.json' };
      },
      'migration-progress': () => {
        if (++polls === 2) secondPoll();
        return { fixture: 'migration-progress.json' };
      },
      'npiv-inventory': { fixture: 'npiv-inventory.json' },
    });
    const progress: MigrateProgress[] = [];
    const res = await a.migrateVm(req, (p) => progress.push(p));
    expect(res).toMatchObject({ vm: 'sql01', host: 'hyp02' });
    expect(progress[0]).toEqual({ percent: 0, phase: 'starting' });
    expect(progress).toContainEqual({ percent: 42, phase: 'Moving Virtual Machine' });
    expect(progress.at(-1)).toEqual({ percent: 100, phase: 'done' });
    const migrate = shell.byMarker('migrate-vm');
    expect(migrate).toHaveLength(1);
    expect(migrate[0]!.host).toBe('hyp01');
    expect(migrate[0]!.script).toContain("Move-ClusterVirtualMachineRole -Name $vn -Node 'hyp02' -MigrationType $mt");
    expect(migrate[0]!.opts?.timeoutMs).toBe(4 * 3_600_000);
    expect(shell.byMarker('migration-progress')[0]!.script).toContain("VirtualSystemName -eq '9b1e6c44-3f02-4c1a-8e7d-2a5b6c7d8e9f'");
    // Seed 000: sql01's B-set port C003FF6EDB4A0005 is still on hyp01 (and its A ports, in this fixture).
    expect(res.lingeringPorts?.map((p) => p.wwpn).sort()).toEqual(['C003FF6EDB4A0004', 'C003FF6EDB4A0005', 'C003FF6EDB4A0006']);
    expect(shell.byMarker('npiv-inventory').every((c) => c.host === 'hyp01')).toBe(true);
  });

  it('no lingering ports after a clean move; unknown (undefined) if the re-read fails', async () => {
    let moved = false;
    const clean = adapter({ 'vm-facts': vmWhere(() => moved), 'migrate-vm': () => ((moved = true), { fixture: 'migrate-vm.json' }), 'npiv-inventory': { fixture: 'npiv-inventory-empty.json' } });
    expect((await clean.a.migrateVm(req)).lingeringPorts).toEqual([]);
    moved = false;
    const broken = adapter({ 'vm-facts': vmWhere(() => moved), 'migrate-vm': () => ((moved = true), { fixture: 'migrate-vm.json' }), 'npiv-inventory': { stdout: 'garbage' } });
    expect((await broken.a.migrateVm(req)).lingeringPorts).toBeUndefined();
  });

  it('refuses a VM that is not on the stated source', async () => {
    const { a, shell } = adapter({ 'vm-facts': { fixture: 'vm-facts-empty.json' } });
    const err = await rejection(a.migrateVm(req));
    expect(err).toMatchObject({ host: 'hyp01', op: 'migrateVm', code: 'not-on-source' });
    expect(shell.byMarker('migrate-vm')).toHaveLength(0);
  });

  it('a failed move is an AdapterError from the source, with the PowerShell message', async () => {
    const { a } = adapter({
      'vm-facts': { fixture: 'vm-facts.json' },
      'migrate-vm': { stdout: JSON.stringify({ ok: false, error: { code: 'powershell', message: "Failed to start reserving resources with Error 'Insufficient system resources exist to complete the requested service.' (0x800705AA)." } }), code: 1 },
    });
    const err = await rejection(a.migrateVm(req));
    expect(err.message).toMatch(/^migrateVm on hyp01 failed: Failed to start reserving resources.*0x800705AA/);
  });

  it('cancel: the abort signal terminates the Msvm_MigrationJob and the move reports cancelled', async () => {
    let cancelled = false;
    const ac = new AbortController();
    const { a, shell } = adapter({
      'vm-facts': { fixture: 'vm-facts.json' },
      // The move runs until Ferry stops the job.
      'migrate-vm': async () => {
        await eventually(() => cancelled, 'the migration job to be stopped');
        return { stdout: JSON.stringify({ ok: false, error: { code: 'powershell', message: 'The operation was cancelled.' } }), code: 1 };
      },
      'migration-progress': { fixture: 'migration-progress.json' },
      'cancel-migration': () => ((cancelled = true), { fixture: 'cancel-migration.json' }),
    });
    const progress: MigrateProgress[] = [];
    // The user cancels once a progress poll shows the move under way (not after a guessed 60 ms,
    // which a slow machine spends before the move starts).
    const onProgress = (p: MigrateProgress): void => {
      progress.push(p);
      if (p.phase === 'Moving Virtual Machine') ac.abort();
    };
    const err = await rejection(a.migrateVm(req, onProgress, { signal: ac.signal }));
    expect(err).toMatchObject({ code: 'cancelled', host: 'hyp01' });
    expect(err.message).toMatch(/sql01 stays on hyp01/);
    expect(shell.byMarker('cancel-migration')).toHaveLength(1);
    expect(shell.byMarker('cancel-migration')[0]!.host).toBe('hyp01');
    expect(progress.some((p) => p.phase === 'cancelling')).toBe(true);
  });

  it('aborted while reading the VM: cancelled, and no move is sent', async () => {
    const ac = new AbortController();
    const { a, shell } = adapter({ 'vm-facts': () => (ac.abort(), { throws: new AdapterError('hyp01', 'ssh', 'command aborted', { code: 'cancelled' }) }) });
    const err = await rejection(a.migrateVm(req, undefined, { signal: ac.signal }));
    expect(err).toMatchObject({ code: 'cancelled', host: 'hyp01' });
    expect(err.message).toBe('migrateVm sql01: cancelled before the move started');
    expect(shell.byMarker('migrate-vm')).toHaveLength(0);
  });

  it('already aborted: nothing is sent', async () => {
    const { a, shell } = adapter({});
    const ac = new AbortController();
    ac.abort();
    expect((await rejection(a.migrateVm(req, undefined, { signal: ac.signal }))).code).toBe('cancelled');
    expect(shell.calls).toHaveLength(0);
  });

  it('standalone: Move-VM with storage to the target datastore; cold restarts it on the target', async () => {
    let moved = false;
    const { a, shell } = adapter(
      {
        'vm-facts': vmWhere(() => moved),
        'host-facts': { fixture: 'host-facts.json' },
        'migrate-vm': () => ((moved = true), { fixture: 'migrate-vm.json' }),
        'start-vm': { fixture: 'start-vm.json' },
        'npiv-inventory': { fixture: 'npiv-inventory-empty.json' },
      },
      { failoverCluster: false },
    );
    const res = await a.migrateVm({ ...req, mode: 'cold', datastore: 'hyp02:D' });
    expect(res).toMatchObject({ host: 'hyp02', datastore: 'hyp02:D' });
    expect(shell.byMarker('host-facts')[0]!.host).toBe('hyp02');
    expect(shell.byMarker('migrate-vm')[0]!.script).toContain("Move-VM -VM $v -DestinationHost 'hyp02' -IncludeStorage -DestinationStoragePath 'D:\\sql01'");
    expect(shell.byMarker('start-vm').map((c) => c.host)).toEqual(['hyp02']);
    moved = false;
    const unknown = await rejection(a.migrateVm({ ...req, datastore: 'nowhere' }));
    expect(unknown.code).toBe('not-found');
  });

  it('a non-HA VM on a cluster node moves with Move-VM (storage included), not as a cluster role', async () => {
    let moved = false;
    const { a, shell } = adapter({
      'vm-facts': (c) => (c.host === (moved ? 'hyp02' : 'hyp01') ? { fixture: 'vm-facts.json' } : { fixture: 'vm-facts-empty.json' }),
      'host-facts': { fixture: 'host-facts.json' },
      'migrate-vm': () => ((moved = true), { fixture: 'migrate-vm.json' }),
      'npiv-inventory': { fixture: 'npiv-inventory-empty.json' },
    });
    await a.migrateVm({ vm: 'build01', source: 'hyp01', target: 'hyp02', mode: 'live', datastore: 'hyp02:D' });
    const script = shell.byMarker('migrate-vm')[0]!.script;
    expect(script).toContain("Move-VM -VM $v -DestinationHost 'hyp02' -IncludeStorage -DestinationStoragePath 'D:\\build01'");
    expect(script).not.toContain('Move-ClusterVirtualMachineRole');
  });

  it('clustered: a datastore move off the VM\'s CSV is unsupported, said plainly', async () => {
    const { a } = adapter({ 'vm-facts': { fixture: 'vm-facts.json' } });
    const err = await rejection(a.migrateVm({ ...req, datastore: 'hyp02:D' }));
    expect(err).toBeInstanceOf(UnsupportedError);
    expect(err.message).toMatch(/^hyperv cannot migrateVm: sql01 is a clustered VM on CSV storage/);
  });
});
