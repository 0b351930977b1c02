/**
 * drain <host> (seeds 001 and 004, SPEC "drain"), as a runbook of named, idempotent steps:
 *   plan      snapshot the host's VMs (power, HA) and the cluster; prechecks with a verdict per
 *             VM; placement (capacity-aware, spread); the card shows it with Start / Cancel.
 *             `dry-run` stops here.
 *   ledger    the placement snapshot, stored in Redis before anything moves (restore reads it).
 *   maintain  the host enters maintenance (no new placements).
 *   migrate   live migrations at bounded concurrency, progress per VM on the card, retries per
 *             policy. Each VM is looked up before it moves: one already on its target is done.
 *   failure   rollback auto: move back what moved, leave maintenance. rollback hold: stop and
 *             ask in the thread (Roll back / Retry / Skip VM).
 *   summary   moved, skipped (and why), failed, duration.
 * A worker killed at any point leaves the job to BullMQ's stalled-job recovery; the re-run
 * reads the stage and the real state and carries on, and says in the thread that it resumed.
 */
import type { Job } from 'bullmq';
import type { VmFacts } from '../../adapters/types.js';
import { precheckDrain, renderDrainPrecheck } from '../../core/prechecks.js';
import { pMap } from '../../core/pmap.js';
import { formatDuration } from '../../core/duration.js';
import { mention } from '../../core/permissions.js';
import { audit } from '../../audit/audit.js';
import { context, message, plural, progressBar, section, type Block, type Button } from '../../chat/messages.js';
import type { Conversation, MessageRef } from '../../chat/conversation.js';
import type { CardRenderer, Workflow } from '../wiring.js';
import { ensureCard, refreshCard } from '../cards.js';
import { errorText } from '../retry.js';
import type { Deps } from '../context.js';
import { FINISHED, type Operation } from '../operations.js';
import { acquireLock, keepLocks, lockedSentence, refreshLock, releaseLock, type HostLock, type LockKeeper } from '../drain/locks.js';
import { awayFromHome, isOpen, readLedger, setLedgerStatus, writeLedger, type LedgerVm } from '../drain/ledger.js';
import { DRAIN_ACTIONS, decide, finishOp, requestStartApproval, stageOf, startBlocks, startNeeds, watchWaiting, type Controlled, type Decision } from '../drain/control.js';
import {
  auditedCall,
  clusterFacts,
  ensureMaintenance,
  locateVm,
  moveVm,
  watchCancel,
  namesLine,
  percents,
  progressReporter,
  reportLingering,
  setPercent,
  setVmState,
  vmStates,
  type VmState,
} from '../drain/steps.js';

export const KIND = 'drain';
/** A held drain keeps its host this long without a running job. */
const HOLD_LOCK_MS = 7 * 86_400_000;

export interface DrainRequest {
  host: string;
  dryRun: boolean;
  rollback: 'auto' | 'hold';
  parallel?: number;
  saveNonHa: boolean;
  coldMigrate: boolean;
}

export interface PlannedMove {
  vm: string;
  vmId: string;
  target: string;
  mode: 'live' | 'cold';
  memoryMiB: number;
}

export interface DrainPlan {
  ok: boolean;
  lines: string[];
  moves: PlannedMove[];
  stays: { vm: string; vmId: string; action: string; sentence: string }[];
  ledger: LedgerVm[];
  unreachable: Record<string, string>;
}

interface Params extends DrainRequest {
  cluster: string;
  stage?: string;
  round?: number;
  failed?: string[];
}

function params(op: Operation): Params {
  return op.params as unknown as Params;
}

async function readPlan(deps: Deps, opId: number): Promise<DrainPlan | null> {
  const raw = await deps.rt.redis.get(deps.rt.key('op', opId, 'plan'));
  return raw ? (JSON.parse(raw) as DrainPlan) : null;
}

function concurrencyFor(deps: Deps, p: Params): number {
  return p.parallel ?? deps.rt.config.clusters[p.cluster]?.migrationConcurrency ?? deps.rt.config.limits.migrationConcurrency;
}

