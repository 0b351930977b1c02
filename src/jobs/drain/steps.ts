/**
 * Steps shared by drain, restore and migrate. Every step re-reads real state before acting, so
 * a job re-run after a worker died (BullMQ stalled-job recovery) skips what already happened:
 * a VM already on its planned host is not migrated again, a host already in maintenance is not
 * entered again. Every mutating adapter call is audited with its outcome.
 */
import { REMOVE_PORTS_ACTION } from '../workflows/find-stale-ports.js';
import { AdapterError, hostFailureSentence, type HostFacts, type MigrateProgress, type VirtualPort, type VmFacts } from '../../adapters/types.js';
import { audit } from '../../audit/audit.js';
import { errorText } from '../retry.js';
import { assertFence, currentFence, fencedEval, isFencedOut } from '../fence.js';
import { runScript } from '../../redis-scripts.js';
import { refreshCard } from '../cards.js';
import { lockedSentence, type LockKeeper } from './locks.js';
import { context, message, plural, section, type Message } from '../../chat/messages.js';
import { compressNames } from '../../core/selectors.js';
import type { MoveSpec } from '../../core/prechecks.js';
import type { Deps } from '../context.js';
import type { Operation } from '../operations.js';
import { KIND as SWEEP_KIND, type HostSweepResult, type SweepParams } from '../workflows/find-stale-ports.js';

// ---------------------------------------------------------------------------------------
// Per-VM state of an operation (hash op:<id>:vms), what a resumed job reads first.

export type VmStep = 'pending' | 'moving' | 'moved' | 'failed' | 'skipped' | 'returning' | 'returned' | 'return-failed';

export interface VmState {
  name: string;
  id: string;
  state: VmStep;
  target?: string;
  /** Where it was when the step ran (restore: the host it came back from). */
  from?: string;
  attempts?: number;
  error?: string;
  reason?: string;
  durationMs?: number;
  at?: number;
}

export async function vmStates(deps: Deps, opId: number): Promise<Record<string, VmState>> {
  const all = await deps.rt.redis.hgetall(deps.ops.keyOf(opId, 'vms'));
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as VmState]));
}

/** Fenced: a run that lost its job (fence.ts) does not write a VM's state. */
export async function setVmState(deps: Deps, opId: number, s: VmState): Promise<void> {
  await fencedEval(deps.rt.redis, 'fenced-hset', [deps.ops.keyOf(opId, 'vms')], [s.name, JSON.stringify({ ...s, at: deps.rt.clock.now() })]);
}

// ---------------------------------------------------------------------------------------
// In-flight migrations (hash op:<id>:inflight, VM -> "<run token>|<beat>"). A run that lost its
// job may still have a migration in flight on the platform; the run that took over must not
// start the same VM again meanwhile. The owner's beat advances while its call runs; a marker
// whose beat stops advancing belongs to a run that died (a killed worker's call died with it).

export const INFLIGHT_BEAT_MS = Number(process.env.FERRY_INFLIGHT_BEAT_MS ?? 1000);
const INFLIGHT_STALE_BEATS = 5;

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Hold `vm` for this run while `fn` runs. When another run holds it, wait until that run lets
 * go (its call ended) or its beat stops advancing (it died), then claim it.
 */
export async function inFlight<T>(deps: Deps, opId: number, vm: string, fn: () => Promise<T>): Promise<T> {
  const key = deps.ops.keyOf(opId, 'inflight');
  const token = currentFence()?.token ?? `local-${process.pid}-${Math.random().toString(36).slice(2)}`;
  let stale = '';
  for (;;) {
    const got = (await fencedEval(deps.rt.redis, 'inflight-claim', [key], [vm, token, stale])) as string;
    if (got === 'ok') break;
    // Another run has it: watch its beat.
    let seen = got;
    let since = Date.now();
    for (;;) {
      await sleepMs(INFLIGHT_BEAT_MS);
      const now = await deps.rt.redis.hget(key, vm);
      if (now !== seen) {
        if (!now) break;
        seen = now;
        since = Date.now();
        continue;
      }
      if (Date.now() - since >= INFLIGHT_BEAT_MS * INFLIGHT_STALE_BEATS) {
        stale = seen;
        break;
      }
    }
    await assertFence(deps.rt.redis);
  }
  let beat = 0;
  const timer = setInterval(() => void runScript(deps.rt.redis, 'inflight-beat', [key], [vm, token, String(++beat)]).catch(() => undefined), INFLIGHT_BEAT_MS);
  timer.unref();
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    await runScript(deps.rt.redis, 'inflight-beat', [key], [vm, token, 'release']).catch(() => undefined);
  }
}

