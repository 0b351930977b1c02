/**
 * The simulated lab adapter. State lives in Redis (one JSON document per host) so every Ferry
 * process, web or worker, sees one lab; mutations are optimistic WATCH/MULTI transactions.
 * Latency and faults are configurable per host, and can be injected at run time
 * (src/adapters/lab/control.ts) for tests, benchmarks and demos.
 */
import type { Redis } from 'ioredis';
import type { AdapterContext } from '../registry.js';
import {
  AdapterError,
  type Capabilities,
  type CallOptions,
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
import { buildInventory } from '../../config/load.js';
import { OptimisticTx, TxConflictError } from '../../redis-tx.js';
import { confirmed, streamOf, UnconfirmedWriteError } from '../../redis-confirm.js';
import { randomUUID } from 'node:crypto';
import { generateFleet, generateHost, LAZY_FLEET_MIN_HOSTS, type LabHostState } from './fleet.js';
import { labKeys, parseFaults, type LabFault } from './control.js';

const CAPABILITIES: Capabilities = {
  liveMigration: true,
  storageMigration: true,
  coldMigration: true,
  maintenance: 'native',
  npiv: true,
  removeVirtualPort: true,
  nativeChecks: false,
  migrationCancel: true,
  hostCommands: true,
};

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('aborted'));
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new Error('aborted'));
      },
      { once: true },
    );
  });
}

export class LabAdapter implements HypervisorAdapter {
  readonly kind = 'lab' as const;
  readonly capabilities = CAPABILITIES;
  private readonly redis: Redis;
  private readonly keys: ReturnType<typeof labKeys>;
  private ready: Promise<void> | undefined;
  /** One dedicated connection for the lab's optimistic transactions (closed in close()). */
  private readonly tx = new OptimisticTx(() => this.redis.duplicate());

  private readonly mine: Set<string>;
  /** Large fleets: host -> [cluster, cluster index, index in the whole lab, index in its cluster]; hosts made on first use. */
  private lazy: Map<string, [string, number, number, number]> | undefined;

  constructor(private readonly ctx: AdapterContext) {
    this.redis = ctx.redis;
    this.keys = labKeys(ctx.prefix);
    this.mine = new Set(ctx.hosts);
  }

  private labClusters(): Record<string, string[]> {
    const inv = buildInventory(this.ctx.config, 'lab');
    const clusters: Record<string, string[]> = {};
    for (const [name, c] of Object.entries(this.ctx.config.clusters)) if (c.adapter === 'lab') clusters[name] = inv.clusters[name] ?? [];
    return clusters;
  }

  hostNames(): string[] {
    return this.ctx.hosts;
  }

  /** Seed the whole lab once (all clusters, so cross-cluster ports are consistent); idempotent across processes. */
  private ensureSeeded(): Promise<void> {
    this.ready ??= (async () => {
      const clusters = this.labClusters();
      const total = Object.values(clusters).reduce((n, hs) => n + hs.length, 0);
      if (total >= LAZY_FLEET_MIN_HOSTS) {
        const at = new Map<string, [string, number, number, number]>();
        let i = 0;
        for (const [ci, [name, hosts]] of Object.entries(clusters).entries()) hosts.forEach((h, hi) => at.set(h, [name, ci, ++i, hi]));
        this.lazy = at;
      }
      if (await this.redis.exists(this.keys.seeded)) return;
      const multi = this.redis.multi();
      if (!this.lazy) {
        // Hosts per lab cluster, in configuration order (all clusters, so cross-cluster ports are consistent).
        const fleet = generateFleet(this.ctx.config.lab.seed, clusters);
        for (const [host, state] of fleet) multi.set(this.keys.host(host), JSON.stringify(state), 'NX');
      }
      const faults = this.ctx.config.lab.faults;
      if (Object.keys(faults).length) multi.hset(this.keys.faults, faults);
      multi.set(this.keys.seeded, String(this.ctx.config.lab.seed), 'NX');
      await multi.exec();
    })();
    return this.ready;
  }

