/**
 * The vSphere adapter: one vCenter session per Ferry cluster, inventory through a container
 * view over the datacenter, maintenance and migrations as vCenter tasks.
 *
 * Migrations follow seed 003: host+datastore (and host-only fallback) is RelocateVM_Task,
 * plain vMotion is MigrateVM_Task where the server has it. A server without MigrateVM_Task
 * (govmomi's simulator) answers MethodNotFound before any task exists, so falling back to
 * RelocateVM_Task with the host only is safe and remembered.
 *
 * Maintenance (contract: enter WITHOUT evacuating, Ferry moves the VMs). A real vCenter only
 * completes EnterMaintenanceMode_Task once no powered-on VM is left on the host, so waiting for
 * it before the drain moves anything would hang. enterMaintenance starts the task
 * (evacuatePoweredOffVms false) and, while powered-on VMs remain, returns once vCenter runs it
 * (the host then refuses new placements and power-ons), keeping the task in Redis
 * (maintenance.ts) so other processes see it and start no second one. describeHost reports such
 * a host as maintenance true with enteringMaintenance; the task completes by itself when the last
 * VM has left, a failure shows in describeHost's notes and is thrown by the next enterMaintenance.
 * exitMaintenance cancels a task still running (CancelTask) before leaving maintenance.
 * With DRS fully automated vCenter would evacuate the host itself: logged, and noted on the host.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';
import {
  AdapterError,
  type AdapterErrorCode,
  UnsupportedError,
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
  type Wwn,
} from '../types.js';
import { arrayItems, buildSnapshot, drsFullyAutomated, hostFacts, hostHbas, SNAPSHOT_SPECS, SNAPSHOT_TYPES, vmFacts, type MapContext, type RawHost, type RawVm, type Snapshot } from './inventory.js';
import { EnterTasks, type EnterRecord } from './maintenance.js';
import { TransportError } from './transport.js';
import { SoapFault, VimClient, type TaskInfo } from './vim.js';
import { child, children, moref, ref, refKey, sameRef, text, xsiType, type MoRef, type XmlInputObject, type XmlValue } from './xml.js';

export interface VsphereSettings {
  url: string;
  user: string;
  password: string;
  datacenter?: string;
  /** vCenter cluster name when it differs from Ferry's. */
  cluster?: string;
  caFile?: string;
  thumbprint?: string;
  insecure?: boolean;
  /** vCenter host name -> Ferry host name. */
  hostNames?: Record<string, string>;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
  taskPollMs?: number;
  /** EnterMaintenanceMode_Task timeout in seconds (0: vCenter's default, no timeout). */
  maintenanceTimeoutS?: number;
  /** How often this process looks at an enter-maintenance task it left running (0: only when asked). */
  maintenanceWatchMs?: number;
  /** Concurrent reads within this window share one inventory snapshot. */
  snapshotTtlMs?: number;
}

export interface VsphereAdapterOptions {
  cluster: string;
  hosts: string[];
  settings: VsphereSettings;
  log?: Logger;
  /** Where unfinished enter-maintenance tasks are kept for every process (else in memory). */
  redis?: Redis;
  prefix?: string;
}

/** What Ferry knows of an enter-maintenance task it started. */
type EnterTaskState =
  | { kind: 'none' }
  | { kind: 'entering'; rec: EnterRecord }
  | { kind: 'entered'; rec: EnterRecord }
  | { kind: 'failed'; rec: EnterRecord };

/** Faults that mean "this server does not have that method/object", not "the call failed". */
const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

const ABSENT = new Set(['MethodNotFound', 'NotImplemented', 'ManagedObjectNotFound', 'NotSupported']);

/** vSphere fault types by what they mean to Ferry; any other fault is the platform's ('fault'), named in the message and in AdapterError.fault. */
const FAULT_CODE: Record<string, AdapterErrorCode> = {
  InvalidLogin: 'auth',
  NotAuthenticated: 'auth',
  NoPermission: 'auth',
  ManagedObjectNotFound: 'not-found',
  NotFound: 'not-found',
  InvalidState: 'wrong-state',
  InvalidPowerState: 'wrong-state',
  InvalidHostState: 'wrong-state',
  TaskInProgress: 'wrong-state',
  ResourceInUse: 'in-use',
  NotSupported: 'unsupported',
  MethodNotFound: 'unsupported',
  NotImplemented: 'unsupported',
};

