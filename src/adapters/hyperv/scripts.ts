/**
 * The PowerShell scripts the Hyper-V adapter sends, one builder per operation. Each starts with
 * a marker comment (# ferry:<name>) and is wrapped by wrapScript (Stop on error, JSON envelope).
 *
 * Rules kept everywhere below:
 * - Names arrive only through psQuote (inventory-validated host/VM names, normalised WWNs).
 * - VMs are selected with `Get-VM | ? Name -eq` because Get-VM -Name / Move-VM -Name treat
 *   [ ] * ? as wildcards; the object is then passed with -VM.
 * - Collections are built with `@(foreach(...){...})`: foreach over $null runs zero times,
 *   whereas `$null | %{}` runs once and `@($null)` has one element.
 * - CIM/WMI objects are projected to plain objects with explicit fields; enums are cast to
 *   [string] (ConvertTo-Json would print their numbers), byte arrays to int[] (PowerShell 7
 *   would print byte[] as base64).
 */
import { psByteArray, psQuote, wrapScript } from './ps.js';

const V2 = 'root\\virtualization\\v2';

/** Resolve exactly one local VM by exact name into $v, or fail with code not-found. */
function selectVm(vm: string): string {
  return [
    `$vn=${psQuote(vm)}`,
    `$v=@(foreach($x in @(Get-VM)){if($x.Name -eq $vn){$x}})`,
    `if($v.Count -ne 1){Fail 'not-found' "VM '$vn' is not on $env:COMPUTERNAME ($($v.Count) matches)"}`,
    `$v=$v[0]`,
  ].join('\n');
}

/**
 * Seed 000's three classes, projected. MSFC_FibrePortNPIVAttributes is absent on hosts without
 * an NPIV-capable HBA driver ("Invalid class"): that is an empty list, not an error. Any other
 * failure (access denied) must fail the whole read, and so must Msvm_FcEndpoint: an empty
 * endpoint list would make every virtual port look stale.
 */
export function npivInventoryScript(): string {
  return wrapScript(
    'npiv-inventory',
    `
$n=@()
try{$n=@(Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortNPIVAttributes)}catch{if($_.Exception.Message -notmatch 'Invalid class|Not supported|Not found'){throw}}
$phys=@(foreach($p in $n){[pscustomobject]@{InstanceName=[string]$p.InstanceName;Active=[bool]$p.Active;WWPN=(I $p.WWPN);WWNN=(I $p.WWNN);NumberVirtualPorts=$p.NumberVirtualPorts;VirtualPorts=@(foreach($q in $p.VirtualPorts){[pscustomobject]@{WWPN=(I $q.WWPN);WWNN=(I $q.WWNN);FabricWWN=(I $q.FabricWWN);FCId=$q.FCId;Status=$q.Status;VirtualName=(I $q.VirtualName)}})}})
$ep=@(foreach($e in @(Get-CimInstance -Namespace ${V2} -ClassName Msvm_FcEndpoint)){[pscustomobject]@{WWPN=[string]$e.WWPN;SystemName=[string]$e.SystemName}})
$ext=@(foreach($e in @(Get-CimInstance -Namespace ${V2} -ClassName Msvm_ExternalFcPort)){[pscustomobject]@{WWPN=[string]$e.WWPN;WWNN=[string]$e.WWNN;DeviceID=[string]$e.DeviceID;ElementName=[string]$e.ElementName}})
# Best effort: fabric names of the physical ports, vport limits, VM owners of the A/B sets.
$fab=@();try{$fab=@(foreach($a in @(Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortHBAAttributes)){[pscustomobject]@{PortWWN=(I $a.Attributes.PortWWN);FabricName=(I $a.Attributes.FabricName)}})}catch{}
$cap=@();try{$cap=@(foreach($c in @(Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortNPIVCapabilities)){[pscustomobject]@{InstanceName=[string]$c.InstanceName;MaxNumberVirtualPorts=$c.MaxNumberVirtualPorts}})}catch{}
$own=@();try{$own=@(foreach($h in @(Get-VM|Get-VMFibreChannelHba)){[pscustomobject]@{VMName=[string]$h.VMName;SetA=[string]$h.WorldWidePortNameSetA;SetB=[string]$h.WorldWidePortNameSetB}})}catch{}
$out=[pscustomobject]@{Physical=$phys;Endpoints=$ep;External=$ext;Fabrics=$fab;Capabilities=$cap;Owners=$own}
`,
    8,
  );
}