/** Handler side: create the operation (the lock is taken by the caller for real drains) and queue the plan. */
export async function startDrain(
  deps: Deps,
  req: { conv: Conversation; echo?: MessageRef | null; requester: string; title: string; drain: DrainRequest; lock?: (opId: number) => Promise<boolean> },
): Promise<Operation | null> {
  const cluster = deps.rt.inventory.clusterOf[req.drain.host]!;
  const op = await deps.ops.create({
    kind: KIND,
    ...(req.echo ? { echoRef: req.echo } : {}),
    title: req.title,
    requester: req.requester,
    conv: req.conv,
    hosts: [req.drain.host],
    params: { ...req.drain, cluster, stage: 'planning', round: 0 },
  });
  if (req.lock && !(await req.lock(op.id))) return null;
  await ensureCard(deps, op.id);
  await deps.queues.ops.add('drain-plan', { opId: op.id }, { jobId: `op-${op.id}-plan`, attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
  return op;
}

// ---------------------------------------------------------------------------------------
// Step 1-3: snapshot, prechecks, plan

async function planStep(deps: Deps, job: Job): Promise<void> {
  const { opId } = job.data as { opId: number };
  let op = await deps.ops.get(opId);
  if (!op || stageOf(op) !== 'planning') return;
  const p = params(op);
  op = await deps.ops.patch(opId, { status: 'running', startedAt: op.startedAt ?? deps.rt.clock.now() });
  await refreshCard(deps, opId);

  const { facts, vms, errors } = await clusterFacts(deps, p.cluster);
  const host = facts.find((f) => f.name === p.host);
  if (!host) {
    const why = errors[p.host] ?? `${p.host} did not answer`;
    await refuse(deps, op, `${why.startsWith(p.host) ? why : `${p.host} did not answer (${why})`}; nothing was changed.`);
    return;
  }
  const snapshot = vms[p.host] ?? [];
  // A VM here only because another host's drain (not yet restored) moved it here belongs to that host.
  const away = await awayFromHome(deps.rt, deps.rt.inventory.clusters[p.cluster] ?? [], p.host);
  const homeOf = (v: VmFacts): { home: string; opId: number } | undefined => away.get(v.id);
  const pre = precheckDrain({
    host,
    vms: snapshot,
    clusterHosts: facts,
    vmsByHost: vms,
    maxInMaintenance: deps.rt.config.clusters[p.cluster]?.maxInMaintenance ?? 1,
    allowSaveNonHa: p.saveNonHa,
    coldMigratePoweredOff: p.coldMigrate,
  });
  // Bad input: one clear sentence, nothing else.
  const fatal = pre.blockers.find((b) => b.code === 'host-maintenance' || b.code === 'last-host');
  if (fatal) {
    await refuse(deps, op, `${fatal.message} Nothing was changed.`);
    return;
  }
  const moves: PlannedMove[] = pre.plan.assignments.map((a) => ({ vm: a.vm, vmId: a.vmId, target: a.target, mode: a.mode, memoryMiB: a.memoryMiB }));
  // A configured migration network is not a working one: where the adapter can, each planned
  // live target is tried from this host (libvirt: the migrate URI opened on the source).
  const pathProblems: string[] = [];
  const adapter = deps.rt.adapters.forCluster(p.cluster);
  if (pre.ok && adapter.checkMigrationPath) {
    const targets = [...new Set(moves.filter((m) => m.mode === 'live').map((m) => m.target))];
    const found = await Promise.all(
      targets.map((t) => adapter.checkMigrationPath!(p.host, t).catch((e: unknown) => [{ severity: 'block' as const, message: `the migration path from ${p.host} to ${t} could not be checked: ${errorText(e)}` }])),
    );
    pathProblems.push(...found.flat().filter((f) => f.severity === 'block').map((f) => f.message));
  }
  const ok = pre.ok && pathProblems.length === 0;
  const plan: DrainPlan = {
    ok,
    lines: [
      ...(pathProblems.length ? [`${p.host} cannot be drained: live migration from it does not work to ${plural(pathProblems.length, 'planned target')}.`, ...pathProblems.map((m) => `  ${m}`)] : []),
      ...renderDrainPrecheck(pre),
      ...(pre.verdicts.some((v) => v.action === 'refuse' && !v.ha) ? [`To save the running non-HA VMs in place instead, add save-non-ha: drain ${p.host} save-non-ha (an approver must start it).`] : []),
      ...Object.entries(errors).map(([h, e]) => `${h} did not answer and is not a candidate target (${e}).`),
      ...snapshot.flatMap((v) => {
        const a = homeOf(v);
        return a ? [`${v.name} belongs to ${a.home} (moved here by drain job ${a.opId}, not restored yet): its home stays ${a.home}, and restore ${a.home} brings it back there, not restore ${p.host}.`] : [];
      }),
    ],
    moves,
    stays: pre.verdicts.filter((v) => v.action !== 'live' && v.action !== 'cold').map((v) => ({ vm: v.vm, vmId: v.vmId, action: v.action, sentence: v.sentence })),
    ledger: snapshot.map((v: VmFacts) => {
      const m = moves.find((x) => x.vmId === v.id);
      const a = homeOf(v);
      return { name: v.name, id: v.id, home: a?.home ?? p.host, ...(a ? { homeOpId: a.opId } : {}), power: v.power, ha: v.ha, memoryMiB: v.memoryMiB, action: pre.verdicts.find((x) => x.vmId === v.id)?.action ?? 'skip', ...(m ? { target: m.target } : {}) };
    }),
    unreachable: errors,
  };
  await deps.rt.redis.set(deps.rt.key('op', opId, 'plan'), JSON.stringify(plan));
  await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: `drain ${p.host}: plan`, targets: [p.host, ...moves.map((m) => m.vm)], opId, outcome: ok ? 'ok' : 'refused', detail: plan.lines[0] });

  if (!ok) {
    // The card shows the refused plan in full; it is not posted a second time.
    await releaseLock(deps.rt, p.host, opId);
    await finishOp(deps, op, 'failed', plan.lines[0]!);
    return;
  }
  if (p.dryRun) {
    await finishOp(deps, op, 'succeeded', `dry run: ${plural(moves.length, 'VM')} would move; nothing was changed`);
    return;
  }
  const override = pre.counts.save > 0;
  // Policy asking for approvers: the plan goes to an approval request bound to its hash.
  const approvalId = await requestStartApproval(deps, { ...op, params: { ...op.params, override } }, plan);
  await deps.ops.patch(opId, { status: 'waiting', params: { ...op.params, stage: 'awaiting-start', waitingSince: deps.rt.clock.now(), override, approvalId } });
  // The host stays ours while the plan waits for Start.
  await refreshLock(deps.rt, p.host, opId, startNeeds(deps, { ...op, params: { ...op.params, override } }).expiryMs + 60_000);
  await refreshCard(deps, opId, { force: true });
  await watchWaiting(deps, opId);
}

function esc(s: string): string {
  return s.replace(/^ {2}/, '    ↳ ');
}

/** The card (and the channel's answer) carry the sentence: it is not posted a second time. */
async function refuse(deps: Deps, op: Operation, sentence: string): Promise<void> {
  await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: op.title, targets: op.hosts, opId: op.id, outcome: 'refused', detail: sentence });
  await releaseLock(deps.rt, op.hosts[0]!, op.id);
  await finishOp(deps, op, 'failed', sentence);
}

// ---------------------------------------------------------------------------------------
// Steps 4-7: ledger, maintenance, migrations, failure handling, summary