/** Migration progress per VM (percent), for the card. */
export async function setPercent(deps: Deps, opId: number, vm: string, pct: number | null): Promise<void> {
  const k = deps.ops.keyOf(opId, 'pct');
  if (pct === null) await deps.rt.redis.hdel(k, vm);
  else await deps.rt.redis.hset(k, vm, String(pct));
}

export async function percents(deps: Deps, opId: number): Promise<Record<string, number>> {
  const all = await deps.rt.redis.hgetall(deps.ops.keyOf(opId, 'pct'));
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Number(v)]));
}

// ---------------------------------------------------------------------------------------
// Reading real state

/** Host facts of every host of a cluster that answers (unreachable ones are left out, with their error). */
export async function clusterFacts(
  deps: Deps,
  cluster: string,
): Promise<{ facts: HostFacts[]; vms: Record<string, VmFacts[]>; errors: Record<string, string>; failures: Record<string, string> }> {
  const hosts = deps.rt.inventory.clusters[cluster] ?? [];
  const adapter = deps.rt.adapters.forCluster(cluster);
  const facts: HostFacts[] = [];
  const vms: Record<string, VmFacts[]> = {};
  const errors: Record<string, string> = {};
  /** Per failed host, the sentence users read (hostFailureSentence: not every failure is silence). */
  const failures: Record<string, string> = {};
  await Promise.all(
    hosts.map(async (h) => {
      try {
        const [f, v] = await Promise.all([adapter.describeHost(h), adapter.listVms(h)]);
        facts.push(f);
        vms[h] = v;
      } catch (e) {
        errors[h] = errorText(e);
        failures[h] = hostFailureSentence(h, e);
      }
    }),
  );
  facts.sort((a, b) => (a.name < b.name ? -1 : 1));
  return { facts, vms, errors, failures };
}

/**
 * Where is this VM now? By name first; if the name is gone (or now names another VM), by its
 * stable id over the cluster's hosts, which catches renames.
 */
export async function locateVm(deps: Deps, cluster: string, name: string, id: string): Promise<{ vm: VmFacts; renamed: boolean } | null> {
  const adapter = deps.rt.adapters.forCluster(cluster);
  const byName = await adapter.findVm(name);
  if (byName && byName.id === id) return { vm: byName, renamed: false };
  for (const h of deps.rt.inventory.clusters[cluster] ?? []) {
    const vms = await adapter.listVms(h).catch(() => [] as VmFacts[]);
    const hit = vms.find((v) => v.id === id);
    if (hit) return { vm: hit, renamed: hit.name !== name };
  }
  return null;
}

/**
 * Before a summary, the hosts' real placement wins over the recorded per-VM states (a Redis
 * failover can lose a state write, or keep one whose move it lost): a VM found on its planned
 * target is recorded moved, one recorded moved but found elsewhere is recorded failed with where
 * it is. Only VMs whose lookup answers are touched; the card then counts what is true.
 */