/**
 * Remove one virtual port (seed 000's Remove-FCNPIVInactivePort, with the checks it lacked):
 * refuse if an active endpoint uses the WWPN; find the physical port instance that carries it
 * (and insist it is the HBA the approved plan named); call RemoveVirtualPort through
 * Get-WmiObject, because Invoke-CimMethod mis-casts the uint8[8] argument (seed 000); report the
 * method's Status out-parameter; re-read until the port is gone. Absent already: Removed=$false,
 * Reason='absent' (a retried delivery removes nothing twice).
 */
export function removeVirtualPortScript(wwpn: string, hbaWwpn: string | undefined): string {
  return wrapScript(
    'remove-virtual-port',
    `
$w=${psQuote(wwpn)};$hba=${psQuote(hbaWwpn ?? '')}
$ep=@(foreach($e in @(Get-CimInstance -Namespace ${V2} -ClassName Msvm_FcEndpoint)){[string]$e.WWPN})
if($ep -contains $w){Fail 'in-use' "virtual port $w is in use by an active Fibre Channel endpoint"}
function Find{@(foreach($p in @(Get-CimInstance -Namespace root\\wmi -ClassName MSFC_FibrePortNPIVAttributes)){foreach($q in $p.VirtualPorts){if((Hex $q.WWPN) -eq $w){[pscustomobject]@{Inst=[string]$p.InstanceName;Phys=(Hex $p.WWPN)}}}})}
$f=@(Find)
if($f.Count -eq 0){$out=[pscustomobject]@{Removed=$false;Reason='absent'}}else{
$f=$f[0]
if($hba -and $f.Phys -ne $hba){Fail 'mismatch' "virtual port $w is on physical port $($f.Phys), not $hba as planned"}
$m=@(foreach($x in @(Get-WmiObject -Namespace root\\wmi -Class MSFC_FibrePortNPIVMethods)){if($x.InstanceName -eq $f.Inst){$x}})
if($m.Count -ne 1){Fail 'not-found' "no MSFC_FibrePortNPIVMethods instance $($f.Inst)"}
$r=$m[0].RemoveVirtualPort(${psByteArray(wwpn)})
$st=[int]$r.Status
$gone=$false
if($st -eq 0){for($i=0;$i -lt 10 -and -not $gone;$i++){if(@(Find).Count -eq 0){$gone=$true}else{Start-Sleep -Milliseconds 500}}}
$out=[pscustomobject]@{Removed=($st -eq 0);Status=$st;Gone=$gone;Instance=$f.Inst;Physical=$f.Phys}
}
`,
    4,
  );
}

/** Cluster node state, CSVs and cluster networks: only sent to failover-cluster nodes. */
function clusterFacts(host: string): string {
  return `
$x=Get-ClusterNode -Name ${psQuote(host)};$node=[pscustomobject]@{Name=[string]$x.Name;State=[string]$x.State}
$csv=@(foreach($c in @(Get-ClusterSharedVolume)){foreach($i in $c.SharedVolumeInfo){[pscustomobject]@{Name=$c.Name;Path=[string]$i.FriendlyVolumeName;Size=$i.Partition.Size;Free=$i.Partition.FreeSpace}}})
$cn=@(foreach($x in @(Get-ClusterNetwork)){[pscustomobject]@{Name=$x.Name;Role=[string]$x.Role}})`;
}