async function enqueueExec(deps: Deps, opId: number, round: number): Promise<void> {
  // maxStalledCount 2: a job whose worker died is re-run (BullMQ stalled-job recovery).
  await deps.queues.ops.add('drain-exec', { opId, round }, { jobId: `op-${opId}-exec-${round}`, attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
}

async function execStep(deps: Deps, job: Job): Promise<void> {
  const { opId, round } = job.data as { opId: number; round: number };
  let op = await deps.ops.get(opId);
  if (!op || FINISHED.includes(op.status)) return;
  if (!['executing', 'rolling-back'].includes(stageOf(op))) return;
  const p = params(op);
  const plan = await readPlan(deps, opId);
  if (!plan) throw new Error(`job ${opId} has no stored plan`);

  const held = await acquireLock(deps.rt, { host: p.host, opId, owner: op.requester, op: 'drain' });
  if (held) {
    await deps.outbox.post(op.conv, message(`${lockedSentence(held)} job ${opId} stops here; nothing more was changed.`));
    await finishOp(deps, op, 'failed', lockedSentence(held));
    return;
  }
  const keeper = keepLocks(deps.rt, [p.host], opId, undefined, { owner: op.requester, op: 'drain' });
  try {
    const runs = await deps.rt.redis.incr(deps.rt.key('op', opId, 'runs', round));
    await deps.rt.redis.expire(deps.rt.key('op', opId, 'runs', round), 30 * 86_400);
    if (runs > 1) {
      const states = await vmStates(deps, opId);
      const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
      await deps.outbox.post(
        op.conv,
        message(`Resumed job ${opId} after its worker stopped: ${moved} of ${plan.moves.length} VMs had already moved. Carrying on from the hosts' real state; nothing moves twice.`),
      );
    }
    if (!op.startedAt) op = await deps.ops.patch(opId, { startedAt: deps.rt.clock.now() });
    if (stageOf(op) === 'rolling-back') {
      await rollback(deps, op, plan);
      return;
    }

    // Another drain of the cluster may have entered maintenance since this plan was made (both
    // plans passed the precheck side by side): check again, one drain of the cluster at a time,
    // before this host enters maintenance.
    const gate = await maintenanceGate(deps, op, plan);
    if (gate.refused) {
      try {
        await deps.outbox.post(op.conv, message(`${gate.refused} job ${opId} stops here; nothing was moved and ${p.host} stays out of maintenance.`));
        const mine = await readLedger(deps.rt, p.host);
        if (mine?.opId === opId && isOpen(mine)) await setLedgerStatus(deps.rt, p.host, 'rolled-back');
        await releaseLock(deps.rt, p.host, opId);
        await finishOp(deps, op, 'failed', gate.refused);
      } finally {
        await gate.release();
      }
      return;
    }
    try {
      // Ledger: before anything moves.
      const ledger = await writeLedger(deps.rt, { host: p.host, cluster: p.cluster, opId, requester: op.requester, createdAt: deps.rt.clock.now(), status: 'draining', vms: plan.ledger });
      if (ledger.opId !== opId) {
        await deps.outbox.post(op.conv, message(`${p.host} still has the ledger of job ${ledger.opId}, which was never restored; restore ${p.host} first. Nothing was changed.`));
        await releaseLock(deps.rt, p.host, opId);
        await finishOp(deps, op, 'failed', `open ledger of job ${ledger.opId}`);
        return;
      }
      if (await ensureMaintenance(deps, op, p.host, true)) {
        // vSphere enters maintenance only once the host is empty; until then it refuses new VMs.
        // Its notes (a fully automated DRS moving VMs on its own) belong in the thread too.
        const after = await deps.rt.adapters.forHost(p.host).describeHost(p.host).catch(() => undefined);
        const state = after?.enteringMaintenance
          ? `${p.host} is entering maintenance: no new VMs land on it, and the platform completes it once the last running VM has left.`
          : `${p.host} is in maintenance: no new VMs land on it.`;
        const notes = after?.notes?.length ? ` Note: ${after.notes.join(' ')}` : '';
        await deps.outbox.post(op.conv, message(`${state} Moving ${plural(plan.moves.length, 'VM')}, ${concurrencyFor(deps, p)} at a time.${notes}`));
      }
    } finally {
      await gate.release();
    }
    await refreshCard(deps, opId);

    const outcome = await migrateAll(deps, op, plan, keeper);
    op = (await deps.ops.get(opId))!;
    if (outcome.lost) {
      // Another operation has the host now: stop here, without touching what is its to do.
      keeper.stop();
      const states = await vmStates(deps, opId);
      const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
      await setLedgerStatus(deps.rt, p.host, 'drained');
      await deps.outbox.post(
        op.conv,
        message(
          `job ${opId} lost its lock on ${p.host}: ${lockedSentence(outcome.lost)} It stopped after its current migration: ${moved} of ${plan.moves.length} VMs moved and ${p.host} stays in maintenance. Once job ${outcome.lost.opId} is done, restore ${p.host} brings them home.`,
        ),
      );
      await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `drain ${p.host}: lost the host lock`, targets: [p.host], opId, outcome: 'failed', detail: lockedSentence(outcome.lost) });
      await finishOp(deps, op, 'failed', `stopped after ${moved} of ${plan.moves.length} VMs moved: job ${outcome.lost.opId} has ${p.host} now`);
      return;
    }
    if (outcome.cancelled) {
      const states = await vmStates(deps, opId);
      const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
      await setLedgerStatus(deps.rt, p.host, 'drained');
      await deps.outbox.post(
        op.conv,
        message(`job ${opId} was cancelled by ${mention(outcome.cancelled)}: ${moved} of ${plan.moves.length} VMs had moved. ${p.host} stays in maintenance; restore ${p.host} brings them home.`),
      );
      await releaseLock(deps.rt, p.host, opId);
      await finishOp(deps, op, 'cancelled', `cancelled after ${moved} of ${plan.moves.length} VMs moved`);
      return;
    }
    if (outcome.failed.length) {
      if (p.rollback === 'auto') {
        op = await deps.ops.patch(opId, { params: { ...op.params, stage: 'rolling-back', failed: outcome.failed } });
        await rollback(deps, op, plan);
      } else {
        // The hold keeps the host for days: the step's keeper must not cut that back to a minute.
        keeper.stop();
        await hold(deps, op, plan, outcome.failed);
      }
      return;
    }
    await saveInPlace(deps, op, plan);
    await setLedgerStatus(deps.rt, p.host, 'drained');
    await summary(deps, op, plan);
    await releaseLock(deps.rt, p.host, opId);
  } finally {
    keeper.stop();
  }
}