export async function reconcileMoves(deps: Deps, op: Operation, cluster: string, moves: readonly { vm: string; vmId: string; target: string }[], source: string): Promise<void> {
  const states = await vmStates(deps, op.id);
  const check = moves.filter((m) => ['moved', 'moving', 'pending', 'failed', undefined].includes(states[m.vm]?.state));
  if (!check.length) return;
  // One listing per host of the cluster, in parallel: where each VM is, by its stable id.
  const adapter = deps.rt.adapters.forCluster(cluster);
  const hosts = deps.rt.inventory.clusters[cluster] ?? [];
  const where = new Map<string, string>();
  let allAnswered = true;
  await Promise.all(
    hosts.map(async (h) => {
      try {
        for (const v of await adapter.listVms(h)) where.set(v.id, h);
      } catch {
        allAnswered = false;
      }
    }),
  );
  for (const m of check) {
    const s = states[m.vm];
    const on = where.get(m.vmId);
    if (on === m.target && s?.state !== 'moved') {
      deps.rt.log.warn({ opId: op.id, vm: m.vm, recorded: s?.state ?? 'none' }, 'state record behind the hosts: the VM is on its target');
      await setVmState(deps, op.id, { ...s, name: m.vm, id: m.vmId, state: 'moved', target: m.target, from: source, reason: 'found on its target when checked before the summary' });
    } else if (s?.state === 'moved' && on !== m.target && (on !== undefined || allAnswered)) {
      deps.rt.log.error({ opId: op.id, vm: m.vm, on: on ?? null }, 'recorded moved, but the VM is not on its target');
      await setVmState(deps, op.id, { ...s, state: 'failed', error: on ? `recorded as moved, but found on ${on}, not ${m.target}, when checked before the summary` : `recorded as moved, but not found in ${cluster} when checked before the summary` });
    }
  }
}

// ---------------------------------------------------------------------------------------
// Mutations, audited

export async function auditedCall<T>(deps: Deps, op: Operation, action: string, targets: string[], fn: () => Promise<T>, detail?: string): Promise<T> {
  // A run that lost its job stops before it acts (fence.ts).
  await assertFence(deps.rt.redis);
  // The intent first: a call cut short (worker killed mid-migration) still leaves its trace.
  await audit(deps.rt, { actor: op.requester, kind: 'adapter', action, targets, opId: op.id, outcome: 'started', detail });
  try {
    const out = await fn();
    await audit(deps.rt, { actor: op.requester, kind: 'adapter', action, targets, opId: op.id, outcome: 'ok', detail }).catch(() => undefined);
    return out;
  } catch (e) {
    await audit(deps.rt, { actor: op.requester, kind: 'adapter', action, targets, opId: op.id, outcome: 'failed', detail: errorText(e).slice(0, 500) }).catch(() => undefined);
    throw e;
  }
}

export async function ensureMaintenance(deps: Deps, op: Operation, host: string, on: boolean): Promise<boolean> {
  const adapter = deps.rt.adapters.forHost(host);
  const facts = await adapter.describeHost(host);
  if (facts.maintenance === on) return false;
  await auditedCall(deps, op, on ? 'enterMaintenance' : 'exitMaintenance', [host], () => (on ? adapter.enterMaintenance(host) : adapter.exitMaintenance(host)));
  return true;
}

export type MoveRequest = MoveSpec;