/** Host facts for describeHost. failoverCluster decides whether cluster cmdlets are called at all. */
export function hostFactsScript(host: string, failoverCluster: boolean): string {
  return wrapScript(
    'host-facts',
    `
$h=Get-VMHost
$os=Get-CimInstance Win32_OperatingSystem
$cpu=@(foreach($c in @(Get-CimInstance Win32_Processor)){[pscustomobject]@{Manufacturer=[string]$c.Manufacturer;Name=[string]$c.Name;Caption=[string]$c.Caption;NumberOfCores=$c.NumberOfCores}})
$vms=@(foreach($v in @(Get-VM)){$p=Get-VMProcessor -VM $v;[pscustomobject]@{Name=$v.Name;MemoryStartup=$v.MemoryStartup;MemoryAssigned=$v.MemoryAssigned;Compat=[bool]$p.CompatibilityForMigrationEnabled;CompatMode=[string]$p.CompatibilityForMigrationMode}})
$sw=@(foreach($s in @(Get-VMSwitch)){[pscustomobject]@{Name=$s.Name;SwitchType=[string]$s.SwitchType}})
$vol=@(foreach($x in @(Get-Volume)){if($x.DriveLetter -and [string]$x.DriveType -eq 'Fixed'){[pscustomobject]@{Letter=[string]$x.DriveLetter;Size=$x.Size;Free=$x.SizeRemaining}}})
$mn=@(foreach($m in @(Get-VMMigrationNetwork)){[string]$m.Subnet})
$node=$null;$csv=@();$cn=@()
${failoverCluster ? clusterFacts(host) : ''}
$out=[pscustomobject]@{ComputerName=$h.ComputerName;MemoryCapacity=$h.MemoryCapacity;VirtualMachineMigrationEnabled=[bool]$h.VirtualMachineMigrationEnabled;UseAnyNetworkForMigration=[bool]$h.UseAnyNetworkForMigration;OsCaption=[string]$os.Caption;Processors=$cpu;Vms=$vms;Switches=$sw;Volumes=$vol;MigrationNetworks=$mn;ClusterNode=$node;Csv=$csv;ClusterNetworks=$cn}
`,
    6,
  );
}

/** Get-VM facts for listVms (vm undefined) or one VM by exact name (findVm, migrate). */
export function vmFactsScript(vm: string | undefined, failoverCluster: boolean): string {
  const filter = vm === undefined ? '$true' : `$x.Name -eq ${psQuote(vm)}`;
  return wrapScript(
    'vm-facts',
    `
$vms=@(foreach($x in @(Get-VM)){if(${filter}){$x}})
$aa=@{}
${failoverCluster ? `try{foreach($g in @(Get-ClusterGroup)){if([string]$g.GroupType -eq 'VirtualMachine'){$aa[$g.Name]=@($g.AntiAffinityClassNames)}}}catch{}` : ''}
$out=@(foreach($v in $vms){
$d=@(foreach($x in @(Get-VMHardDiskDrive -VM $v)){$s=$null;if($x.Path){try{$s=(Get-VHD -Path $x.Path).FileSize}catch{}};[pscustomobject]@{Path=[string]$x.Path;FileSize=$s}})
$n=@(foreach($x in @(Get-VMNetworkAdapter -VM $v)){$l=Get-VMNetworkAdapterVlan -VMNetworkAdapter $x;[pscustomobject]@{SwitchName=[string]$x.SwitchName;VlanMode=[string]$l.OperationMode;AccessVlanId=$l.AccessVlanId}})
$dvd=@(foreach($x in @(Get-VMDvdDrive -VM $v)){[pscustomobject]@{Path=[string]$x.Path;DvdMediaType=[string]$x.DvdMediaType}})
$fl=@(foreach($x in @(Get-VMFloppyDiskDrive -VM $v -ErrorAction SilentlyContinue)){[string]$x.Path})
$com=@(foreach($x in @(Get-VMComPort -VM $v -ErrorAction SilentlyContinue)){[pscustomobject]@{Name=[string]$x.Name;Path=[string]$x.Path}})
$fc=@(foreach($x in @(Get-VMFibreChannelHba -VM $v)){[pscustomobject]@{Name=[string]$x.Name;SanName=[string]$x.SanName;WorldWideNodeNameSetA=[string]$x.WorldWideNodeNameSetA;WorldWidePortNameSetA=[string]$x.WorldWidePortNameSetA;WorldWideNodeNameSetB=[string]$x.WorldWideNodeNameSetB;WorldWidePortNameSetB=[string]$x.WorldWidePortNameSetB}})
$p=Get-VMProcessor -VM $v
[pscustomobject]@{Name=$v.Name;VMId=[string]$v.VMId;State=[string]$v.State;IsClustered=[bool]$v.IsClustered;MemoryStartup=$v.MemoryStartup;MemoryAssigned=$v.MemoryAssigned;ProcessorCount=$v.ProcessorCount;Compat=[bool]$p.CompatibilityForMigrationEnabled;AntiAffinity=@($aa[$v.Name]|?{$_});HardDrives=$d;NetworkAdapters=$n;DvdDrives=$dvd;FloppyDrives=$fl;ComPorts=$com;FibreChannelHbas=$fc}
})
`,
    6,
  );
}