const GATE_WAIT_MS = 30_000;

/**
 * Before a drain's host enters maintenance for the first time: under a short per-cluster mutex
 * (held until the host is in maintenance), read the cluster again; refuse when the cluster's
 * maintenance limit would be passed or a planned target is in maintenance now. A drain that
 * already ran (its host in maintenance, or VMs with a state) is not gated again.
 */
async function maintenanceGate(deps: Deps, op: Operation, plan: DrainPlan): Promise<{ refused: string | null; release(): Promise<void> }> {
  const p = params(op);
  const none = { refused: null, release: async () => undefined };
  if (Object.keys(await vmStates(deps, op.id)).length) return none;
  const adapter = deps.rt.adapters.forHost(p.host);
  if ((await adapter.describeHost(p.host)).maintenance) return none;
  const key = deps.rt.key('lock', 'cluster-maintenance', p.cluster);
  const token = `${op.id}-${Math.random().toString(36).slice(2)}`;
  const deadline = Date.now() + GATE_WAIT_MS;
  while (!(await deps.rt.redis.set(key, token, 'PX', GATE_WAIT_MS, 'NX'))) {
    if (Date.now() > deadline) throw new Error(`another drain of ${p.cluster} is entering maintenance; try again`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const release = async (): Promise<void> => {
    await deps.rt.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, key, token);
  };
  try {
    const { facts } = await clusterFacts(deps, p.cluster);
    const others = facts.filter((f) => f.name !== p.host);
    const down = others.filter((f) => f.maintenance || f.cordoned === true).map((f) => f.name);
    const limit = deps.rt.config.clusters[p.cluster]?.maxInMaintenance ?? 1;
    let refused: string | null = null;
    if (down.length + 1 > limit) {
      refused = `${down.length} of ${facts.length} hosts of ${p.cluster} ${down.length === 1 ? 'is' : 'are'} already in maintenance (${down.join(', ')}; limit ${limit}) since this plan was made.`;
    } else {
      const gone = [...new Set(plan.moves.map((m) => m.target))].filter((t) => down.includes(t) || !facts.some((f) => f.name === t));
      if (gone.length) refused = `The plan sends VMs to ${gone.join(', ')}, which ${gone.length === 1 ? 'is' : 'are'} in maintenance or not answering now; run drain ${p.host} again for a fresh plan.`;
    }
    return { refused, release };
  } catch (e) {
    await release();
    throw e;
  }
}

async function migrateAll(deps: Deps, op: Operation, plan: DrainPlan, keeper: LockKeeper): Promise<{ failed: string[]; cancelled: string | null; lost: HostLock | null }> {
  const p = params(op);
  const states = await vmStates(deps, op.id);
  const todo = plan.moves.filter((m) => !['moved', 'skipped', 'failed'].includes(states[m.vm]?.state ?? 'pending'));
  const failed: string[] = plan.moves.filter((m) => states[m.vm]?.state === 'failed').map((m) => m.vm);
  let cancelled: string | null = null;
  let lost: HostLock | null = null;
  // A cancel aborts the migrations in flight (their VMs stay on the host), not only the next ones.
  const cancel = watchCancel(deps, op.id);
  await pMap(todo, concurrencyFor(deps, p), async (m) => {
    // After a failure no new migration starts: rollback/hold decide what happens next.
    if (failed.length || cancelled || lost) return;
    cancelled = cancel.by() ?? (await deps.ops.cancelRequested(op.id));
    if (cancelled) return;
    // The host must still be this drain's (its lock may have expired while Redis was away).
    lost = await keeper.check();
    if (lost) return;
    await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'moving', target: m.target, from: p.host });
    await refreshCard(deps, op.id);
    const out = await moveVm(deps, op, { vm: m.vm, vmId: m.vmId, source: p.host, target: m.target, mode: m.mode }, { cluster: p.cluster, onProgress: progressReporter(deps, op.id, m.vm), signal: cancel.signal });
    await setPercent(deps, op.id, m.vm, null);
    if (!out.ok && out.code === 'cancelled') {
      cancelled = cancel.by() ?? (await deps.ops.cancelRequested(op.id)) ?? 'someone';
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'pending', target: m.target, from: p.host, reason: `migration stopped by the cancel; it stays on ${out.stayedOn ?? p.host}` });
    } else if (out.ok) {
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'moved', target: m.target, from: p.host, attempts: out.attempts, durationMs: out.durationMs, ...(out.already ? { reason: 'already on its target when checked' } : {}) });
      await reportLingering(deps, op, m.vm, p.host, out.lingering);
    } else if (out.code === 'gone' || out.code === 'moved-elsewhere') {
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'skipped', target: m.target, reason: out.error });
    } else {
      failed.push(m.vm);
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'failed', target: m.target, from: p.host, attempts: out.attempts, error: out.error });
      await deps.outbox.post(op.conv, message(`${m.vm} could not move to ${m.target} after ${plural(out.attempts, 'attempt')}: ${out.error}`));
    }
    await refreshCard(deps, op.id);
  }).finally(() => cancel.stop());
  return { failed, cancelled, lost: lost ?? keeper.lost() };
}