  private async faults(target: string): Promise<LabFault[]> {
    const spec = await this.redis.hget(this.keys.faults, target);
    return spec ? parseFaults(spec) : [];
  }

  /** Latency plus host-level faults for one call. */
  private async call(host: string, op: string, opts?: CallOptions): Promise<void> {
    await this.ensureSeeded();
    if (!this.mine.has(host)) throw new AdapterError(host, op, `${host} is not a host of lab cluster ${this.ctx.cluster}`);
    const faults = await this.faults(host);
    let latency = this.ctx.config.lab.latencyMs;
    for (const f of faults) {
      if (f.kind === 'slow') latency = f.ms;
    }
    await sleep(latency, opts?.signal);
    for (const f of faults) {
      if (f.kind === 'unreachable') throw new AdapterError(host, op, `${host} did not answer (connection timed out)`, { retryable: true, code: 'unreachable' });
      if (f.kind === 'fail' && (f.op === op || f.op === '*') && (await this.fires(host, f))) {
        throw new AdapterError(host, op, `${host}: ${op} failed (injected fault)`, { retryable: false, code: 'injected' });
      }
    }
  }

  /**
   * Whether a fault acts on this call: always; once (then it clears); or only on its n-th
   * call, counted in Redis so every process counts the same calls (then it clears).
   */
  private async fires(target: string, f: { once: boolean; nth?: number; raw: string }): Promise<boolean> {
    if (f.nth !== undefined) {
      const field = `${target}|${f.raw}`;
      const n = await this.redis.hincrby(this.keys.calls, field, 1);
      if (n < f.nth) return false;
      await this.redis.hdel(this.keys.calls, field);
      await this.consumeFault(target, f.raw);
      return n === f.nth;
    }
    if (f.once) await this.consumeFault(target, f.raw);
    return true;
  }