/**
 * Maintenance on a failover-cluster node. Suspend-ClusterNode is deliberately called WITHOUT
 * -Drain: the contract's enterMaintenance only stops new placements, Ferry itself moves the VMs
 * (with its prechecks, ledger and progress), and -Drain would live-migrate everything at once
 * behind Ferry's back (and save non-HA VMs, seed 001 rule 1). Resume uses -Failback NoFailback:
 * Ferry's ledger moves VMs home (seed 001 rule 3). Both check the state first: idempotent.
 */
export function maintenanceScript(host: string, enter: boolean): string {
  const q = psQuote(host);
  const body = enter
    ? `if($b -ne 'Paused'){Suspend-ClusterNode -Name $hn|Out-Null}`
    : `if($b -eq 'Paused'){Resume-ClusterNode -Name $hn -Failback NoFailback|Out-Null}`;
  const want = enter ? `$a -ne 'Paused'` : `$a -eq 'Paused'`;
  return wrapScript(
    enter ? 'enter-maintenance' : 'exit-maintenance',
    `
$hn=${q}
$b=[string](Get-ClusterNode -Name $hn).State
${body}
$a=[string](Get-ClusterNode -Name $hn).State
if(${want}){Fail 'state' "cluster node $hn is $a after ${enter ? 'Suspend' : 'Resume'}-ClusterNode"}
$out=[pscustomobject]@{Before=$b;After=$a}
`,
    3,
  );
}

export interface MigrateScriptInput {
  vm: string;
  target: string;
  mode: 'live' | 'cold';
  failoverCluster: boolean;
  /** Standalone only: Move-VM -IncludeStorage -DestinationStoragePath. */
  storagePath?: string;
}

/**
 * Runs on the source host and returns when the move is over. Progress is read meanwhile by
 * separate sessions from Msvm_MigrationJob (migrationProgressScript): that WMI job is created
 * by VMMS for both Move-VM and cluster live migration, outlives nothing and needs no state in
 * this session (a Start-Job would die with this SSH session anyway).
 * Cold: Move-ClusterVirtualMachineRole -MigrationType Shutdown for a running VM (clean guest
 * shutdown, start on the target: works across CPU families, where a Quick migration's saved
 * state would not restore), Quick for an off or saved one. Standalone cold of a running VM:
 * Stop-VM, Move-VM, and on failure start it again on the source (no half-done move); the
 * adapter starts it on the target afterwards.
 */
export function migrateScript(input: MigrateScriptInput): string {
  const t = psQuote(input.target);
  let move: string;
  if (input.failoverCluster) {
    const type = input.mode === 'live' ? `if([string]$v.State -eq 'Running'){'Live'}else{'Quick'}` : `if([string]$v.State -eq 'Running'){'Shutdown'}else{'Quick'}`;
    move = [
      `$mt=${type}`,
      `$g=Move-ClusterVirtualMachineRole -Name $vn -Node ${t} -MigrationType $mt`,
      `$owner=[string]$g.OwnerNode`,
    ].join('\n');
  } else {
    const storage = input.storagePath ? ` -IncludeStorage -DestinationStoragePath ${psQuote(input.storagePath)}` : '';
    const moveVm = `Move-VM -VM $v -DestinationHost ${t}${storage}`;
    move =
      input.mode === 'cold'
        ? [
            `$mt='Cold';$was=[string]$v.State`,
            `if($was -eq 'Running'){Stop-VM -VM $v -Force}`,
            `try{${moveVm}}catch{if($was -eq 'Running'){Start-VM -VM $v};throw}`,
            `$owner=${t}`,
          ].join('\n')
        : [`$mt='Live'`, moveVm, `$owner=${t}`].join('\n');
  }
  return wrapScript(
    'migrate-vm',
    `
${selectVm(input.vm)}
$s=Get-Date
${move}
$out=[pscustomobject]@{VMId=[string]$v.VMId;Owner=$owner;MigrationType=$mt;Seconds=((Get-Date)-$s).TotalSeconds}
`,
    3,
  );
}

/** Msvm_MigrationJob rows for one VM (VirtualSystemName is the VM's GUID). */
function migrationJobs(vmId: string): string {
  return `$j=@(foreach($x in @(Get-CimInstance -Namespace ${V2} -ClassName Msvm_MigrationJob)){if($x.VirtualSystemName -eq ${psQuote(vmId)}){$x}})`;
}