export type MoveOutcome =
  | { ok: true; already: boolean; durationMs: number; attempts: number; lingering: VirtualPort[] }
  | { ok: false; error: string; attempts: number; code?: string; stayedOn?: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Adapter error codes that mean the VM reached its target and the check after the move failed. */
const LANDED_BUT = new Set(['landed-not-running', 'landed-not-persistent', 'source-still-defined']);

/**
 * Move one VM, with retries per policy (limits.migrationRetries); before each attempt the VM
 * is looked up again, so one already on the target is not moved twice. After a move of a VM
 * with virtual FC the source is checked for its WWPNs left behind (seed 000's failure).
 */
export async function moveVm(
  deps: Deps,
  op: Operation,
  req: MoveRequest,
  opts: {
    retries?: number;
    onProgress?: (p: MigrateProgress) => void;
    cluster: string;
    signal?: AbortSignal;
    /** The operation's host locks: an attempt (a retry too) starts only while they are still its own. */
    locks?: LockKeeper;
  },
): Promise<MoveOutcome> {
  const adapter = deps.rt.adapters.forHost(req.source);
  const retries = opts.retries ?? deps.rt.config.limits.migrationRetries;
  const signal = opts.signal;
  let last: unknown;
  let attempts = 0;
  for (let i = 0; i <= retries; i++) {
    const step = await inFlight(deps, op.id, req.vmId, () => moveOnce(i));
    if (step.done) return step.done;
    if (step.stop) break;
    await sleep(Math.min(2000, 200 * 2 ** i));
  }
  return { ok: false, error: errorText(last), attempts, ...(last instanceof AdapterError && last.code ? { code: last.code } : {}) };

  /** One attempt, with the VM held for this run: looked up again, then moved. */
  async function moveOnce(i: number): Promise<{ done?: MoveOutcome; stop?: boolean }> {
    if (signal?.aborted) return { done: { ok: false, error: `cancelled before ${req.vm} started to move`, attempts, code: 'cancelled' } };
    const where = await locateVm(deps, opts.cluster, req.vm, req.vmId);
    if (!where) return { done: { ok: false, error: `${req.vm} is no longer in ${opts.cluster}`, attempts, code: 'gone' } };
    if (where.vm.host === req.target && (!req.datastore || where.vm.disks.every((d) => d.datastore === req.datastore))) return { done: { ok: true, already: true, durationMs: 0, attempts, lingering: [] } };
    if (where.vm.host !== req.source) return { done: { ok: false, error: `${req.vm} is on ${where.vm.host} now, not ${req.source}`, attempts, code: 'moved-elsewhere' } };
    const lostTo = await opts.locks?.check();
    if (lostTo) return { done: { ok: false, error: lockedSentence(lostTo), attempts, code: 'lock-lost', stayedOn: where.vm.host } };
    attempts++;
    if (i > 0) await deps.outbox.post(op.conv, message(`Retrying ${req.vm} → ${req.target} (attempt ${i + 1} of ${retries + 1}).`));
    const t0 = Date.now();
    try {
      const res = await auditedCall(
        deps,
        op,
        'migrateVm',
        [req.vm, req.source, req.target],
        // The VM just located is handed over: the adapter need not read it again before it moves it.
        () => adapter.migrateVm({ vm: where.vm.name, source: req.source, target: req.target, mode: req.mode, seen: where.vm, ...(req.datastore ? { datastore: req.datastore } : {}) }, opts.onProgress, signal ? { signal } : {}),
        `${req.vm} ${req.source} -> ${req.target}${req.datastore ? ` datastore ${req.datastore}` : ''} (${req.mode})`,
      );
      deps.rt.metrics.migrationSeconds.labels(adapter.kind, 'ok').observe((Date.now() - t0) / 1000);
      const lingering = where.vm.vfc.length ? await lingeringPorts(deps, req.source, where.vm) : [];
      return { done: { ok: true, already: false, durationMs: res.durationMs || Date.now() - t0, attempts, lingering } };
    } catch (e) {
      deps.rt.metrics.migrationSeconds.labels(adapter.kind, 'failed').observe((Date.now() - t0) / 1000);
      if (isFencedOut(e)) throw e;
      last = e;
      if (signal?.aborted) {
        // The platform job was asked to stop (domjobabort, Msvm_MigrationJob cancel, CancelTask).
        // A cancel can lose the race with the switch-over: the hosts say where the VM is.
        const now = await locateVm(deps, opts.cluster, req.vm, req.vmId).catch(() => null);
        if (now?.vm.host === req.target) return { done: { ok: true, already: false, durationMs: 0, attempts, lingering: [] } };
        return { done: { ok: false, error: `cancelled while moving: ${errorText(e)}`, attempts, code: 'cancelled', ...(now ? { stayedOn: now.vm.host } : {}) } };
      }
      // The platform moved it, but the check after the move found something wrong: no retry, and
      // nobody may be told it stayed on its source.
      if (e instanceof AdapterError && e.code && LANDED_BUT.has(e.code)) return { done: { ok: false, error: errorText(e), attempts, code: e.code, stayedOn: req.target } };
      const retryable = e instanceof AdapterError ? e.retryable : false;
      return { stop: !retryable || i === retries };
    }
  }
}

/**
 * Watches an operation's cancel flag (`cancel <job>`, the Cancel button) while a step runs and
 * aborts the signal when it is set, so the adapter stops the platform's job at once instead of
 * after the step. Polls Redis; stop() ends the watch.
 */
export function watchCancel(deps: Deps, opId: number, everyMs = 500): { signal: AbortSignal; by(): string | null; stop(): void } {
  const ctl = new AbortController();
  let who: string | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      who = await deps.ops.cancelRequested(opId);
    } catch {
      /* Redis away for a moment: look again next tick */
    }
    if (who) {
      ctl.abort(new Error(`cancelled by ${who}`));
      return;
    }
    if (!stopped) timer = setTimeout(() => void tick(), everyMs);
  };
  void tick();
  return {
    signal: ctl.signal,
    by: () => who,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** The source's virtual ports that carry one of this VM's WWPNs after it left. */
export async function lingeringPorts(deps: Deps, source: string, vm: VmFacts): Promise<VirtualPort[]> {
  const wwpns = new Set(vm.vfc.flatMap((a) => a.wwpns));
  try {
    const inv = await deps.rt.adapters.forHost(source).npivInventory(source);
    return inv.virtualPorts.filter((p) => wwpns.has(p.wwpn));
  } catch (e) {
    deps.rt.log.warn({ source, vm: vm.name, err: e }, 'could not check the source for lingering ports');
    return [];
  }
}

/**
 * Report ports left behind in the thread, with the removal button. The check of the source is
 * recorded as a one-host stale-port sweep (an operation of kind find-stale-ports with its
 * result), so the button hands the removal flow a sweep id exactly like `find stale ports`
 * does; the removal job re-checks every port before removing it.
 */
export async function reportLingering(deps: Deps, op: Operation, vm: string, source: string, ports: VirtualPort[]): Promise<void> {
  if (!ports.length) return;
  const sweep = await deps.ops.create({
    kind: SWEEP_KIND,
    title: `find stale ports ${source} (after moving ${vm}, job ${op.id})`,
    requester: op.requester,
    conv: op.conv,
    hosts: [source],
    params: { parent: op.id } satisfies SweepParams,
  });
  const stale = ports.map((p) => ({ ...p, formerOwner: vm }));
  await deps.ops.setResult(sweep.id, source, { ok: true, stale, virtualPorts: stale.length } satisfies HostSweepResult);
  await deps.ops.incrMany(sweep.id, { done: 1, stale: stale.length });
  const now = deps.rt.clock.now();
  await deps.ops.patch(sweep.id, { status: 'succeeded', startedAt: now, finishedAt: now, summary: `${plural(stale.length, 'stale port')} left by ${vm}`, params: { parent: op.id, durationMs: 0 } satisfies SweepParams });
  await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: `lingering ports after moving ${vm}`, targets: [source, vm], opId: op.id, outcome: 'ok', detail: ports.map((p) => p.wwpn).join(' ') }).catch(() => undefined);
  await deps.outbox.post(op.conv, lingeringMessage(op.id, sweep.id, vm, source, ports));
}