function faultCode(fault: string | undefined): AdapterErrorCode {
  return (fault && FAULT_CODE[fault]) || 'fault';
}

const TRANSPORT_CODE: Record<TransportError['kind'], AdapterErrorCode> = { timeout: 'timeout', tls: 'tls', network: 'unreachable', aborted: 'cancelled', http: 'fault' };

export class VsphereAdapter implements HypervisorAdapter {
  readonly kind = 'vsphere' as const;
  readonly client: VimClient;
  private readonly settings: Required<Omit<VsphereSettings, 'datacenter' | 'cluster' | 'caFile' | 'thumbprint'>> & VsphereSettings;
  private view?: { generation: number; ref: MoRef };
  private cached?: { at: number; snap: Promise<Snapshot> };
  private hasMigrateVm = true;
  private hasNativeChecks = true;
  private readonly mapCtx: MapContext;
  private readonly enterTasks: EnterTasks;
  private readonly watchers = new Map<string, { task: string; timer: NodeJS.Timeout }>();
  private closing = false;

  constructor(private readonly opts: VsphereAdapterOptions) {
    this.settings = {
      insecure: false,
      hostNames: {},
      requestTimeoutMs: 60_000,
      keepAliveMs: 10 * 60_000,
      taskPollMs: 1000,
      maintenanceTimeoutS: 0,
      maintenanceWatchMs: 15_000,
      snapshotTtlMs: 2000,
      ...opts.settings,
    };
    this.client = new VimClient({
      url: this.settings.url,
      user: this.settings.user,
      password: this.settings.password,
      caFile: this.settings.caFile,
      thumbprint: this.settings.thumbprint,
      insecure: this.settings.insecure,
      timeoutMs: this.settings.requestTimeoutMs,
      keepAliveMs: this.settings.keepAliveMs,
      log: opts.log,
    });
    const names = this.settings.hostNames;
    this.mapCtx = { ferryName: (vc) => names[vc] ?? vc, cluster: opts.cluster };
    this.enterTasks = new EnterTasks(opts.cluster, opts.redis, opts.prefix);
  }

  get capabilities(): Capabilities {
    return {
      liveMigration: true,
      storageMigration: true,
      coldMigration: true,
      maintenance: 'native',
      npiv: true,
      removeVirtualPort: false,
      // CheckMigrate exists on real vCenter; flips to false once the server proves it lacks it.
      nativeChecks: this.hasNativeChecks,
      migrationCancel: true,
      hostCommands: false,
    };
  }

  hostNames(): string[] {
    return [...this.opts.hosts];
  }

  async describeHost(host: string, opts?: CallOptions): Promise<HostFacts> {
    const op = 'describeHost';
    const snap = await this.snapshot(host, op, opts?.signal);
    const h = this.rawHost(snap, host, op);
    const facts = hostFacts(h, snap, this.mapCtx);
    const notes: string[] = [];
    const drs = this.drsNote(h, snap, host);
    if (drs) notes.push(drs);
    const st = await this.enterTaskState(host, op);
    if (!facts.maintenance) {
      if (st.kind === 'entering') {
        facts.maintenance = true;
        facts.enteringMaintenance = true;
        notes.push(
          `${host} is entering maintenance: it takes no new VMs, and vCenter's task ${st.rec.task} completes by itself once no powered-on VM is left on it.`,
        );
      } else if (st.kind === 'entered') {
        // The task has just succeeded; the (cached) inventory read predates it.
        facts.maintenance = true;
      } else if (st.kind === 'failed') {
        notes.push(enterFailedText(host, st.rec));
      }
    }
    if (notes.length) facts.notes = notes;
    return facts;
  }

  async listVms(host: string, opts?: CallOptions): Promise<VmFacts[]> {
    const snap = await this.snapshot(host, 'listVms', opts?.signal);
    const h = this.rawHost(snap, host, 'listVms');
    return snap.vms.filter((vm) => sameRef(vm.host, h.ref)).map((vm) => vmFacts(vm, snap, this.mapCtx));
  }

  async findVm(name: string, opts?: CallOptions): Promise<VmFacts | null> {
    const snap = await this.snapshot(this.client.endpoint, 'findVm', opts?.signal);
    const vm = snap.vms.find((v) => v.name === name);
    return vm ? vmFacts(vm, snap, this.mapCtx) : null;
  }

