/**
 * Hyper-V adapter: PowerShell over SSH (OpenSSH on Windows Server). Every call is one script
 * (scripts.ts) sent as `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64>` and
 * answered with one JSON envelope; anything else (exit code without JSON, malformed JSON, a
 * PowerShell error record) becomes an AdapterError naming the host and the operation.
 *
 * Host names are Ferry's inventory names and must be the Windows computer / cluster node names
 * (Move-ClusterVirtualMachineRole -Node, Move-VM -DestinationHost take them as they are).
 * Standalone Move-VM over SSH needs Kerberos constrained delegation for live migration: an SSH
 * key logon has no credentials to hand on (CredSSP would need an interactive logon).
 */
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import type { Logger } from '../../log.js';
import type { ExecResult, RemoteShell } from '../ssh/types.js';
import {
  AdapterError,
  adapterErrorCode,
  UnsupportedError,
  normalizeWwn,
  type CallOptions,
  type Capabilities,
  type CheckFinding,
  type CommandResult,
  type HostFacts,
  type HypervisorAdapter,
  type MigrateProgress,
  type MigrateRequest,
  type MigrateResult,
  type NpivInventory,
  type VirtualPort,
  type VmFacts,
} from '../types.js';
import {
  NPIV_STATUS,
  cancelSchema,
  compareSchema,
  cpuFamily,
  cpuVendor,
  envelopeSchema,
  findingCode,
  hostDatastores,
  hostFactsSchema,
  maintenanceSchema,
  migrateSchema,
  mib,
  npivSchema,
  progressSchema,
  removeSchema,
  runCommandSchema,
  startSchema,
  toNpivInventory,
  toVmFacts,
  unwrapPsArrays,
  vmFactsSchema,
} from './parse.js';
import { powershellArgv, scriptMarker } from './ps.js';
import {
  cancelMigrationScript,
  compareVmScript,
  hostFactsScript,
  maintenanceScript,
  migrateScript,
  migrationProgressScript,
  npivInventoryScript,
  removeVirtualPortScript,
  runCommandScript,
  saveVmScript,
  startVmScript,
  vmFactsScript,
} from './scripts.js';

export interface HypervAdapterOptions {
  cluster: string;
  hosts: string[];
  /** Hosts are failover-cluster nodes (cluster cmdlets); else standalone with Ferry's cordon. */
  failoverCluster: boolean;
  powershell?: string;
  /** Redis and key prefix for the cordon of standalone hosts. */
  redis?: Redis;
  prefix?: string;
  log?: Logger;
  /** Per-command timeout for ordinary reads and writes (the SSH layer's default when absent). */
  commandTimeoutMs?: number;
  /** A migration may run this long before Ferry gives up waiting (default 4 h). */
  migrationTimeoutMs?: number;
  /** How often Msvm_MigrationJob is polled for progress (default 2 s). */
  progressIntervalMs?: number;
  /** Wait before re-reading the source's NPIV ports after a move (default 2 s: removal is asynchronous). */
  lingerCheckDelayMs?: number;
  /** Hosts searched at once by findVm. */
  findConcurrency?: number;
}