async function rollback(deps: Deps, op: Operation, plan: DrainPlan): Promise<void> {
  const p = params(op);
  if (op.status !== 'running') op = await deps.ops.patch(op.id, { status: 'running' });
  // Where every VM of the ledger really is, whatever its recorded state: a migration that
  // reported failure may still have moved it (a timeout, a platform error after switch-over).
  const locate = (lv: LedgerVm) => locateVm(deps, p.cluster, lv.name, lv.id);
  const located = await pMap(plan.ledger, 8, async (lv) => ({ lv, where: await locate(lv) }));
  const errors = new Map<string, string>();
  const back = located.flatMap(({ lv, where }) => (where && where.vm.host !== p.host ? [{ lv, vm: where.vm }] : []));
  await deps.outbox.post(op.conv, message(`Rolling back job ${op.id}: ${p.host} leaves maintenance and ${plural(back.length, 'VM')} ${back.length === 1 ? 'moves' : 'move'} back to it.`));
  try {
    await ensureMaintenance(deps, op, p.host, false);
  } catch (e) {
    await deps.outbox.post(op.conv, message(`${p.host} could not leave maintenance: ${errorText(e)}. The VMs stay where they are; restore ${p.host} tries again.`));
    await releaseLock(deps.rt, p.host, op.id);
    await finishOp(deps, op, 'failed', `rollback failed: ${errorText(e)}`);
    return;
  }
  for (const { lv, where } of located) {
    if (where) continue;
    errors.set(lv.name, `${lv.name} is no longer in ${p.cluster}`);
    await setVmState(deps, op.id, { name: lv.name, id: lv.id, state: 'return-failed', target: p.host, error: 'gone' });
  }
  await pMap(back, concurrencyFor(deps, p), async ({ lv, vm }) => {
    const mode = plan.moves.find((m) => m.vmId === lv.id)?.mode ?? (vm.power === 'running' ? 'live' : 'cold');
    await setVmState(deps, op.id, { name: lv.name, id: lv.id, state: 'returning', target: p.host, from: vm.host });
    await refreshCard(deps, op.id);
    // moveVm looks the VM up again before each attempt: one already home is not moved.
    const out = await moveVm(deps, op, { vm: vm.name, vmId: lv.id, source: vm.host, target: p.host, mode }, { cluster: p.cluster, onProgress: progressReporter(deps, op.id, lv.name) });
    await setPercent(deps, op.id, lv.name, null);
    // A failure report is checked against the hosts too: the VM may be home all the same.
    const home = out.ok || (await locate(lv).catch(() => null))?.vm.host === p.host;
    if (home) {
      await setVmState(deps, op.id, { name: lv.name, id: lv.id, state: 'returned', target: p.host, from: vm.host, ...(out.ok ? { durationMs: out.durationMs } : { reason: `back on ${p.host} although its migration reported: ${out.error}` }) });
      if (out.ok) await reportLingering(deps, op, lv.name, vm.host, out.lingering);
    } else {
      errors.set(lv.name, `${lv.name} stays on ${vm.host} (${out.error})`);
      await setVmState(deps, op.id, { name: lv.name, id: lv.id, state: 'return-failed', target: p.host, from: vm.host, error: out.error });
    }
    await refreshCard(deps, op.id);
  });
  // The last word is the hosts': every VM of the ledger is on the drained host, or it is named.
  const after = await pMap(plan.ledger, 8, async (lv) => ({ lv, where: await locate(lv).catch(() => null) }));
  const problems = after
    .filter(({ where }) => !where || where.vm.host !== p.host)
    .map(({ lv, where }) => errors.get(lv.name) ?? (where ? `${lv.name} is on ${where.vm.host}` : `${lv.name} could not be found in ${p.cluster}`));
  const returned = back.filter(({ lv }) => after.find((x) => x.lv.id === lv.id)?.where?.vm.host === p.host).length;
  const failedVms = (params((await deps.ops.get(op.id))!).failed ?? []).join(', ');
  if (problems.length) {
    await setLedgerStatus(deps.rt, p.host, 'drained');
    await deps.outbox.post(op.conv, message(`Rollback of job ${op.id} finished with problems: ${returned} of ${back.length} VMs are back on ${p.host}; ${problems.join('; ')}. restore ${p.host} tries the rest again.`));
  } else {
    await setLedgerStatus(deps.rt, p.host, 'rolled-back');
    await deps.outbox.post(op.conv, message(`Rolled back job ${op.id}: ${plural(returned, 'VM')} ${returned === 1 ? 'is' : 'are'} back on ${p.host} and ${p.host} is out of maintenance. Every VM is where it started.`));
  }
  await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: `drain ${p.host}: rollback`, targets: [p.host], opId: op.id, outcome: problems.length ? 'failed' : 'ok', detail: `${returned}/${back.length} back` });
  await summary(deps, (await deps.ops.get(op.id))!, plan, { status: 'failed', headline: `drain of ${p.host} failed${failedVms ? ` (${failedVms})` : ''} and was rolled back` });
  await releaseLock(deps.rt, p.host, op.id);
}