  async enterMaintenance(host: string, opts?: CallOptions): Promise<void> {
    const op = 'enterMaintenance';
    const signal = opts?.signal;
    const snap = await this.snapshot(host, op, signal, true);
    const h = this.rawHost(snap, host, op);
    const drs = this.drsNote(h, snap, host);
    if (drs) this.opts.log?.warn({ host, cluster: this.opts.cluster }, drs);
    const st = await this.enterTaskState(host, op);
    if (hostFacts(h, snap, this.mapCtx).maintenance) {
      if (st.kind !== 'none') await this.guard(host, op, () => this.enterTasks.delete(host));
      return;
    }
    if (st.kind === 'entering' || st.kind === 'entered') return;
    if (st.kind === 'failed') {
      // Said once, plainly; the next call starts a new task.
      await this.guard(host, op, () => this.enterTasks.swap(host, st.rec.task, 'failed', null));
      throw new AdapterError(host, op, `${op} on ${host}: ${enterFailedText(host, st.rec)} Enter maintenance again to retry.`, { code: 'maintenance-failed' });
    }

    const poweredOn = snap.vms.filter((vm) => sameRef(vm.host, h.ref) && text(vm.props.get('runtime.powerState')) === 'poweredOn').map((vm) => vm.name);
    // Ferry moves VMs itself (seed 001): never let vCenter evacuate powered-off VMs.
    const params: XmlInputObject = { timeout: this.settings.maintenanceTimeoutS, evacuatePoweredOffVms: false };
    const task = await this.startTask(host, op, 'EnterMaintenanceMode_Task', h.ref, params, signal);
    const rec: EnterRecord = { task: task.value, state: 'running', startedAt: new Date().toISOString() };
    await this.guard(host, op, () => this.enterTasks.set(host, rec));

    // vCenter completes the task only once no powered-on VM is left: with VMs on the host, return
    // as soon as it runs (the host refuses new placements from then on) and let Ferry move them.
    for (;;) {
      const info = await this.guard(host, op, () => this.client.taskInfo(task));
      if (info.state === 'running' && poweredOn.length > 0) {
        this.opts.log?.info(
          { host, task: task.value, poweredOn: poweredOn.length },
          `${host} is entering maintenance; vCenter completes it once the ${poweredOn.length} powered-on VM(s) have left`,
        );
        this.watch(host, task.value);
        return;
      }
      if (info.state !== 'queued' || signal?.aborted) break;
      await sleep(this.settings.taskPollMs, signal);
    }
    try {
      await this.waitTask(task, host, op, undefined, signal);
    } catch (err) {
      // The task ended (failed or cancelled): nothing to remember. A transport fault leaves the
      // record for the next call to look at.
      if (!(err instanceof AdapterError && err.retryable)) await this.enterTasks.swap(host, rec.task, 'running', null).catch(() => false);
      throw err;
    }
    await this.guard(host, op, () => this.enterTasks.swap(host, rec.task, 'running', null));
    await this.checkMaintenance(host, op, true);
  }

  async exitMaintenance(host: string, opts?: CallOptions): Promise<void> {
    const op = 'exitMaintenance';
    const signal = opts?.signal;
    this.unwatch(host);
    const rec = await this.guard(host, op, () => this.enterTasks.get(host));
    if (rec && rec.state !== 'failed') await this.cancelEnter(host, rec, signal);
    else if (rec) await this.guard(host, op, () => this.enterTasks.swap(host, rec.task, 'failed', null));

    const snap = await this.snapshot(host, op, signal, true);
    const h = this.rawHost(snap, host, op);
    if (!hostFacts(h, snap, this.mapCtx).maintenance) return;
    const task = await this.startTask(host, op, 'ExitMaintenanceMode_Task', h.ref, { timeout: this.settings.maintenanceTimeoutS }, signal);
    await this.waitTask(task, host, op, undefined, signal);
    await this.checkMaintenance(host, op, false);
  }

  /** After a maintenance task succeeded: vCenter must agree. */
  private async checkMaintenance(host: string, op: string, on: boolean): Promise<void> {
    const snapAfter = await this.snapshot(host, op, undefined, true);
    const state = hostFacts(this.rawHost(snapAfter, host, op), snapAfter, this.mapCtx).maintenance;
    if (state !== on) throw new AdapterError(host, op, `${op} on ${host}: the task succeeded but vCenter still reports maintenance=${state}`);
  }