export function lingeringMessage(opId: number, sweepId: number, vm: string, source: string, ports: VirtualPort[]): Message {
  const text = `${vm} left ${plural(ports.length, 'virtual Fibre Channel port')} behind on ${source}: ${ports.map((p) => p.wwpn).join(', ')}. Left there, they block ${vm}'s next live migration back to ${source}.`;
  return message(
    text,
    section(`:warning: ${text}`),
    { type: 'table', columns: ['Host', 'WWPN', 'Fabric', 'HBA'], rows: ports.map((p) => [source, p.wwpn, p.fabric, p.hbaWwpn]) },
    context(`found after moving ${vm} · job ${opId} · recorded as sweep ${sweepId}`),
    {
      type: 'actions',
      buttons: [
        {
          action: REMOVE_PORTS_ACTION,
          label: `Remove ${plural(ports.length, 'lingering port')}…`,
          value: String(sweepId),
          style: 'danger',
          command: `remove stale ports ${source} ${ports.map((p) => p.wwpn).join(' ')}`,
        },
      ],
    },
  );
}

/** Progress callback that records the percent and asks for a (throttled) card refresh. */
export function progressReporter(deps: Deps, opId: number, vm: string): (p: MigrateProgress) => void {
  let last = -1;
  return (p) => {
    if (p.percent === last) return;
    last = p.percent;
    void setPercent(deps, opId, vm, p.percent)
      .then(() => refreshCard(deps, opId))
      .catch(() => undefined);
  };
}

export function namesLine(names: string[], max = 12): string {
  if (names.length <= max) return names.join(', ');
  return `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

export { compressNames };