async function hold(deps: Deps, op: Operation, plan: DrainPlan, failed: string[]): Promise<void> {
  const p = params(op);
  const round = (p.round ?? 0) + 1;
  const states = await vmStates(deps, op.id);
  const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
  const left = plan.moves.filter((m) => !states[m.vm] || states[m.vm]!.state === 'pending').length;
  await deps.ops.patch(op.id, { status: 'waiting', params: { ...op.params, stage: 'held', round, failed, waitingSince: deps.rt.clock.now() } });
  await refreshLock(deps.rt, p.host, op.id, HOLD_LOCK_MS);
  const buttons: Button[] = [
    { action: DRAIN_ACTIONS.rollback, label: 'Roll back', value: String(op.id), style: 'danger', command: `rollback ${op.id}` },
    { action: DRAIN_ACTIONS.retry, label: 'Retry', value: String(op.id), style: 'primary', command: `retry ${op.id}` },
    ...failed.slice(0, 10).map((vm): Button => ({ action: DRAIN_ACTIONS.skip, label: `Skip ${vm}`, value: `${op.id} ${vm}`, command: `skip ${op.id} ${vm}` })),
  ];
  const text = `job ${op.id} is on hold: ${namesLine(failed)} failed to move. ${moved} of ${plan.moves.length} VMs moved, ${left} not started; ${p.host} stays in maintenance until you decide.`;
  await deps.outbox.post(
    op.conv,
    message(text, section(`:pause_button: ${text}`), context('Roll back moves every moved VM home and takes the host out of maintenance; Retry tries the failed VMs again; Skip leaves a VM on the host and carries on.'), { type: 'actions', buttons }),
  );
  await refreshCard(deps, op.id, { force: true });
  await watchWaiting(deps, op.id);
}

interface SaveResult {
  ok: boolean;
  error?: string;
}

async function savedStates(deps: Deps, opId: number): Promise<Record<string, SaveResult>> {
  const all = await deps.rt.redis.hgetall(deps.rt.key('op', opId, 'saved'));
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as SaveResult]));
}

/**
 * save-non-ha (seed 001 rule 1 override): once every VM that moves has moved, each running
 * non-HA VM is saved in place, and the host is read again to check it really is saved. A re-run
 * skips what is already saved; restore resumes exactly these VMs (action 'save' in the ledger).
 */
async function saveInPlace(deps: Deps, op: Operation, plan: DrainPlan): Promise<void> {
  const p = params(op);
  const toSave = plan.stays.filter((s) => s.action === 'save');
  if (!toSave.length) return;
  const adapter = deps.rt.adapters.forHost(p.host);
  const key = deps.rt.key('op', op.id, 'saved');
  for (const s of toSave) {
    let result: SaveResult;
    try {
      if (!adapter.saveVm) throw new Error(`${adapter.kind} has no way to save a VM in place`);
      await auditedCall(deps, op, 'saveVm', [s.vm, p.host], () => adapter.saveVm!(p.host, s.vm));
      const now = (await adapter.listVms(p.host)).find((v) => v.id === s.vmId);
      result = now?.power === 'saved' ? { ok: true } : { ok: false, error: now ? `${s.vm} is ${now.power} after saving, not saved` : `${s.vm} is no longer on ${p.host}` };
    } catch (e) {
      result = { ok: false, error: errorText(e) };
    }
    await deps.rt.redis.hset(key, s.vm, JSON.stringify(result));
    await deps.rt.redis.expire(key, 30 * 86_400);
    if (!result.ok) await deps.outbox.post(op.conv, message(`${s.vm} could not be saved on ${p.host}: ${result.error}. It keeps running there while ${p.host} is in maintenance.`));
  }
}

async function summary(deps: Deps, op: Operation, plan: DrainPlan, opts: { status?: Operation['status']; headline?: string } = {}): Promise<void> {
  const p = params(op);
  const states = await vmStates(deps, op.id);
  const durationMs = deps.rt.clock.now() - (op.startedAt ?? op.createdAt);
  const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved');
  const returned = plan.moves.filter((m) => states[m.vm]?.state === 'returned');
  const savedState = await savedStates(deps, op.id);
  const toSave = plan.stays.filter((s) => s.action === 'save');
  const saved = toSave.filter((s) => savedState[s.vm]?.ok);
  const saveFailed = toSave.filter((s) => savedState[s.vm] && !savedState[s.vm]!.ok);
  const skipped = [
    ...plan.stays.filter((s) => s.action !== 'save').map((s) => [s.vm, s.sentence]),
    ...plan.moves.filter((m) => states[m.vm]?.state === 'skipped').map((m) => [m.vm, states[m.vm]!.reason ?? 'skipped']),
  ];
  const failed = plan.moves.filter((m) => ['failed', 'return-failed'].includes(states[m.vm]?.state ?? ''));
  const status = opts.status ?? (failed.length || saveFailed.length ? 'partial' : 'succeeded');
  const savedPart = toSave.length ? ` ${saved.length} saved,` : '';
  const failedN = failed.length + saveFailed.length;
  const headline =
    opts.headline ??
    `${p.host} drained in ${formatDuration(durationMs)}: ${moved.length} moved,${savedPart} ${skipped.length} skipped, ${failedN} failed`;
  const blocks: Block[] = [section(`*${headline}.*`)];
  if (moved.length) blocks.push({ type: 'table', title: '*Moved*', columns: ['VM', 'To', 'Took'], rows: moved.map((m) => [m.vm, m.target, formatDuration(states[m.vm]?.durationMs ?? 0)]) });
  if (returned.length) blocks.push({ type: 'table', title: `*Back on ${p.host}*`, columns: ['VM', 'From'], rows: returned.map((m) => [m.vm, states[m.vm]?.from ?? m.target]) });
  if (saved.length) blocks.push({ type: 'table', title: `*Saved on ${p.host}* (cut off until restore ${p.host} resumes them)`, columns: ['VM'], rows: saved.map((s) => [s.vm]) });
  if (skipped.length) blocks.push({ type: 'table', title: '*Skipped*', columns: ['VM', 'Why'], rows: skipped });
  if (failedN) blocks.push({ type: 'table', title: '*Failed*', columns: ['VM', 'Error'], rows: [...failed.map((m) => [m.vm, states[m.vm]?.error ?? '']), ...saveFailed.map((s) => [s.vm, `not saved: ${savedState[s.vm]!.error ?? ''}`])] });
  blocks.push(context(`job ${op.id} · ${formatDuration(durationMs)}${status === 'succeeded' ? ` · ledger saved: restore ${p.host} brings the VMs home` : ''}`));
  await deps.outbox.post(op.conv, message(`${headline}.`, ...blocks));
  // The host is free before the operation says it ended: whoever waits on it (a rolling run's restore) finds it free.
  await releaseLock(deps.rt, p.host, op.id);
  await finishOp(deps, op, status, `${moved.length} moved, ${returned.length ? `${returned.length} back, ` : ''}${toSave.length ? `${saved.length} saved, ` : ''}${skipped.length} skipped, ${failedN} failed`);
}