  /**
   * Stops an enter-maintenance task Ferry left running (CancelTask) and waits for it to end. If
   * it completed first the host is in maintenance and exitMaintenance takes it out as usual.
   */
  private async cancelEnter(host: string, rec: EnterRecord, signal?: AbortSignal): Promise<void> {
    const op = 'exitMaintenance';
    const task: MoRef = { type: 'Task', value: rec.task };
    // 'cancelling' first: whoever sees the task end in RequestCanceled does not call it a failure.
    await this.guard(host, op, () => this.enterTasks.set(host, { ...rec, state: 'cancelling' }));
    let info = await this.taskInfoOrGone(task, host, op);
    if (info && (info.state === 'queued' || info.state === 'running')) {
      try {
        await this.client.call('CancelTask', task, {}, signal);
      } catch (err) {
        // InvalidState: the task ended meanwhile (completed or already cancelled).
        if (!(err instanceof SoapFault && err.faultType === 'InvalidState')) throw this.wrap(host, op, err);
      }
      this.opts.log?.info({ host, task: rec.task }, `cancelled the unfinished enter-maintenance task of ${host}`);
      for (;;) {
        info = await this.taskInfoOrGone(task, host, op);
        if (!info || info.state === 'success' || info.state === 'error') break;
        if (signal?.aborted) throw new AdapterError(host, op, `${op} on ${host} cancelled while vCenter was cancelling task ${rec.task}`, { code: 'cancelled' });
        await sleep(this.settings.taskPollMs, signal);
      }
    }
    await this.guard(host, op, () => this.enterTasks.swap(host, rec.task, 'cancelling', null));
  }

  /**
   * Where the enter-maintenance task Ferry left running stands now (one TaskInfo read, only
   * while one is recorded). Success and a vanished task forget the record; an error is kept as
   * 'failed' unless exitMaintenance was cancelling it.
   */
  private async enterTaskState(host: string, op: string): Promise<EnterTaskState> {
    const rec = await this.guard(host, op, () => this.enterTasks.get(host));
    if (!rec) return { kind: 'none' };
    if (rec.state === 'failed') return { kind: 'failed', rec };
    const info = await this.taskInfoOrGone({ type: 'Task', value: rec.task }, host, op);
    if (info && (info.state === 'queued' || info.state === 'running')) return { kind: 'entering', rec };
    let next: EnterRecord | null = null;
    let result: EnterTaskState = { kind: 'none' };
    if (info?.state === 'success') result = { kind: 'entered', rec };
    else if (info?.state === 'error' && rec.state === 'running') {
      next = { ...rec, state: 'failed', fault: info.error?.fault, error: info.error?.message || info.error?.fault || 'unknown fault' };
      result = { kind: 'failed', rec: next };
    }
    if (await this.guard(host, op, () => this.enterTasks.swap(host, rec.task, rec.state, next))) return result;
    // Someone else changed the record meanwhile: take theirs, without asking vCenter again.
    const now = await this.guard(host, op, () => this.enterTasks.get(host));
    if (!now) return result.kind === 'entered' ? result : { kind: 'none' };
    return now.state === 'failed' ? { kind: 'failed', rec: now } : { kind: 'entering', rec: now };
  }

  /** TaskInfo, or undefined when vCenter no longer knows the task (old tasks expire). */
  private async taskInfoOrGone(task: MoRef, host: string, op: string): Promise<TaskInfo | undefined> {
    try {
      return await this.client.taskInfo(task);
    } catch (err) {
      if (err instanceof SoapFault && err.faultType === 'ManagedObjectNotFound') return undefined;
      throw this.wrap(host, op, err);
    }
  }