interface RunOptions extends CallOptions {
  timeoutMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

function excerpt(text: string, max = 300): string {
  const t = text.replace(/#< CLIXML[\s\S]*$/, '').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

export class HypervAdapter implements HypervisorAdapter {
  readonly kind = 'hyperv' as const;
  readonly capabilities: Capabilities;
  private readonly powershell: string;

  constructor(
    private readonly shell: RemoteShell,
    private readonly opts: HypervAdapterOptions,
  ) {
    this.powershell = opts.powershell ?? 'powershell.exe';
    this.capabilities = {
      liveMigration: true,
      // Move-VM -IncludeStorage (standalone hosts, non-HA VMs); clustered roles move without their storage.
      storageMigration: !opts.failoverCluster,
      coldMigration: true,
      maintenance: opts.failoverCluster ? 'native' : 'cordon',
      npiv: true,
      removeVirtualPort: true,
      nativeChecks: true,
      migrationCancel: true,
      hostCommands: true,
    };
  }

  hostNames(): string[] {
    return [...this.opts.hosts];
  }

  private checkHost(host: string, op: string): void {
    if (!this.opts.hosts.includes(host)) throw new AdapterError(host, op, `${host} is not a host of cluster ${this.opts.cluster}`, { code: 'unknown-host' });
  }

  /** Run one script on one host and return its validated `data`. */
  private async run<S extends z.ZodTypeAny>(host: string, op: string, script: string, schema: S, opts: RunOptions = {}): Promise<z.infer<S>> {
    const argv = powershellArgv(this.powershell, script);
    const what = `${op} on ${host}`;
    let res;
    try {
      res = await this.shell.exec(host, argv, {
        timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      const inner = err instanceof Error ? err.message : String(err);
      const prev = err instanceof AdapterError ? err : undefined;
      throw new AdapterError(host, op, `${what}: ${inner}`, { retryable: prev ? prev.retryable : true, code: prev?.code ?? 'unreachable', cause: err });
    }
    if (res.code === null) {
      throw new AdapterError(host, op, `${what}: PowerShell did not finish (timed out or killed)${res.stderr ? `: ${excerpt(res.stderr)}` : ''}`, { retryable: true, code: 'timeout' });
    }
    // The envelope is the last JSON line; anything before it is stray output of a cmdlet.
    const line = res.stdout
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l.startsWith('{'))
      .pop();
    if (!line) {
      const detail = excerpt(res.stderr) || excerpt(res.stdout) || 'no output';
      if (res.code !== 0) throw new AdapterError(host, op, `${what}: ${this.powershell} exited with code ${res.code}: ${detail}`, { code: 'exit' });
      throw new AdapterError(host, op, `${what}: no JSON in PowerShell output: ${detail}`, { code: 'malformed' });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      throw new AdapterError(host, op, `${what}: malformed JSON from PowerShell (${(err as Error).message}): ${excerpt(line, 200)}`, { code: 'malformed', cause: err });
    }
    const env = envelopeSchema.safeParse(parsed);
    if (!env.success) throw new AdapterError(host, op, `${what}: unexpected PowerShell output: ${excerpt(line, 200)}`, { code: 'malformed' });
    if (!env.data.ok) {
      const e = env.data.error;
      const where = [e.errorId, e.category].filter(Boolean).join(', ');
      throw new AdapterError(host, op, `${what} failed: ${e.message ?? 'PowerShell error'}${where ? ` (${where})` : ''}`, {
        code: adapterErrorCode(e.code, 'powershell'),
        ...(e.code ? { fault: e.code } : {}),
        // A PowerShell error record says the operation itself failed: not worth a blind retry.
        retryable: false,
      });
    }
    if (res.code !== 0) throw new AdapterError(host, op, `${what}: ${this.powershell} exited with code ${res.code} after reporting success`, { code: 'exit' });
    const data = schema.safeParse(unwrapPsArrays(env.data.data));
    if (!data.success) {
      const issue = data.error.issues[0];
      const path = issue?.path.join('.') || '(top)';
      throw new AdapterError(host, op, `${what}: PowerShell output of ${scriptMarker(script)} has an unexpected shape at ${path}: ${issue?.message ?? 'invalid'}`, { code: 'malformed' });
    }
    return data.data;
  }

  /** Parse errors thrown while mapping (a 5-byte WWN) become malformed-output AdapterErrors too. */
  private map<T>(host: string, op: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof AdapterError) throw err;
      throw new AdapterError(host, op, `${op} on ${host}: unexpected PowerShell output: ${(err as Error).message}`, { code: 'malformed', cause: err });
    }
  }

  // ------------------------------------------------------------------ reads

  async npivInventory(host: string, opts: CallOptions = {}): Promise<NpivInventory> {
    this.checkHost(host, 'npivInventory');
    const raw = await this.run(host, 'npivInventory', npivInventoryScript(), npivSchema, opts);
    return this.map(host, 'npivInventory', () => toNpivInventory(host, raw));
  }

  private cordonKey(host: string): string {
    return `${this.opts.prefix ?? 'ferry'}:hyperv:cordon:${host}`;
  }

  private requireRedis(host: string, op: string): Redis {
    if (!this.opts.redis) throw new AdapterError(host, op, `${op} on ${host}: standalone Hyper-V hosts keep their cordon in Redis, and none was given`);
    return this.opts.redis;
  }

  private async hostFacts(host: string, opts: CallOptions) {
    return this.run(host, 'describeHost', hostFactsScript(host, this.opts.failoverCluster), hostFactsSchema, opts);
  }

  async describeHost(host: string, opts: CallOptions = {}): Promise<HostFacts> {
    this.checkHost(host, 'describeHost');
    const [raw, npiv, cordoned] = await Promise.all([
      this.hostFacts(host, opts),
      this.npivInventory(host, opts),
      this.opts.failoverCluster ? Promise.resolve(false) : this.requireRedis(host, 'describeHost').exists(this.cordonKey(host)).then((n) => n > 0),
    ]);
    return this.map(host, 'describeHost', () => {
      const cpu0 = raw.Processors[0];
      const { datastores } = hostDatastores(host, raw);
      // Processor compatibility is a per-VM switch in Hyper-V; a host whose VMs all run with it
      // behaves like a vSphere EVC baseline for them.
      const compat = raw.Vms.length > 0 && raw.Vms.every((v) => v.Compat === true);
      const mode = raw.Vms.find((v) => v.CompatMode)?.CompatMode;
      const family = cpuFamily(cpu0?.Caption ?? '') ?? cpu0?.Name ?? 'unknown';
      const cpu: HostFacts['cpu'] = {
        vendor: cpuVendor(cpu0?.Manufacturer ?? ''),
        family,
        cores: raw.Processors.reduce((n, p) => n + (p.NumberOfCores ?? 0), 0),
      };
      if (cpu0?.Name) cpu.model = cpu0.Name.replace(/\s+/g, ' ').trim();
      if (compat) cpu.baseline = mode ? `hyperv-compat:${mode}` : 'hyperv-compat';
      const migrationNetwork = this.opts.failoverCluster
        ? raw.ClusterNetworks.some((n) => n.Role !== '' && !/^none$/i.test(n.Role) && n.Role !== '0')
        : raw.VirtualMachineMigrationEnabled === true && (raw.UseAnyNetworkForMigration === true || raw.MigrationNetworks.length > 0);
      const facts: HostFacts = {
        name: host,
        cluster: this.opts.cluster,
        adapter: 'hyperv',
        cpu,
        memoryMiB: mib(raw.MemoryCapacity),
        memoryUsedMiB: raw.Vms.reduce((n, v) => n + Math.max(mib(v.MemoryStartup), mib(v.MemoryAssigned)), 0),
        maintenance: this.opts.failoverCluster ? raw.ClusterNode?.State === 'Paused' : cordoned,
        portGroups: raw.Switches.map((s) => ({ name: s.Name, internalOnly: /^(internal|private)$/i.test(s.SwitchType) })),
        datastores,
        migrationNetwork,
        // An ISO on a CSV is visible from every node; local paths are not.
        isoLibraries: raw.Csv.map((c) => c.Path).filter(Boolean),
        hbas: npiv.hbas,
      };
      if (!this.opts.failoverCluster) facts.cordoned = cordoned;
      if (raw.OsCaption) facts.version = raw.OsCaption.replace(/^Microsoft\s+/, '');
      return facts;
    });
  }

  async listVms(host: string, opts: CallOptions = {}): Promise<VmFacts[]> {
    this.checkHost(host, 'listVms');
    const raw = await this.run(host, 'listVms', vmFactsScript(undefined, this.opts.failoverCluster), vmFactsSchema, opts);
    return this.map(host, 'listVms', () => raw.map((r) => toVmFacts(host, r)));
  }

  /** One VM on one host by exact name, or null. */
  private async vmOn(host: string, vm: string, op: string, opts: CallOptions): Promise<VmFacts | null> {
    const raw = await this.run(host, op, vmFactsScript(vm, this.opts.failoverCluster), vmFactsSchema, opts);
    const found = this.map(host, op, () => raw.map((r) => toVmFacts(host, r)).filter((v) => v.name === vm));
    return found[0] ?? null;
  }

  async findVm(name: string, opts: CallOptions = {}): Promise<VmFacts | null> {
    const hosts = this.hostNames();
    const errors: AdapterError[] = [];
    let found: VmFacts | null = null;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!found && next < hosts.length && !opts.signal?.aborted) {
        const host = hosts[next++]!;
        try {
          const vm = await this.vmOn(host, name, 'findVm', opts);
          if (vm && !found) found = vm;
        } catch (err) {
          errors.push(err instanceof AdapterError ? err : new AdapterError(host, 'findVm', String(err)));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.findConcurrency ?? 4, hosts.length) }, worker));
    if (found) return found;
    // "Absent" is only true if every host answered.
    if (errors.length > 0) {
      const first = errors[0]!;
      throw new AdapterError(first.host, 'findVm', `could not tell whether ${name} exists: ${errors.length} host(s) did not answer (${errors.map((e) => e.message).join('; ')})`, { retryable: true, code: 'partial', cause: first });
    }
    return null;
  }

  // ------------------------------------------------------------------ maintenance

  async enterMaintenance(host: string, opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'enterMaintenance');
    if (!this.opts.failoverCluster) {
      await this.requireRedis(host, 'enterMaintenance').set(this.cordonKey(host), new Date().toISOString());
      return;
    }
    await this.run(host, 'enterMaintenance', maintenanceScript(host, true), maintenanceSchema, opts);
  }

  async exitMaintenance(host: string, opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'exitMaintenance');
    if (!this.opts.failoverCluster) {
      await this.requireRedis(host, 'exitMaintenance').del(this.cordonKey(host));
      return;
    }
    await this.run(host, 'exitMaintenance', maintenanceScript(host, false), maintenanceSchema, opts);
  }

  async saveVm(host: string, vm: string, opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'saveVm');
    const r = await this.run(host, 'saveVm', saveVmScript(vm), startSchema, opts);
    if (r.State !== 'Saved') throw new AdapterError(host, 'saveVm', `saveVm on ${host}: Save-VM ran but ${vm} is ${r.State}`, { code: 'not-saved' });
  }

  async resumeVm(host: string, vm: string, opts: CallOptions = {}): Promise<void> {
    this.checkHost(host, 'resumeVm');
    const r = await this.run(host, 'resumeVm', startVmScript(vm), startSchema, opts);
    if (r.State !== 'Running') throw new AdapterError(host, 'resumeVm', `resumeVm on ${host}: Start-VM ran but ${vm} is ${r.State}`, { code: 'not-running' });
  }

  // ------------------------------------------------------------------ NPIV removal

  async removeVirtualPort(port: VirtualPort, opts: CallOptions = {}): Promise<void> {
    const op = 'removeVirtualPort';
    this.checkHost(port.host, op);
    let wwpn: string;
    let hba: string | undefined;
    try {
      wwpn = normalizeWwn(port.wwpn);
      hba = port.hbaWwpn ? normalizeWwn(port.hbaWwpn) : undefined;
    } catch (err) {
      throw new AdapterError(port.host, op, `${op} on ${port.host}: ${(err as Error).message}`, { code: 'invalid' });
    }
    const r = await this.run(port.host, op, removeVirtualPortScript(wwpn, hba), removeSchema, opts);
    if (!r.Removed && r.Reason === 'absent') {
      this.opts.log?.info({ host: port.host, wwpn }, 'virtual port already absent');
      return;
    }
    if (!r.Removed) {
      const status = r.Status ?? -1;
      throw new AdapterError(port.host, op, `${op} on ${port.host}: RemoveVirtualPort(${wwpn}) returned status ${status} (${NPIV_STATUS[status] ?? 'unknown'})`, {
        code: 'npiv-status',
        // Link down / out of resources may pass; a refusal will not.
        retryable: status === 4 || status === 8,
      });
    }
    if (!r.Gone) throw new AdapterError(port.host, op, `${op} on ${port.host}: RemoveVirtualPort(${wwpn}) reported success but the port is still listed on ${r.Instance ?? 'its HBA'}`, { code: 'still-present', retryable: true });
  }

  // ------------------------------------------------------------------ checks

  async checkMigration(vm: string, target: string, opts: CallOptions = {}): Promise<CheckFinding[]> {
    this.checkHost(target, 'checkMigration');
    const facts = await this.findVm(vm, opts);
    if (!facts) throw new AdapterError(target, 'checkMigration', `checkMigration: VM ${vm} was not found on any host of ${this.opts.cluster}`, { code: 'not-found' });
    if (facts.host === target) return [{ code: 'placement', severity: 'info', message: `${vm} already runs on ${target}` }];
    const r = await this.run(facts.host, 'checkMigration', compareVmScript(vm, target), compareSchema, opts);
    return r.Incompatibilities.map((i) => ({
      code: findingCode(i.Message),
      severity: 'block' as const,
      message: `Compare-VM ${vm} -> ${target}: ${i.Message}${i.MessageId !== null && i.MessageId !== undefined ? ` (MessageId ${i.MessageId})` : ''}`,
    }));
  }

  // ------------------------------------------------------------------ migration

  async migrateVm(req: MigrateRequest, onProgress?: (p: MigrateProgress) => void, opts: CallOptions = {}): Promise<MigrateResult> {
    const op = 'migrateVm';
    const { vm, source, target } = req;
    this.checkHost(source, op);
    this.checkHost(target, op);
    const t0 = Date.now();
    if (source === target) throw new AdapterError(source, op, `${op}: ${vm} source and target are both ${source}`, { code: 'invalid' });
    if (opts.signal?.aborted) throw new AdapterError(source, op, `${op} ${vm}: cancelled before it started`, { code: 'cancelled' });

    const cancelledEarly = (err: unknown): never => {
      if (opts.signal?.aborted) throw new AdapterError(source, op, `${op} ${vm}: cancelled before the move started`, { code: 'cancelled', cause: err });
      throw err;
    };
    const before = await this.vmOn(source, vm, op, opts).catch(cancelledEarly);
    if (!before) throw new AdapterError(source, op, `${op}: ${vm} is not on ${source}`, { code: 'not-on-source' });

    // A clustered role moves with Move-ClusterVirtualMachineRole. A non-HA VM on a cluster node is
    // no cluster role (seed 001 rule 1): when the core lets one go (explicit override), it moves
    // as a standalone VM with Move-VM, storage included when a datastore is named.
    const clustered = this.opts.failoverCluster && before.ha;
    let storagePath: string | undefined;
    if (req.datastore) {
      const current = new Set(before.disks.map((d) => d.datastore));
      if (clustered) {
        if (!(current.size === 1 && current.has(req.datastore))) {
          throw new UnsupportedError(source, op, 'hyperv', `${vm} is a clustered VM on CSV storage; moving it to datastore ${req.datastore} (Move-VMStorage) is not done by Ferry's cluster migration`);
        }
      } else {
        const raw = await this.hostFacts(target, opts).catch(cancelledEarly);
        const root = hostDatastores(target, raw).paths[req.datastore];
        if (!root) throw new AdapterError(target, op, `${op}: datastore ${req.datastore} is not on ${target}`, { code: 'not-found' });
        storagePath = `${root.replace(/\\+$/, '')}\\${vm}`;
      }
    }

    if (opts.signal?.aborted) cancelledEarly(undefined);
    onProgress?.({ percent: 0, phase: 'starting' });
    const script = migrateScript({ vm, target, mode: req.mode, failoverCluster: clustered, ...(storagePath ? { storagePath } : {}) });
    let settled = false;
    // The move itself is not tied to opts.signal: killing the SSH session would not stop VMMS.
    // Cancel goes through Msvm_MigrationJob instead, and we wait for the move to report.
    const main = this.run(source, op, script, migrateSchema, { timeoutMs: this.opts.migrationTimeoutMs ?? 4 * 3_600_000 }).finally(() => {
      settled = true;
    });
    const done = new AbortController();
    void main.catch(() => undefined).finally(() => done.abort());

    let cancelRequested = false;
    let lastPercent = 0;
    const cancel = async (): Promise<void> => {
      if (cancelRequested || settled) return;
      cancelRequested = true;
      onProgress?.({ percent: lastPercent, phase: 'cancelling' });
      try {
        await this.run(source, 'cancelMigration', cancelMigrationScript(before.id), cancelSchema);
      } catch (err) {
        this.opts.log?.warn({ err, vm, source }, 'cancelling the Hyper-V migration job failed');
      }
    };
    const onAbort = (): void => void cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const poll = async (): Promise<void> => {
      const interval = this.opts.progressIntervalMs ?? 2000;
      while (!settled) {
        await sleep(interval, done.signal);
        if (settled) break;
        try {
          const p = await this.run(source, 'migrationProgress', migrationProgressScript(before.id), progressSchema);
          const job = p.Jobs.find((j) => typeof j.PercentComplete === 'number');
          if (job && !settled && typeof job.PercentComplete === 'number' && job.PercentComplete !== lastPercent) {
            lastPercent = Math.min(99, Math.max(lastPercent, job.PercentComplete));
            onProgress?.({ percent: lastPercent, phase: cancelRequested ? 'cancelling' : job.ElementName || 'migrating' });
          }
        } catch (err) {
          // Progress is informative; the move's own result decides success.
          this.opts.log?.debug({ err, vm, source }, 'migration progress poll failed');
        }
      }
    };
    const poller = poll();

    let moved;
    try {
      moved = await main;
    } catch (err) {
      if (cancelRequested) throw new AdapterError(source, op, `${op} ${vm}: cancelled; Hyper-V stopped the migration and ${vm} stays on ${source}`, { code: 'cancelled', cause: err });
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      await poller;
    }
    // If a cancel lost the race with completion we get here: the VM did move, and we say so.
    if (req.mode === 'cold' && !clustered && before.power === 'running') {
      await this.run(target, op, startVmScript(vm), startSchema);
    }
    const after = await this.vmOn(target, vm, op, {});
    if (!after) throw new AdapterError(target, op, `${op}: ${clustered ? 'Move-ClusterVirtualMachineRole' : 'Move-VM'} reported success (owner ${moved.Owner || '?'}) but ${vm} is not on ${target}`, { code: 'not-on-target' });
    onProgress?.({ percent: 100, phase: 'done' });

    const result: MigrateResult = { vm, host: target, durationMs: Date.now() - t0 };
    if (req.datastore) result.datastore = req.datastore;
    const lingering = await this.lingeringPorts(source, before);
    if (lingering) result.lingeringPorts = lingering;
    return result;
  }

  /**
   * Seed 000's failure: after a live migration the source keeps one of the VM's NPIV ports.
   * Re-read the source's virtual ports (once more after a short wait, as Hyper-V removes them
   * asynchronously) and report those carrying the VM's WWPNs. A read failure is logged and
   * reported as unknown (undefined), never as "none".
   */
  private async lingeringPorts(source: string, vm: VmFacts): Promise<VirtualPort[] | undefined> {
    const wwpns = new Set(vm.vfc.flatMap((a) => a.wwpns));
    if (wwpns.size === 0) return [];
    const delay = this.opts.lingerCheckDelayMs ?? 2000;
    let ports: VirtualPort[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0) await sleep(delay);
      try {
        const inv = await this.npivInventory(source);
        ports = inv.virtualPorts.filter((p) => wwpns.has(p.wwpn));
      } catch (err) {
        this.opts.log?.warn({ err, source, vm: vm.name }, 'could not re-read NPIV ports after migration');
        return undefined;
      }
      if (ports.length === 0) break;
    }
    return ports;
  }

  // ------------------------------------------------------------------ host commands

  /**
   * The patch hook as PowerShell (runCommandScript). Output is the command's own, the envelope
   * (last line) carries its exit code; without an envelope the command ended the script with
   * `exit N` and powershell.exe's exit code is the command's. Timeouts and SSH faults throw.
   */
  async runCommand(host: string, command: string, opts: RunOptions = {}): Promise<CommandResult> {
    const op = 'runCommand';
    this.checkHost(host, op);
    let argv: string[];
    try {
      argv = powershellArgv(this.powershell, runCommandScript(command));
    } catch (err) {
      throw new AdapterError(host, op, `${op} on ${host}: the command cannot be sent (${(err as Error).message}); put it in a script on the host and make the hook call that script`, { code: 'too-long' });
    }
    const started = Date.now();
    let res: ExecResult;
    try {
      res = await this.shell.exec(host, argv, {
        timeoutMs: opts.timeoutMs ?? this.opts.commandTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      const prev = err instanceof AdapterError ? err : undefined;
      throw new AdapterError(host, op, `${op} on ${host}: ${err instanceof Error ? err.message : String(err)}`, { retryable: prev ? prev.retryable : true, code: prev?.code ?? 'unreachable', cause: err });
    }
    if (res.code === null) throw new AdapterError(host, op, `${op} on ${host}: PowerShell did not finish (timed out or killed)${res.stderr ? `: ${excerpt(res.stderr)}` : ''}`, { code: 'timeout' });
    const lines = res.stdout.split(/\r?\n/);
    let at = -1;
    for (let i = lines.length - 1; i >= 0 && at < 0; i--) if (/^\{"ok":(true|false),/.test(lines[i]!.trim())) at = i;
    const durationMs = Date.now() - started;
    if (at < 0) return { stdout: res.stdout, stderr: res.stderr, exitCode: res.code, durationMs };
    let env;
    try {
      env = envelopeSchema.parse(JSON.parse(lines[at]!.trim()));
    } catch (err) {
      throw new AdapterError(host, op, `${op} on ${host}: malformed envelope from PowerShell: ${excerpt(lines[at]!, 200)}`, { code: 'malformed', cause: err });
    }
    if (!env.ok) throw new AdapterError(host, op, `${op} on ${host} failed: ${env.error.message ?? 'PowerShell error'}`, { code: adapterErrorCode(env.error.code, 'powershell'), ...(env.error.code ? { fault: env.error.code } : {}) });
    const data = runCommandSchema.safeParse(unwrapPsArrays(env.data));
    if (!data.success) throw new AdapterError(host, op, `${op} on ${host}: PowerShell output of run-command has an unexpected shape`, { code: 'malformed' });
    const stdout = lines.filter((_, i) => i !== at).join('\n');
    return { stdout, stderr: res.stderr, exitCode: data.data.ExitCode, durationMs };
  }

  async close(): Promise<void> {
    await this.shell.close();
  }
}