  private async consumeFault(target: string, raw: string): Promise<void> {
    const spec = await this.redis.hget(this.keys.faults, target);
    if (!spec) return;
    const rest = spec
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s && s !== raw);
    if (rest.length) await this.redis.hset(this.keys.faults, target, rest.join(','));
    else await this.redis.hdel(this.keys.faults, target);
  }

  private async read(host: string): Promise<LabHostState> {
    const raw = await this.redis.get(this.keys.host(host));
    if (raw) return JSON.parse(raw) as LabHostState;
    const made = this.make(host);
    if (!made) throw new AdapterError(host, 'read', `${host} has no lab state`);
    // First use of a host of a large fleet: store it (another process may have just done so).
    if (await this.redis.set(this.keys.host(host), JSON.stringify(made), 'NX')) return made;
    return JSON.parse((await this.redis.get(this.keys.host(host)))!) as LabHostState;
  }

  /** A large fleet's host as first made, or null (small fleets are seeded whole). */
  private make(host: string): LabHostState | null {
    const at = this.lazy?.get(host);
    if (!at) return null;
    return generateHost(this.ctx.config.lab.seed, at[1], at[0], host, at[2], at[3]);
  }

  /**
   * Optimistic transaction over several host documents. With Sentinel the write is confirmed
   * on the replica (redis-confirm.ts); unconfirmed, it is applied again on whatever primary
   * the connection reaches next, unless that one already has it (its id is in `applied`).
   */
  private async mutate<T>(hosts: string[], fn: (states: Map<string, LabHostState>) => T): Promise<T> {
    const keys = hosts.map((h) => this.keys.host(h));
    if (this.lazy) for (const h of hosts) await this.read(h);
    const id = randomUUID();
    let first: { result: T } | undefined;
    let wroteOn: unknown;
    const limitMs = Number(process.env.FERRY_REDIS_CONFIRM_MS ?? 120_000);
    const deadline = Date.now() + limitMs;
    try {
      for (;;) {
        const out = await this.tx.run<T>(
          async (conn) => {
            await conn.watch(...keys);
            const raws = await conn.mget(...keys);
            const states = new Map<string, LabHostState>();
            hosts.forEach((h, i) => {
              const raw = raws[i];
              if (!raw) throw new AdapterError(h, 'mutate', `${h} has no lab state`);
              states.set(h, JSON.parse(raw) as LabHostState);
            });
            const before = first;
            if (before && [...states.values()].every((s) => s.applied?.includes(id))) {
              wroteOn = streamOf(conn);
              return { done: before.result };
            }
            const result = fn(states);
            first ??= { result };
            wroteOn = streamOf(conn);
            const multi = conn.multi();
            for (const [h, s] of states) {
              s.applied = [...(s.applied ?? []).slice(-15), id];
              multi.set(this.keys.host(h), JSON.stringify(s));
            }
            return { multi, result };
          },
          50,
          (conn) => confirmed(conn, wroteOn),
        );
        if (out.confirmed) return out.result;
        if (Date.now() > deadline) throw new UnconfirmedWriteError(`the lab's change to ${hosts.join(', ')}`, limitMs);
        await sleep(200);
      }
    } catch (e) {
      if (e instanceof TxConflictError) throw new AdapterError(hosts.join(','), 'mutate', `lab state kept changing under us; gave up after ${e.attempts} attempts`, { retryable: true });
      throw e;
    }
  }

  async describeHost(host: string, opts?: CallOptions): Promise<HostFacts> {
    await this.call(host, 'describe', opts);
    const s = await this.read(host);
    return { ...s.facts, memoryUsedMiB: s.vms.reduce((a, v) => a + v.memoryMiB, 0) };
  }

  async listVms(host: string, opts?: CallOptions): Promise<VmFacts[]> {
    await this.call(host, 'vms', opts);
    return (await this.read(host)).vms;
  }

  async findVm(name: string, opts?: CallOptions): Promise<VmFacts | null> {
    await this.ensureSeeded();
    await sleep(this.ctx.config.lab.latencyMs, opts?.signal);
    const raws = await this.redis.mget(...this.ctx.hosts.map((h) => this.keys.host(h)));
    for (const [i, raw] of raws.entries()) {
      const state = raw ? (JSON.parse(raw) as LabHostState) : this.lazy ? await this.read(this.ctx.hosts[i]!) : null;
      const vm = state?.vms.find((v) => v.name === name);
      if (vm) return vm;
    }
    return null;
  }

  async enterMaintenance(host: string, opts?: CallOptions): Promise<void> {
    await this.call(host, 'maintenance', opts);
    await this.mutate([host], (s) => {
      s.get(host)!.facts.maintenance = true;
    });
  }

  async exitMaintenance(host: string, opts?: CallOptions): Promise<void> {
    await this.call(host, 'maintenance', opts);
    await this.mutate([host], (s) => {
      s.get(host)!.facts.maintenance = false;
    });
  }

  /** Save (or resume) a VM in place; fail:save on the host makes either fail. */
  private async setPower(host: string, vm: string, from: VmFacts['power'], to: VmFacts['power'], opts?: CallOptions): Promise<void> {
    await this.call(host, 'save', opts);
    await this.mutate([host], (s) => {
      const v = s.get(host)!.vms.find((x) => x.name === vm);
      if (!v) throw new AdapterError(host, 'save', `${vm} is not on ${host}`, { code: 'not-found' });
      if (v.power === to) return;
      if (v.power !== from) throw new AdapterError(host, 'save', `${vm} is ${v.power}, not ${from}`, { code: 'wrong-state' });
      v.power = to;
    });
  }

  async saveVm(host: string, vm: string, opts?: CallOptions): Promise<void> {
    await this.setPower(host, vm, 'running', 'saved', opts);
  }

  async resumeVm(host: string, vm: string, opts?: CallOptions): Promise<void> {
    await this.setPower(host, vm, 'saved', 'running', opts);
  }

  async migrateVm(req: MigrateRequest, onProgress?: (p: MigrateProgress) => void, opts?: CallOptions): Promise<MigrateResult> {
    const started = Date.now();
    await this.call(req.source, 'migrate', opts);
    if (!this.ctx.hosts.includes(req.target)) {
      throw new AdapterError(req.source, 'migrate', `${req.target} is not in lab cluster ${this.ctx.cluster}; the lab migrates within a cluster`);
    }
    const targetFaults = await this.faults(req.target);
    if (targetFaults.some((f) => f.kind === 'unreachable')) {
      throw new AdapterError(req.target, 'migrate', `${req.target} did not answer (connection timed out)`, { retryable: true, code: 'unreachable' });
    }
    // Validate against current state before "copying memory".
    const before = await this.read(req.source);
    const vm = before.vms.find((v) => v.name === req.vm);
    if (!vm) throw new AdapterError(req.source, 'migrate', `${req.vm} is not on ${req.source}`, { code: 'not-found' });
    const target = await this.read(req.target);
    if (target.facts.maintenance) throw new AdapterError(req.target, 'migrate', `${req.target} is in maintenance mode and accepts no VMs`, { code: 'maintenance' });
    if (req.mode === 'live' && vm.power !== 'running') throw new AdapterError(req.source, 'migrate', `${req.vm} is ${vm.power}; live migration needs a running VM`);
    if (req.mode === 'live' && target.facts.cpu.vendor !== before.facts.cpu.vendor) {
      throw new AdapterError(req.source, 'migrate', `${req.vm}: the processor of ${req.target} (${target.facts.cpu.vendor}) is not compatible with ${req.source} (${before.facts.cpu.vendor})`);
    }
    const used = target.vms.reduce((a, v) => a + v.memoryMiB, 0);
    if (used + vm.memoryMiB > target.facts.memoryMiB) throw new AdapterError(req.target, 'migrate', `${req.target} has not enough memory for ${req.vm}`);

    const vmFaults = await this.faults(`vm:${req.vm}`);
    const total = req.mode === 'cold' ? Math.max(1, Math.floor(this.ctx.config.lab.migrationMs / 3)) : this.ctx.config.lab.migrationMs;
    const steps = 5;
    // NPIV (seed 002, Prepare): the target gets the VM's secondary vHBA (its other address set)
    // before memory is copied; if the migration fails it is destroyed again and the source's
    // primary, never touched, keeps the VM on its storage.
    const secondaries =
      vm.power === 'running'
        ? vm.vfc.map((a, i) => {
            const active = before.vports.find((p) => a.wwpns.includes(p.wwpn))?.wwpn;
            const next = a.wwpns.find((w) => w !== active) ?? a.wwpns[0]!;
            const hba = target.facts.hbas.find((h) => h.fabric === a.fabric) ?? target.facts.hbas[i % target.facts.hbas.length]!;
            return { host: req.target, hbaWwpn: hba.wwpn, wwpn: next, wwnn: a.wwnn, fabric: a.fabric, fcId: 0x40000 + i };
          })
        : [];
    const dropSecondaries = async (): Promise<void> => {
      if (!secondaries.length) return;
      await this.mutate([req.target], (s) => {
        const dst = s.get(req.target)!;
        dst.vports = dst.vports.filter((p) => !secondaries.some((q) => q.wwpn === p.wwpn));
      });
    };
    if (secondaries.length) {
      await this.mutate([req.target], (s) => {
        const dst = s.get(req.target)!;
        dst.vports = [...dst.vports.filter((p) => !secondaries.some((q) => q.wwpn === p.wwpn)), ...secondaries];
      });
    }
    try {
      await this.copy(req, vmFaults, total, steps, onProgress, opts);
    } catch (e) {
      await dropSecondaries();
      throw e;
    }
    const result = await this.switchOver(req, started);
    const after = vmFaults.find((f) => f.kind === 'migrate-fail-after');
    if (after && (await this.fires(`vm:${req.vm}`, after))) {
      throw new AdapterError(req.source, 'migrate', `migration of ${req.vm} to ${req.target} did not report completion: the operation timed out (injected fault)`, { code: 'injected' });
    }
    return result;
  }

  /** The memory copy: progress in steps, injected failure at 60%, cancel via the signal. */
  private async copy(
    req: MigrateRequest,
    vmFaults: LabFault[],
    total: number,
    steps: number,
    onProgress: ((p: MigrateProgress) => void) | undefined,
    opts: CallOptions | undefined,
  ): Promise<void> {
    for (let i = 1; i <= steps; i++) {
      await sleep(total / steps, opts?.signal).catch(() => {
        throw new AdapterError(req.source, 'migrate', `migration of ${req.vm} was cancelled`, { code: 'cancelled' });
      });
      const failAt = vmFaults.find((f) => f.kind === 'migrate-fail');
      if (failAt && i === 3 && (await this.fires(`vm:${req.vm}`, failAt))) {
        throw new AdapterError(req.source, 'migrate', `migration of ${req.vm} to ${req.target} failed at 60%: insufficient system resources exist to complete the requested service (0x800705AA) (injected fault)`, {
          retryable: true,
          code: 'injected',
        });
      }
      onProgress?.({ percent: Math.round((i / steps) * 100), phase: i < steps ? 'copying memory' : 'switching over' });
    }
  }

  /** Finish: the VM runs on the target; the source's primary vHBA goes away unless the host lingers (seed 000). */
  private async switchOver(req: MigrateRequest, started: number): Promise<MigrateResult> {
    const linger = (await this.faults(req.source)).some((f) => f.kind === 'linger');
    const lingering = await this.mutate([req.source, req.target], (s) => {
      const src = s.get(req.source)!;
      const dst = s.get(req.target)!;
      const idx = src.vms.findIndex((v) => v.name === req.vm);
      if (idx < 0) throw new AdapterError(req.source, 'migrate', `${req.vm} left ${req.source} during the migration`);
      const [moved] = src.vms.splice(idx, 1);
      moved!.host = req.target;
      if (req.datastore) {
        const ds = dst.facts.datastores.find((d) => d.name === req.datastore);
        if (!ds) throw new AdapterError(req.target, 'migrate', `${req.target} has no datastore ${req.datastore}`);
        moved!.disks = moved!.disks.map((d) => ({ ...d, datastore: req.datastore!, path: d.path.replace(/^[^/]+/, req.datastore!) }));
      }
      dst.vms.push(moved!);
      dst.arrivals = { ...dst.arrivals, [req.vm]: (dst.arrivals?.[req.vm] ?? 0) + 1 };
      // NPIV: the VM comes up on the target with its other address set; the source's ports
      // go away, unless the source is set to "linger" (seed 000's failure).
      const wwpns = new Set(moved!.vfc.flatMap((a) => a.wwpns));
      const srcPorts = src.vports.filter((p) => wwpns.has(p.wwpn));
      if (!linger) src.vports = src.vports.filter((p) => !wwpns.has(p.wwpn));
      if (moved!.power === 'running') {
        for (const [i, a] of moved!.vfc.entries()) {
          const active = srcPorts.find((p) => a.wwpns.includes(p.wwpn))?.wwpn;
          const next = a.wwpns.find((w) => w !== active) ?? a.wwpns[0]!;
          const hba = dst.facts.hbas.find((h) => h.fabric === a.fabric) ?? dst.facts.hbas[i % dst.facts.hbas.length]!;
          dst.vports = dst.vports.filter((p) => p.wwpn !== next);
          dst.vports.push({ host: req.target, hbaWwpn: hba.wwpn, wwpn: next, wwnn: a.wwnn, fabric: a.fabric, fcId: 0x40000 + i });
        }
      }
      return linger ? srcPorts : [];
    });
    return { vm: req.vm, host: req.target, datastore: req.datastore, durationMs: Date.now() - started, lingeringPorts: lingering };
  }

  async npivInventory(host: string, opts?: CallOptions): Promise<NpivInventory> {
    await this.call(host, 'npiv', opts);
    const s = await this.read(host);
    const endpointOwners: Record<string, string> = {};
    const endpoints: string[] = s.facts.hbas.map((h) => h.wwpn); // Msvm_FcEndpoint lists physical ports too
    for (const vm of s.vms) {
      if (vm.power !== 'running') continue;
      for (const a of vm.vfc) {
        const active = a.wwpns.find((w) => s.vports.some((p) => p.wwpn === w));
        if (active) {
          endpoints.push(active);
          endpointOwners[active] = vm.name;
        }
      }
    }
    return { host, hbas: s.facts.hbas, virtualPorts: s.vports, endpointWwpns: endpoints, endpointOwners };
  }

  async removeVirtualPort(port: VirtualPort, opts?: CallOptions): Promise<void> {
    await this.call(port.host, 'remove', opts);
    await this.mutate([port.host], (s) => {
      const st = s.get(port.host)!;
      const before = st.vports.length;
      st.vports = st.vports.filter((p) => p.wwpn !== port.wwpn);
      if (st.vports.length === before) throw new AdapterError(port.host, 'remove', `${port.host} has no virtual port ${port.wwpn}`, { code: 'not-found' });
    });
  }

  async checkMigration(_vm: string, _target: string): Promise<CheckFinding[]> {
    return [];
  }

  /**
   * Simulated: nothing runs. Takes three lab latencies; `fail:hook` (or `fail-once:hook`) on the
   * host makes the command exit 1 with a message on stderr, `unreachable` throws like any call.
   */
  async runCommand(host: string, command: string, opts?: CallOptions & { timeoutMs?: number }): Promise<CommandResult> {
    await this.ensureSeeded();
    if (!this.ctx.hosts.includes(host)) throw new AdapterError(host, 'runCommand', `${host} is not a host of lab cluster ${this.ctx.cluster}`);
    const started = Date.now();
    const faults = await this.faults(host);
    const slow = faults.find((f): f is Extract<LabFault, { kind: 'slow' }> => f.kind === 'slow');
    const takes = 3 * (slow ? slow.ms : this.ctx.config.lab.latencyMs);
    if (opts?.timeoutMs !== undefined && takes > opts.timeoutMs) {
      await sleep(opts.timeoutMs, opts.signal).catch(() => undefined);
      throw new AdapterError(host, 'runCommand', `the command on ${host} did not finish within ${opts.timeoutMs} ms`, { code: 'timeout' });
    }
    await sleep(takes, opts?.signal).catch(() => {
      throw new AdapterError(host, 'runCommand', `the command on ${host} was cancelled`, { code: 'cancelled' });
    });
    if (faults.some((f) => f.kind === 'unreachable')) throw new AdapterError(host, 'runCommand', `${host} did not answer (connection timed out)`, { retryable: true, code: 'unreachable' });
    const out = `[lab ${host}] $ ${command}\n[lab ${host}] nothing to do: the lab only pretends\n`;
    const fail = faults.find((f) => f.kind === 'fail' && (f.op === 'hook' || f.op === '*'));
    if (fail?.kind === 'fail' && (await this.fires(host, fail))) {
      return { stdout: out, stderr: `[lab ${host}] error: the patch failed (injected fault ${fail.raw})\n`, exitCode: 1, durationMs: Date.now() - started };
    }
    return { stdout: out, stderr: '', exitCode: 0, durationMs: Date.now() - started };
  }

  async close(): Promise<void> {
    this.tx.close();
  }
}