  /** This process looks at an enter task it left running now and then, to log its end promptly. */
  private watch(host: string, task: string): void {
    const every = this.settings.maintenanceWatchMs;
    if (every <= 0 || this.closing) return;
    this.unwatch(host);
    const schedule = (): void => {
      const timer = setTimeout(() => void tick(), every);
      timer.unref();
      this.watchers.set(host, { task, timer });
    };
    const current = (): boolean => !this.closing && this.watchers.get(host)?.task === task;
    const tick = async (): Promise<void> => {
      if (!current()) return;
      try {
        const st = await this.enterTaskState(host, 'watchMaintenance');
        if (!current()) return;
        if (st.kind === 'entering' && st.rec.task === task) return schedule();
        this.watchers.delete(host);
        if (st.kind === 'entered') this.opts.log?.info({ host, task }, `${host} is in maintenance: vCenter completed task ${task} once the last powered-on VM had left`);
        else if (st.kind === 'failed') this.opts.log?.warn({ host, task, fault: st.rec.fault }, enterFailedText(host, st.rec));
      } catch (err) {
        this.opts.log?.warn({ host, task, err: err }, 'could not read the enter-maintenance task; trying again');
        if (current()) schedule();
      }
    };
    schedule();
  }

  private unwatch(host: string): void {
    const w = this.watchers.get(host);
    if (w) clearTimeout(w.timer);
    this.watchers.delete(host);
  }

  /** Set when vCenter would move VMs itself: DRS enabled and fully automated on the host's cluster. */
  private drsNote(h: RawHost, snap: Snapshot, host: string): string | undefined {
    const cluster = h.parent ? snap.clusters.get(refKey(h.parent)) : undefined;
    if (!cluster || !drsFullyAutomated(cluster)) return undefined;
    return (
      `DRS of vCenter cluster ${cluster.name} is fully automated: when ${host} enters maintenance vCenter moves its powered-on VMs itself, ` +
      `to hosts it picks, outside Ferry's plan and ledger. Set DRS to manual or partially automated before a drain.`
    );
  }