export function migrationProgressScript(vmId: string): string {
  return wrapScript(
    'migration-progress',
    `
${migrationJobs(vmId)}
$out=[pscustomobject]@{Jobs=@(foreach($x in $j){[pscustomobject]@{PercentComplete=$x.PercentComplete;JobState=$x.JobState;ElementName=[string]$x.ElementName;Cancellable=[bool]$x.Cancellable}})}
`,
    4,
  );
}

/** Cancel: RequestStateChange(4 = Terminate) on the VM's running migration jobs (JobState 2..5). */
export function cancelMigrationScript(vmId: string): string {
  return wrapScript(
    'cancel-migration',
    `
${migrationJobs(vmId)}
$r=@(foreach($x in $j){if($x.JobState -ge 2 -and $x.JobState -le 5){[int](Invoke-CimMethod -InputObject $x -MethodName RequestStateChange -Arguments @{RequestedState=[uint16]4}).ReturnValue}})
$out=[pscustomobject]@{Requested=$r}
`,
    3,
  );
}

/** Standalone cold migration: start the VM on the target once Move-VM put it there. */
export function startVmScript(vm: string): string {
  return wrapScript(
    'start-vm',
    `
${selectVm(vm)}
if([string]$v.State -ne 'Running'){Start-VM -VM $v}
$out=[pscustomobject]@{State=[string](Get-VM -Id $v.VMId).State}
`,
    3,
  );
}

/** Save-VM: the VM's memory to disk in place (seed 001's override); reports the state after. */
export function saveVmScript(vm: string): string {
  return wrapScript(
    'save-vm',
    `
${selectVm(vm)}
if([string]$v.State -eq 'Running'){Save-VM -VM $v}
$out=[pscustomobject]@{State=[string](Get-VM -Id $v.VMId).State}
`,
    3,
  );
}

/** Compare-VM: Hyper-V's own migration check; Incompatibilities carry Message and MessageId. */
export function compareVmScript(vm: string, target: string): string {
  return wrapScript(
    'compare-vm',
    `
${selectVm(vm)}
$r=Compare-VM -VM $v -DestinationHost ${psQuote(target)}
$out=[pscustomobject]@{Incompatibilities=@(foreach($i in $r.Incompatibilities){[pscustomobject]@{Message=[string]$i.Message;MessageId=$i.MessageId}})}
`,
    4,
  );
}

/**
 * The patch hook (runCommand). The command is configuration and travels as single-quoted
 * literals, one per line, joined with newlines and turned into a script block: wrapScript's
 * minify trims lines and drops '#' lines, so no line of the command may be a line of the script.
 * A syntax error in it is the command's failure (exit 1), not the script's.
 * Inside, errors must not stop the script: with 'Stop', Windows PowerShell 5.1 throws on the
 * first stderr line of a native program under 2>&1. Output streams straight to stdout/stderr as
 * it comes (*>&1 also catches Write-Host), so an `exit N` in the command, which ends this whole
 * script, still leaves its output and its exit code; otherwise the envelope carries ExitCode
 * ($LASTEXITCODE of the last native program, 1 if the command threw) as the last line.
 */
export function runCommandScript(command: string): string {
  return wrapScript(
    'run-command',
    `
$s=Get-Date;$global:LASTEXITCODE=0;$x=0
$ErrorActionPreference='Continue'
try{$c=[scriptblock]::Create((@(${command.split(/\r?\n/).map(psQuote).join(',')}) -join "\`n"));& $c *>&1|ForEach-Object{if($_ -is [Management.Automation.ErrorRecord]){[Console]::Error.WriteLine([string]$_)}elseif($_ -is [Management.Automation.WarningRecord]){[Console]::Error.WriteLine('WARNING: '+$_.Message)}else{[Console]::Out.WriteLine(($_|Out-String -Width 4096).TrimEnd())}};$x=[int]$global:LASTEXITCODE}catch{[Console]::Error.WriteLine([string]$_.Exception.Message);$x=1}
$ErrorActionPreference='Stop'
$out=[pscustomobject]@{ExitCode=$x;Seconds=((Get-Date)-$s).TotalSeconds}
`,
    2,
  );
}