// ---------------------------------------------------------------------------------------
// Decisions

const drainDecisions: Controlled = {
  async resume(deps, op, decision: Decision, arg) {
    const p = params(op);
    const round = p.round ?? 0;
    if (decision === 'start') {
      await deps.ops.patch(op.id, { status: 'running', params: { ...op.params, stage: 'executing' } });
      await refreshCard(deps, op.id, { force: true });
      await enqueueExec(deps, op.id, round);
      return;
    }
    const states = await vmStates(deps, op.id);
    if (decision === 'rollback') {
      await deps.ops.patch(op.id, { status: 'running', params: { ...op.params, stage: 'rolling-back' } });
    } else if (decision === 'retry') {
      for (const s of Object.values(states)) if (s.state === 'failed') await setVmState(deps, op.id, { ...s, state: 'pending', error: undefined });
      await deps.outbox.post(op.conv, message(`Retrying ${namesLine(p.failed ?? [])}; the drain carries on.`));
      await deps.ops.patch(op.id, { status: 'running', params: { ...op.params, stage: 'executing', failed: [] } });
    } else if (decision === 'skip') {
      const s: VmState | undefined = arg ? states[arg] : undefined;
      if (s) await setVmState(deps, op.id, { ...s, state: 'skipped', reason: `skipped after it failed (${s.error ?? 'error'})` });
      await deps.outbox.post(op.conv, message(`${arg} stays on ${p.host}; the drain carries on.`));
      await deps.ops.patch(op.id, { status: 'running', params: { ...op.params, stage: 'executing', failed: (p.failed ?? []).filter((v) => v !== arg) } });
    }
    await refreshCard(deps, op.id, { force: true });
    await enqueueExec(deps, op.id, round);
  },
  // Approval binding: the stored plan is what the request froze; at approval the host's VMs are
  // read again, and a drain whose VMs changed is planned again (its approval is void).
  async currentPlan(deps, op) {
    return readPlan(deps, op.id);
  },
  async check(deps, op, plan) {
    const p = params(op);
    const ledger = (plan as DrainPlan).ledger;
    const now = new Map((await deps.rt.adapters.forHost(p.host).listVms(p.host)).map((v) => [v.id, v]));
    const gone = ledger.filter((v) => !now.has(v.id)).map((v) => v.name);
    const added = [...now.values()].filter((v) => !ledger.some((x) => x.id === v.id)).map((v) => v.name);
    const changed = ledger.filter((v) => now.has(v.id) && (now.get(v.id)!.power !== v.power || now.get(v.id)!.ha !== v.ha)).map((v) => v.name);
    const why = [
      gone.length ? `${namesLine(gone)} ${gone.length === 1 ? 'is' : 'are'} no longer on ${p.host}` : '',
      added.length ? `${namesLine(added)} ${added.length === 1 ? 'is' : 'are'} new on ${p.host}` : '',
      changed.length ? `${namesLine(changed)} changed power or HA state` : '',
    ].filter(Boolean);
    return why.length ? why.join('; ') : null;
  },
  async replan(deps, op) {
    const n = Number(op.params.plans ?? 1) + 1;
    await deps.ops.patch(op.id, { status: 'running', params: { ...op.params, stage: 'planning', plans: n, approvalId: undefined } });
    await refreshCard(deps, op.id, { force: true });
    await deps.queues.ops.add('drain-plan', { opId: op.id }, { jobId: `op-${op.id}-plan-${n}`, attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
  },
  planBlocks(plan) {
    const d = plan as DrainPlan;
    const blocks: Block[] = [section(d.lines.map(esc).join('\n').slice(0, 2900))];
    if (d.moves.length) blocks.push({ type: 'table', title: '*Plan* (frozen: these moves, nothing else)', columns: ['VM', 'To', 'How', 'Memory'], rows: d.moves.map((m) => [m.vm, m.target, m.mode, `${Math.round(m.memoryMiB / 1024)} GiB`]) });
    return blocks;
  },
  async stopWaiting(deps, op, why) {
    const p = params(op);
    await releaseLock(deps.rt, p.host, op.id);
    if (stageOf(op) === 'held') {
      const states = await vmStates(deps, op.id);
      const moved = Object.values(states).filter((s) => s.state === 'moved').length;
      await setLedgerStatus(deps.rt, p.host, 'drained');
      await deps.outbox.post(op.conv, message(`job ${op.id} was ${why} while on hold: ${moved} moved VMs stay on their new hosts and ${p.host} stays in maintenance; restore ${p.host} brings them home.`));
      await finishOp(deps, op, 'cancelled', `${why} on hold after ${moved} moved`);
    } else {
      await deps.outbox.post(op.conv, message(`job ${op.id} (${op.title}): ${why}. Nothing was moved.`));
      await finishOp(deps, op, 'cancelled', `${why}; nothing moved`);
    }
  },
};

/** Skip needs a VM that actually failed; checked before the decision is recorded. */
export async function validateSkip(deps: Deps, opId: string, vm: string): Promise<string | null> {
  const op = await deps.ops.get(opId);
  if (!op || op.kind !== KIND) return null;
  const failed = params(op).failed ?? [];
  if (!failed.includes(vm)) return `${vm} is not a failed VM of job ${op.id}${failed.length ? `; failed: ${failed.join(', ')}` : ''}.`;
  return null;
}

export { decide };

// ---------------------------------------------------------------------------------------
// The card: plan with Start / Cancel, then progress per VM

const STATE_LABEL: Record<string, string> = {
  pending: 'waiting',
  moving: 'moving',
  moved: 'moved',
  failed: 'FAILED',
  skipped: 'skipped',
  returning: 'moving back',
  returned: 'back home',
  'return-failed': 'could not go back',
};

const drainCard: CardRenderer = async (deps, op) => {
  const p = params(op);
  const stage = stageOf(op);
  const plan = await readPlan(deps, op.id);
  const head = `*Drain ${p.host}* · job ${op.id}`;
  if (!plan && FINISHED.includes(op.status)) {
    // Ended before a plan was stored (refused, host unreachable): the card says so, with why.
    const word = op.status === 'failed' ? 'refused: nothing was changed' : op.status;
    return message(`${op.title}: ${word}`, section(`${head} · ${word}`), ...(op.summary ? [section(op.summary)] : []), context(`requested by ${mention(op.requester)}`));
  }
  if (!plan || stage === 'planning') {
    return message(`${op.title}: checking`, section(`${head} · checking ${p.host}'s VMs and the other hosts of ${p.cluster}…`), context(`requested by ${mention(op.requester)}`));
  }
  const blocks: Block[] = [];
  const states = await vmStates(deps, op.id);
  // Nothing ran yet (waiting for Start, a dry run, a refused plan): the card is the plan.
  if (stage === 'awaiting-start' || Object.keys(states).length === 0) {
    const word = op.status === 'failed' ? 'refused: nothing was changed' : p.dryRun ? 'dry run: nothing will change' : op.status === 'waiting' ? 'plan ready' : op.status === 'cancelled' ? 'cancelled' : op.status;
    blocks.push(section(`${head} · ${word}`));
    blocks.push(section(plan.lines.map(esc).join('\n').slice(0, 2900)));
    if (plan.moves.length) blocks.push({ type: 'table', title: '*Plan*', columns: ['VM', 'To', 'How', 'Memory'], rows: plan.moves.map((m) => [m.vm, m.target, m.mode, `${Math.round(m.memoryMiB / 1024)} GiB`]) });
    if (stage === 'awaiting-start' && op.status === 'waiting') {
      blocks.push(...(await startBlocks(deps, op, `Start: drain ${p.host}`, ` · rollback ${p.rollback} · ${concurrencyFor(deps, p)} at a time`)));
    }
    return message(`${op.title}: ${plan.lines[0]}`, ...blocks);
  }
  const pct = await percents(deps, op.id);
  const total = plan.moves.length;
  const rollingBack = stage === 'rolling-back' || Object.values(states).some((s) => s.state === 'returning' || s.state === 'returned');
  const stateOf = (vm: string): string => states[vm]?.state ?? 'pending';
  const n = (...which: string[]): number => plan.moves.filter((m) => which.includes(stateOf(m.vm))).length;
  // The figures count what the table shows. Rolling back, a VM that never left is home
  // ("stayed home", settled); one that failed and stayed is named as failed, not as done.
  const done = rollingBack ? n('returned', 'return-failed', 'failed', 'pending', 'skipped') : n('moved', 'skipped');
  const failedN = n('failed', 'return-failed');
  const label = rollingBack
    ? `${done}/${total} VMs settled: ${n('returned')} back home, ${n('pending', 'skipped')} never left${failedN ? `, ${failedN} failed` : ''}`
    : `${n('moved')}/${total} VMs moved${n('skipped') ? `, ${n('skipped')} skipped` : ''}${failedN ? `, ${failedN} failed` : ''}`;
  const word =
    op.status === 'waiting' ? 'on hold: waiting for a decision' : stage === 'done' ? op.status : rollingBack ? 'rolling back' : 'draining';
  blocks.push(section(`${head} · ${word}`));
  blocks.push({ type: 'progress', done, total, label });
  blocks.push({
    type: 'table',
    columns: ['VM', 'To', 'State'],
    rows: plan.moves.map((m) => {
      const s = states[m.vm];
      const st = s?.state ?? 'pending';
      const base = rollingBack && st === 'pending' ? 'stayed home' : rollingBack && st === 'failed' ? 'FAILED, stayed home' : (STATE_LABEL[st] ?? st);
      const label = base + ((st === 'moving' || st === 'returning') && pct[m.vm] !== undefined ? ` ${pct[m.vm]}%` : '');
      return [m.vm, st === 'returning' || st === 'returned' || (rollingBack && (st === 'pending' || st === 'failed')) ? p.host : m.target, label];
    }),
  });
  blocks.push(context(`requested by ${mention(op.requester)} · rollback ${p.rollback} · ${concurrencyFor(deps, p)} at a time`));
  return message(`${op.title}: ${word} ${progressBar(done, total, 10)}`, ...blocks);
};

export const drainWorkflow: Workflow = {
  name: 'drain',
  jobs: { 'drain-plan': { queue: 'ops', handler: planStep }, 'drain-exec': { queue: 'ops', handler: execStep } },
  cards: { [KIND]: drainCard },
  controlled: { [KIND]: drainDecisions },
};

/** For restore and tests: the drain's ledger is open. */
export async function hasOpenLedger(deps: Deps, host: string): Promise<boolean> {
  return isOpen(await readLedger(deps.rt, host));
}