  /** Runs a Redis/vCenter step of the maintenance bookkeeping; faults become this host's AdapterError. */
  private async guard<T>(host: string, op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(host, op, err);
    }
  }

  async migrateVm(req: MigrateRequest, onProgress?: (p: MigrateProgress) => void, opts?: CallOptions): Promise<MigrateResult> {
    const op = 'migrateVm';
    const started = Date.now();
    const signal = opts?.signal;
    const snap = await this.snapshot(req.source, op, signal, true);
    const vm = snap.vms.find((v) => v.name === req.vm);
    if (!vm) throw new AdapterError(req.source, op, `VM ${req.vm} not found in vCenter ${this.client.endpoint}`, { code: 'not-found' });
    const facts = vmFacts(vm, snap, this.mapCtx);
    if (facts.host !== req.source) {
      throw new AdapterError(req.source, op, `VM ${req.vm} runs on ${facts.host || 'no host'}, not ${req.source}`, { code: 'wrong-source' });
    }
    if (req.mode === 'cold' && facts.power === 'running') {
      throw new AdapterError(req.source, op, `cold migration of ${req.vm} asked while it is running; power it off first`, { code: 'powered-on' });
    }
    const target = this.rawHost(snap, req.target, op);
    const source = this.rawHost(snap, req.source, op);
    let dsRef: MoRef | undefined;
    if (req.datastore) {
      const mounted = arrayItems(target.props.get('datastore'))
        .map((x) => moref(x))
        .filter((r): r is MoRef => !!r);
      dsRef = mounted.find((r) => snap.datastores.get(refKey(r))?.name === req.datastore);
      if (!dsRef) {
        throw new AdapterError(req.target, op, `datastore ${req.datastore} is not mounted on ${req.target}`, { code: 'not-found' });
      }
    }
    // A pool is only needed when the VM changes cluster; within one, vCenter keeps its pool.
    const pool = !sameRef(source.parent, target.parent) && target.parent ? snap.clusters.get(refKey(target.parent))?.pool : undefined;

    const task = await this.startMigration(req, vm, target.ref, pool, dsRef, signal);
    await this.waitTask(task, req.source, op, onProgress, signal);

    const after = await this.snapshot(req.target, op, undefined, true);
    const moved = after.vms.find((v) => sameRef(v.ref, vm.ref));
    if (!moved || !sameRef(moved.host, target.ref)) {
      const where = moved?.host ? (after.hosts.get(refKey(moved.host))?.vcName ?? moved.host.value) : 'unknown';
      throw new AdapterError(req.source, op, `${req.vm}: the task succeeded but vCenter places the VM on ${where}, not ${req.target}`, { code: 'not-moved' });
    }
    return { vm: req.vm, host: req.target, datastore: req.datastore, durationMs: Date.now() - started };
  }

  private async startMigration(req: MigrateRequest, vm: RawVm, host: MoRef, pool: MoRef | undefined, datastore: MoRef | undefined, signal?: AbortSignal): Promise<MoRef> {
    const op = 'migrateVm';
    if (!datastore && this.hasMigrateVm) {
      try {
        const params: XmlInputObject = { pool: pool && ref(pool), host: ref(host), priority: 'defaultPriority' };
        return await this.startTask(req.source, op, 'MigrateVM_Task', vm.ref, params, signal, true);
      } catch (err) {
        if (!(err instanceof SoapFault) || !ABSENT.has(err.faultType)) throw this.wrap(req.source, op, err);
        this.hasMigrateVm = false;
        this.opts.log?.info({ endpoint: this.client.endpoint }, 'vCenter has no MigrateVM_Task; using RelocateVM_Task with a host');
      }
    }
    // VirtualMachineRelocateSpec members in schema order: datastore, pool, host.
    const spec: XmlInputObject = { datastore: datastore && ref(datastore), pool: pool && ref(pool), host: ref(host) };
    return this.startTask(req.source, op, 'RelocateVM_Task', vm.ref, { spec, priority: 'defaultPriority' }, signal);
  }

  async npivInventory(host: string, opts?: CallOptions): Promise<NpivInventory> {
    const snap = await this.snapshot(host, 'npivInventory', opts?.signal);
    const h = this.rawHost(snap, host, 'npivInventory');
    const endpointWwpns: Wwn[] = [];
    const endpointOwners: Record<Wwn, string> = {};
    for (const vm of snap.vms) {
      if (!sameRef(vm.host, h.ref)) continue;
      const f = vmFacts(vm, snap, this.mapCtx);
      if (f.power !== 'running') continue;
      for (const a of f.vfc) {
        for (const w of a.wwpns) {
          endpointWwpns.push(w);
          endpointOwners[w] = f.name;
        }
      }
    }
    // vSphere instantiates a VM's NPIV ports itself at power-on and removes them at power-off;
    // it exposes no host-side list of virtual ports, so there is nothing stale to report.
    return { host, hbas: hostHbas(h), virtualPorts: [], endpointWwpns, endpointOwners };
  }

  async removeVirtualPort(port: VirtualPort): Promise<void> {
    throw new UnsupportedError(
      port.host,
      'removeVirtualPort',
      'vsphere',
      'vCenter creates and removes NPIV virtual ports with the VM that owns them; it has no call to remove one by hand',
    );
  }

  async checkMigration(vmName: string, target: string, opts?: CallOptions): Promise<CheckFinding[]> {
    const op = 'checkMigration';
    const snap = await this.snapshot(target, op, opts?.signal);
    if (!this.hasNativeChecks) return [];
    const prov = this.client.serviceContent?.vmProvisioningChecker;
    if (!prov) {
      this.hasNativeChecks = false;
      return [];
    }
    const vm = snap.vms.find((v) => v.name === vmName);
    if (!vm) throw new AdapterError(target, op, `VM ${vmName} not found in vCenter ${this.client.endpoint}`, { code: 'not-found' });
    const h = this.rawHost(snap, target, op);
    let task: MoRef;
    try {
      task = await this.startTask(target, op, 'CheckMigrate_Task', prov, { vm: ref(vm.ref), host: ref(h.ref) }, opts?.signal, true);
    } catch (err) {
      // govmomi's simulator has neither CheckMigrate nor QueryVMotionCompatibility.
      if (err instanceof SoapFault && ABSENT.has(err.faultType)) {
        this.hasNativeChecks = false;
        return [];
      }
      throw this.wrap(target, op, err);
    }
    const info = await this.waitTask(task, target, op, undefined, opts?.signal);
    return checkFindings(info.result);
  }

  async runCommand(host: string): Promise<CommandResult> {
    throw new UnsupportedError(host, 'runCommand', 'vsphere', 'ESXi hosts are patched through vSphere Lifecycle Manager; use a manual hook for vSphere clusters');
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const host of [...this.watchers.keys()]) this.unwatch(host);
    await this.client.close();
  }

  // ---- internals ----

  private rawHost(snap: Snapshot, ferryName: string, op: string): RawHost {
    for (const h of snap.hosts.values()) if (this.mapCtx.ferryName(h.vcName) === ferryName) return h;
    throw new AdapterError(ferryName, op, `${ferryName} is not a host of vCenter ${this.client.endpoint}`, { code: 'not-found' });
  }

  /** One inventory read, shared by calls within snapshotTtlMs; `fresh` skips the cache (before/after mutations). */
  private async snapshot(host: string, op: string, signal?: AbortSignal, fresh = false): Promise<Snapshot> {
    // The shared read keeps its raw error; each caller wraps it with its own host and op, so a
    // login failure reads "describeHost on esx02", not the first caller's "on esx01".
    const mine = (err: unknown): never => {
      throw this.wrap(host, op, err);
    };
    const now = Date.now();
    if (!fresh && this.cached && now - this.cached.at < this.settings.snapshotTtlMs) return this.cached.snap.catch(mine);
    const read = async (): Promise<Snapshot> => {
      const view = await this.containerView(signal);
      return buildSnapshot(await this.client.retrieve(view, SNAPSHOT_SPECS, { traverseView: true, signal }));
    };
    const snap = this.client.withSession(async () => {
      try {
        return await read();
      } catch (err) {
        if (!(err instanceof SoapFault) || err.faultType !== 'ManagedObjectNotFound' || !this.view) throw err;
        // Views live in the session: a view that vanished usually means the session did
        // (govmomi's simulator says so this way instead of NotAuthenticated). Probe the
        // session; NotAuthenticated from the probe makes withSession log in and run this again.
        this.view = undefined;
        await this.client.invoke('CurrentTime', { _this: ref(SERVICE_INSTANCE) }, signal);
        return read();
      }
    }, signal);
    snap.catch(() => {
      if (this.cached?.snap === snap) this.cached = undefined;
    });
    this.cached = { at: now, snap };
    return snap.catch(mine);
  }

  /** A container view over the datacenter (or the whole inventory); views belong to a session. */
  private async containerView(signal?: AbortSignal): Promise<MoRef> {
    const gen = this.client.sessionGeneration;
    if (this.view && this.view.generation === gen) return this.view.ref;
    const content = this.client.requireContent();
    let root = content.rootFolder;
    if (this.settings.datacenter) {
      // Datacenters may sit in nested folders: find them through a view of the root.
      const dcView = await this.createView(content.rootFolder, ['Datacenter'], signal);
      const found = await this.client.retrieve(dcView, [{ type: 'Datacenter', paths: ['name'] }], { traverseView: true, signal });
      const dc = found.find((o) => text(o.props.get('name')) === this.settings.datacenter);
      await this.client.invoke('DestroyView', { _this: ref(dcView) }, signal).catch(() => undefined);
      if (!dc) throw new AdapterError(this.client.endpoint, 'inventory', `datacenter ${this.settings.datacenter} not found in vCenter ${this.client.endpoint}`, { code: 'not-found' });
      root = dc.obj;
    }
    const view = await this.createView(root, SNAPSHOT_TYPES, signal);
    this.view = { generation: gen, ref: view };
    return view;
  }

  private async createView(container: MoRef, types: string[], signal?: AbortSignal): Promise<MoRef> {
    const content = this.client.requireContent();
    const rv = await this.client.invoke('CreateContainerView', { _this: ref(content.viewManager), container: ref(container), type: types, recursive: true }, signal);
    const view = moref(rv);
    if (!view) throw new TransportError('CreateContainerView returned no view', 'http');
    return view;
  }

  /** Starts a *_Task method. `raw` leaves SoapFaults unwrapped so callers can detect absent methods. */
  private async startTask(host: string, op: string, method: string, thisRef: MoRef, params: XmlInputObject, signal?: AbortSignal, raw = false): Promise<MoRef> {
    try {
      const rv = await this.client.call(method, thisRef, params, signal);
      const task = moref(rv);
      if (!task) throw new TransportError(`${method} returned no task`, 'http');
      return task;
    } catch (err) {
      if (raw && err instanceof SoapFault) throw err;
      throw this.wrap(host, op, err);
    }
  }

  /**
   * Polls a task to its end. Progress goes to onProgress when it changes; an abort cancels the
   * task in vCenter (CancelTask) and waits for vCenter to confirm before throwing.
   */
  private async waitTask(task: MoRef, host: string, op: string, onProgress?: (p: MigrateProgress) => void, signal?: AbortSignal): Promise<TaskInfo> {
    let last = -1;
    let cancelSent = false;
    const report = (percent: number, phase: string): void => {
      if (percent === last || !onProgress) return;
      last = percent;
      try {
        onProgress({ percent, phase });
      } catch (err) {
        this.opts.log?.warn({ err: err }, 'progress callback threw');
      }
    };
    for (;;) {
      let info: TaskInfo;
      try {
        // No signal here: after an abort we still need to see the task end.
        info = await this.client.taskInfo(task);
      } catch (err) {
        throw this.wrap(host, op, err);
      }
      if (info.state === 'success') {
        if (cancelSent) {
          throw new AdapterError(host, op, `${op} on ${host}: cancel asked but the task had already finished`, { code: 'cancel-too-late' });
        }
        report(100, 'success');
        return info;
      }
      if (info.state === 'error') {
        if (cancelSent) throw new AdapterError(host, op, `${op} on ${host} cancelled`, { code: 'cancelled' });
        const why = info.error?.message || info.error?.fault || 'unknown fault';
        throw new AdapterError(host, op, `${op} on ${host} failed in vCenter: ${why}`, { code: faultCode(info.error?.fault), ...(info.error?.fault ? { fault: info.error.fault } : {}) });
      }
      report(info.progress ?? 0, info.state);
      if (signal?.aborted && !cancelSent) {
        cancelSent = true;
        await this.client.call('CancelTask', task).catch((err: unknown) => {
          this.opts.log?.warn({ err: err, task: task.value }, 'CancelTask failed');
        });
      }
      await sleep(this.settings.taskPollMs, cancelSent ? undefined : signal);
    }
  }

  private wrap(host: string, op: string, err: unknown): AdapterError {
    if (err instanceof AdapterError) return err;
    if (err instanceof SoapFault) {
      const auth = err.faultType === 'InvalidLogin' || err.faultType === 'NotAuthenticated';
      const what = auth ? `vCenter ${this.client.endpoint} refused the login for ${this.settings.user}` : `${err.method} answered ${err.faultType}`;
      return new AdapterError(host, op, `${op} on ${host}: ${what}: ${err.message}`, { code: faultCode(err.faultType), fault: err.faultType, cause: err });
    }
    if (err instanceof TransportError) {
      const retryable = err.kind === 'timeout' || err.kind === 'network';
      return new AdapterError(host, op, `${op} on ${host}: vCenter ${this.client.endpoint}: ${err.message}`, { code: TRANSPORT_CODE[err.kind], retryable, cause: err });
    }
    const msg = err instanceof Error ? err.message : String(err);
    return new AdapterError(host, op, `${op} on ${host}: ${msg}`, { cause: err });
  }
}

function enterFailedText(host: string, rec: EnterRecord): string {
  const why = (rec.error ?? 'unknown fault').replace(/\.+$/, '');
  return `entering maintenance failed in vCenter (task ${rec.task}, started ${rec.startedAt}): ${why}. ${host} is not in maintenance and takes new VMs again.`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** CheckMigrate's ArrayOfCheckResult -> findings; errors block, warnings warn. */
export function checkFindings(result: XmlValue | undefined): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const r of arrayItems(result)) {
    for (const [field, severity] of [
      ['error', 'block'],
      ['warning', 'warn'],
    ] as const) {
      for (const f of children(r, field)) {
        const fault = xsiType(child(f, 'fault')) ?? 'Fault';
        out.push({ code: findingCode(fault), severity, message: text(child(f, 'localizedMessage')) || fault });
      }
    }
  }
  return out;
}

function findingCode(fault: string): string {
  if (/Cpu|FeatureRequirements|EVC/i.test(fault)) return 'cpu';
  if (/Datastore|Disk|Storage|FileAccess/i.test(fault)) return 'datastore';
  if (/Vmotion(Interface|NotSupported)|VMotionInterface/i.test(fault)) return 'migration-network';
  if (/Network|Portgroup|Nic/i.test(fault)) return 'network';
  if (/Device|Backing|Cdrom|Floppy|Serial|Parallel|Usb/i.test(fault)) return 'device';
  if (/Affinity/i.test(fault)) return 'affinity';
  if (/Memory|Insufficient/i.test(fault)) return 'capacity';
  return 'vsphere';
}
