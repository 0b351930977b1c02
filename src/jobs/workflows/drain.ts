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
import type { HostFacts, VmFacts } from '../../adapters/types.js';
import { formatMiB, precheckDrain, renderDrainPrecheck } from '../../core/prechecks.js';
import { pMap } from '../../core/pmap.js';
import { audit } from '../../audit/audit.js';
import { acquireMutex } from '../../mutex.js';
import { refusal, type Refusal } from '../../core/refusal.js';
import { message, plural } from '../../chat/messages.js';
import type { Conversation, MessageRef } from '../../chat/conversation.js';
import type { Workflow } from '../wiring.js';
import { ensureCard, refreshCard, withCard } from '../cards.js';
import { errorText } from '../retry.js';
import type { Deps } from '../context.js';
import { FINISHED, type Operation } from '../operations.js';
import { acquireLock, keepLocks, lockedSentence, refreshLock, releaseLock, type HostLock, type LockKeeper } from '../drain/locks.js';
import { availableMiB, holdsReservation, redisNow, reserveMoves, reservedByOthers, withReserved, settleReservation } from '../drain/reserve.js';
import { awayFromHome, isOpen, readLedger, setLedgerStatus, writeLedger, type LedgerVm } from '../drain/ledger.js';
import { decide, finishOp, opAtStage, queueStep, requestStartApproval, stageOf, startNeeds, watchWaiting, type Controlled, type Decision } from '../drain/control.js';
import {
  auditedCall,
  clusterFacts,
  ensureMaintenance,
  locateVm,
  moveVm,
  watchCancel,
  namesLine,
  progressReporter,
  reportLingering,
  setPercent,
  setVmState,
  vmStates,
  reconcileMoves,
  type VmState,
} from '../drain/steps.js';
import { concurrencyFor, drainParams as params, KIND, type DrainParams, readPlan, type DrainPlan, type DrainRequest, type PlannedMove } from '../drain/model.js';
import type { DrainEvent, DrainTally } from '../drain/events.js';
import { narrateDrain, tallyLine } from '../drain/narration.js';
import { drainCard, drainPlanBlocks } from '../drain/card.js';

export { KIND, type DrainPlan, type DrainRequest, type PlannedMove };
/** A held drain keeps its host this long without a running job. */
const HOLD_LOCK_MS = 7 * 86_400_000;

/** The runner's one way to speak: an event, narrated into the operation's thread. */
async function emit(deps: Deps, op: Pick<Operation, 'conv'>, e: DrainEvent): Promise<void> {
  await deps.outbox.post(op.conv, narrateDrain(e));
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
    params: { ...req.drain, cluster, stage: 'planning', round: 0 } satisfies DrainParams,
  });
  if (req.lock && !(await req.lock(op.id))) return null;
  // The plan starts at once; the card (the command's answer) is posted beside it.
  await queueStep(deps, 'drain-plan', `op-${op.id}-plan`, { opId: op.id });
  await ensureCard(deps, op.id);
  return op;
}

// ---------------------------------------------------------------------------------------
// Step 1-3: snapshot, prechecks, plan

async function planStep(deps: Deps, job: Job): Promise<void> {
  let op = await opAtStage(deps, job, 'planning');
  if (!op) return;
  const opId = op.id;
  const p = params(op);
  op = await deps.ops.patch(opId, { status: 'running', startedAt: op.startedAt ?? deps.rt.clock.now() });
  await refreshCard(deps, opId);

  // Redis's time before the facts are read: moves of other drains that ended later are not in them yet.
  const factsAt = await redisNow(deps.rt);
  const { facts, vms, errors, failures } = await clusterFacts(deps, p.cluster);
  // Whatever the thread hears goes under the card, which was posted while the facts were read.
  op = (await withCard(deps, opId)) ?? op;
  const host = facts.find((f) => f.name === p.host);
  if (!host) {
    // The host may have answered and refused (a login, a key): its kind says which, not "silent".
    await refuse(deps, op, `${failures[p.host] ?? `${p.host} did not answer`}; nothing was changed.`);
    return;
  }
  const snapshot = vms[p.host] ?? [];
  // A VM here only because another host's drain (not yet restored) moved it here belongs to that host.
  const away = await awayFromHome(deps.rt, deps.rt.inventory.clusters[p.cluster] ?? [], p.host);
  const homeOf = (v: VmFacts): { home: string; opId: number } | undefined => away.get(v.id);
  // Memory other drains of the cluster reserved (planned, not moved yet) is used memory to this
  // plan; its own moves are reserved in one atomic step, and planned again if another drain
  // reserved the same memory in between.
  const available = Object.fromEntries(facts.map((f) => [f.name, availableMiB(f)]));
  let reserved = await reservedByOthers(deps.rt, p.cluster, opId, factsAt);
  const precheck = () =>
    precheckDrain({
      host,
      vms: snapshot,
      clusterHosts: withReserved(facts, reserved),
      vmsByHost: vms,
      maxInMaintenance: deps.rt.config.clusters[p.cluster]?.maxInMaintenance ?? 1,
      allowSaveNonHa: p.saveNonHa,
      coldMigratePoweredOff: p.coldMigrate,
    });
  let pre = precheck();
  // Bad input: one clear sentence, nothing else.
  const fatal = pre.blockers.find((b) => b.code === 'host-maintenance' || b.code === 'last-host');
  if (fatal) {
    await refuse(deps, op, `${fatal.message} Nothing was changed.`);
    return;
  }
  const planMoves = () => pre.plan.assignments.map((a): PlannedMove => ({ vm: a.vm, vmId: a.vmId, target: a.target, mode: a.mode, memoryMiB: a.memoryMiB }));
  for (let attempt = 1; pre.ok && !p.dryRun; attempt++) {
    const short = await reserveMoves(deps.rt, p.cluster, opId, planMoves(), available, factsAt);
    if (!short) break;
    if (attempt >= 5) {
      await refuse(deps, op, `Other drains of ${p.cluster} kept reserving the memory this plan counted on (${short.target}); nothing was changed. Run drain ${p.host} again.`);
      return;
    }
    reserved = await reservedByOthers(deps.rt, p.cluster, opId, factsAt);
    pre = precheck();
  }
  const moves = planMoves();
  const reservedLines = Object.entries(reserved)
    .filter(([t]) => t !== p.host)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([t, r]) => `${formatMiB(r.mib)} of ${t}'s memory is reserved by ${r.ops.length === 1 ? 'job' : 'jobs'} ${r.ops.join(', ')} (VMs planned there, not moved yet) and counted as used.`);
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
      ...Object.keys(errors).map((h) => `${failures[h]}; it is not a candidate target.`),
      ...reservedLines,
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
  await deps.rt.redis.set(deps.ops.keyOf(opId, 'plan'), JSON.stringify(plan));
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
  const approvalId = await requestStartApproval(deps, { ...op, params: { ...params(op), override } satisfies DrainParams }, plan);
  await deps.ops.patch(opId, { status: 'waiting', params: { ...params(op), stage: 'awaiting-start', waitingSince: deps.rt.clock.now(), override, approvalId } satisfies DrainParams });
  // The host stays ours while the plan waits for Start.
  await refreshLock(deps.rt, p.host, opId, startNeeds(deps, { ...op, params: { ...params(op), override } satisfies DrainParams }).expiryMs + 60_000);
  await refreshCard(deps, opId, { force: true });
  await watchWaiting(deps, opId);
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
  await queueStep(deps, 'drain-exec', `op-${opId}-exec-${round}`, { opId, round });
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
    await emit(deps, op, { type: 'locked-out', opId, held });
    await finishOp(deps, op, 'failed', lockedSentence(held));
    return;
  }
  const keeper = keepLocks(deps.rt, [p.host], opId, undefined, { owner: op.requester, op: 'drain' });
  try {
    const runs = await deps.rt.redis.incr(deps.ops.keyOf(opId, 'runs', round));
    await deps.rt.redis.expire(deps.ops.keyOf(opId, 'runs', round), 30 * 86_400);
    if (runs > 1) {
      const states = await vmStates(deps, opId);
      const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
      await emit(deps, op, { type: 'resumed', opId, moved, total: plan.moves.length });
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
    if (gate.refusal) {
      try {
        await emit(deps, op, { type: 'gate-refused', opId, host: p.host, why: gate.refusal.sentence });
        const mine = await readLedger(deps.rt, p.host);
        if (mine?.opId === opId && isOpen(mine)) await setLedgerStatus(deps.rt, p.host, 'rolled-back');
        await releaseLock(deps.rt, p.host, opId);
        await finishOp(deps, op, 'failed', gate.refusal.sentence);
      } finally {
        await gate.release();
      }
      return;
    }
    try {
      // Ledger: before anything moves.
      const ledger = await writeLedger(deps.rt, { host: p.host, cluster: p.cluster, opId, requester: op.requester, createdAt: deps.rt.clock.now(), status: 'draining', vms: plan.ledger });
      if (ledger.opId !== opId) {
        await emit(deps, op, { type: 'open-ledger', host: p.host, ledgerOpId: ledger.opId });
        await releaseLock(deps.rt, p.host, opId);
        await finishOp(deps, op, 'failed', `open ledger of job ${ledger.opId}`);
        return;
      }
      if (await ensureMaintenance(deps, op, p.host, true)) {
        // The host read again: vSphere is only entering maintenance until the host is empty, and
        // its notes (a fully automated DRS moving VMs on its own) belong in the thread too.
        const after = await deps.rt.adapters.forHost(p.host).describeHost(p.host).catch(() => undefined);
        await emit(deps, op, { type: 'maintenance-entered', host: p.host, entering: after?.enteringMaintenance === true, notes: after?.notes ?? [], moves: plan.moves.length, concurrency: concurrencyFor(deps, p) });
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
      await emit(deps, op, { type: 'lock-lost', opId, host: p.host, lost: outcome.lost, moved, total: plan.moves.length });
      await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `drain ${p.host}: lost the host lock`, targets: [p.host], opId, outcome: 'failed', detail: lockedSentence(outcome.lost) });
      await finishOp(deps, op, 'failed', `stopped after ${moved} of ${plan.moves.length} VMs moved: job ${outcome.lost.opId} has ${p.host} now`);
      return;
    }
    if (outcome.cancelled) {
      const states = await vmStates(deps, opId);
      const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
      await setLedgerStatus(deps.rt, p.host, 'drained');
      await emit(deps, op, { type: 'cancelled', opId, host: p.host, by: outcome.cancelled, moved, total: plan.moves.length });
      await releaseLock(deps.rt, p.host, opId);
      await finishOp(deps, op, 'cancelled', `cancelled after ${moved} of ${plan.moves.length} VMs moved`);
      return;
    }
    if (outcome.failed.length) {
      if (p.rollback === 'auto') {
        op = await deps.ops.patch(opId, { params: { ...params(op), stage: 'rolling-back', failed: outcome.failed } satisfies DrainParams });
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
async function maintenanceGate(deps: Deps, op: Operation, plan: DrainPlan): Promise<{ refusal: Refusal | null; release(): Promise<void> }> {
  const p = params(op);
  const none = { refusal: null, release: async () => undefined };
  if (Object.keys(await vmStates(deps, op.id)).length) return none;
  const adapter = deps.rt.adapters.forHost(p.host);
  if ((await adapter.describeHost(p.host)).maintenance) return none;
  const held = await acquireMutex(deps.rt.redis, deps.rt.key('lock', 'cluster-maintenance', p.cluster), { ttlMs: GATE_WAIT_MS, waitMs: GATE_WAIT_MS });
  if (!held) throw new Error(`another drain of ${p.cluster} is entering maintenance; try again`);
  const release = (): Promise<void> => held.release();
  try {
    const { facts } = await clusterFacts(deps, p.cluster);
    const others = facts.filter((f) => f.name !== p.host);
    const down = others.filter((f) => f.maintenance || f.cordoned === true).map((f) => f.name);
    const limit = deps.rt.config.clusters[p.cluster]?.maxInMaintenance ?? 1;
    let refused: Refusal | null = null;
    if (down.length + 1 > limit) {
      refused = refusal(`${down.length} of ${facts.length} hosts of ${p.cluster} ${down.length === 1 ? 'is' : 'are'} already in maintenance (${down.join(', ')}; limit ${limit}) since this plan was made.`, 'cluster-limit');
    } else {
      const gone = [...new Set(plan.moves.map((m) => m.target))].filter((t) => down.includes(t) || !facts.some((f) => f.name === t));
      if (gone.length) refused = refusal(`The plan sends VMs to ${gone.join(', ')}, which ${gone.length === 1 ? 'is' : 'are'} in maintenance or not answering now; run drain ${p.host} again for a fresh plan.`, 'target-unavailable');
    }
    return { refusal: refused, release };
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
    // A move whose reservation was dropped (it failed, then the drain was held and retried) must
    // reserve its target's memory again before it goes: another drain may have taken it since.
    const noRoom = await reserveAgain(deps, p.cluster, op.id, m);
    if (noRoom) {
      failed.push(m.vm);
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'failed', target: m.target, from: p.host, error: noRoom.sentence });
      await deps.outbox.post(op.conv, message(`${noRoom.sentence}.`));
      await refreshCard(deps, op.id);
      return;
    }
    await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'moving', target: m.target, from: p.host });
    await refreshCard(deps, op.id);
    const out = await moveVm(deps, op, { vm: m.vm, vmId: m.vmId, source: p.host, target: m.target, mode: m.mode }, { cluster: p.cluster, onProgress: progressReporter(deps, op.id, m.vm), signal: cancel.signal, locks: keeper });
    await setPercent(deps, op.id, m.vm, null);
    // The memory this move counted on: on its target now (done), or free again.
    await settleReservation(deps.rt, p.cluster, op.id, m.vmId, out.ok).catch(() => undefined);
    if (!out.ok && out.code === 'cancelled') {
      cancelled = cancel.by() ?? (await deps.ops.cancelRequested(op.id)) ?? 'someone';
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'pending', target: m.target, from: p.host, reason: `migration stopped by the cancel; it stays on ${out.stayedOn ?? p.host}` });
    } else if (!out.ok && out.code === 'lock-lost') {
      // Another operation has the host now (between retries, say): this VM stays, the drain stops.
      lost = keeper.lost();
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'pending', target: m.target, from: p.host, reason: `not moved: ${out.error}` });
    } else if (out.ok) {
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'moved', target: m.target, from: p.host, attempts: out.attempts, durationMs: out.durationMs, ...(out.already ? { reason: 'already on its target when checked' } : {}) });
      await reportLingering(deps, op, m.vm, p.host, out.lingering);
    } else if (out.code === 'gone' || out.code === 'moved-elsewhere') {
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'skipped', target: m.target, reason: out.error });
    } else {
      failed.push(m.vm);
      await setVmState(deps, op.id, { name: m.vm, id: m.vmId, state: 'failed', target: m.target, from: p.host, attempts: out.attempts, error: out.error });
      await emit(deps, op, { type: 'vm-failed', vm: m.vm, target: m.target, attempts: out.attempts, error: out.error });
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
  await emit(deps, op, { type: 'rollback-started', opId: op.id, host: p.host, back: back.length });
  try {
    await ensureMaintenance(deps, op, p.host, false);
  } catch (e) {
    await emit(deps, op, { type: 'rollback-stuck', host: p.host, error: errorText(e) });
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
  const failedVms = params((await deps.ops.get(op.id))!).failed ?? [];
  await setLedgerStatus(deps.rt, p.host, problems.length ? 'drained' : 'rolled-back');
  await emit(deps, op, { type: 'rolled-back', opId: op.id, host: p.host, returned, back: back.length, problems });
  await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: `drain ${p.host}: rollback`, targets: [p.host], opId: op.id, outcome: problems.length ? 'failed' : 'ok', detail: `${returned}/${back.length} back` });
  await summary(deps, (await deps.ops.get(op.id))!, plan, { status: 'failed', rolledBack: { failed: failedVms } });
  await releaseLock(deps.rt, p.host, op.id);
}

/**
 * Reserve a move's memory on its target again when it holds no reservation (drain/reserve.ts):
 * null when it may go, else why not (the move is not made). The target is read now, and other
 * drains' reservations and this drain's own unsettled ones count as used.
 */
async function reserveAgain(deps: Deps, cluster: string, opId: number, m: PlannedMove): Promise<Refusal | null> {
  if (await holdsReservation(deps.rt, cluster, opId, m.vmId)) return null;
  const factsAt = await redisNow(deps.rt);
  let facts: HostFacts;
  try {
    facts = await deps.rt.adapters.forHost(m.target).describeHost(m.target);
  } catch (e) {
    return refusal(`${m.target} could not be read before ${m.vm} went there again (${errorText(e)})`, 'unreadable');
  }
  const available = availableMiB(facts);
  const short = await reserveMoves(deps.rt, cluster, opId, [{ vmId: m.vmId, target: m.target, memoryMiB: m.memoryMiB }], { [m.target]: available }, factsAt, 'add');
  if (!short) return null;
  return refusal(`${m.target} has no room for ${m.vm} any more (${formatMiB(short.want)} wanted; ${formatMiB(Math.max(0, short.available - short.reserved))} free once other drains' reserved memory is counted); it was not moved`, 'no-room');
}

async function hold(deps: Deps, op: Operation, plan: DrainPlan, failed: string[]): Promise<void> {
  const p = params(op);
  const round = (p.round ?? 0) + 1;
  const states = await vmStates(deps, op.id);
  const moved = plan.moves.filter((m) => states[m.vm]?.state === 'moved').length;
  const left = plan.moves.filter((m) => !states[m.vm] || states[m.vm]!.state === 'pending').length;
  await deps.ops.patch(op.id, { status: 'waiting', params: { ...params(op), stage: 'held', round, failed, waitingSince: deps.rt.clock.now() } satisfies DrainParams });
  await refreshLock(deps.rt, p.host, op.id, HOLD_LOCK_MS);
  await emit(deps, op, { type: 'held', opId: op.id, host: p.host, failed, moved, total: plan.moves.length, left });
  await refreshCard(deps, op.id, { force: true });
  await watchWaiting(deps, op.id);
}

interface SaveResult {
  ok: boolean;
  error?: string;
}

async function savedStates(deps: Deps, opId: number): Promise<Record<string, SaveResult>> {
  const all = await deps.rt.redis.hgetall(deps.ops.keyOf(opId, 'saved'));
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
  const key = deps.ops.keyOf(op.id, 'saved');
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
    if (!result.ok) await emit(deps, op, { type: 'save-failed', vm: s.vm, host: p.host, error: result.error ?? 'not saved' });
  }
}

async function summary(deps: Deps, op: Operation, plan: DrainPlan, opts: { status?: Operation['status']; rolledBack?: { failed: string[] } } = {}): Promise<void> {
  const p = params(op);
  if (!opts.status) await reconcileMoves(deps, op, p.cluster, plan.moves, p.host);
  const states = await vmStates(deps, op.id);
  const durationMs = deps.rt.clock.now() - (op.startedAt ?? op.createdAt);
  const savedState = await savedStates(deps, op.id);
  const toSave = plan.stays.filter((s) => s.action === 'save');
  const tally: DrainTally = {
    moved: plan.moves.filter((m) => states[m.vm]?.state === 'moved').map((m) => ({ vm: m.vm, target: m.target, durationMs: states[m.vm]?.durationMs ?? 0 })),
    returned: plan.moves.filter((m) => states[m.vm]?.state === 'returned').map((m) => ({ vm: m.vm, from: states[m.vm]?.from ?? m.target })),
    toSave: toSave.length,
    saved: toSave.filter((s) => savedState[s.vm]?.ok).map((s) => s.vm),
    skipped: [
      ...plan.stays.filter((s) => s.action !== 'save').map((s): [string, string] => [s.vm, s.sentence]),
      ...plan.moves.filter((m) => states[m.vm]?.state === 'skipped').map((m): [string, string] => [m.vm, states[m.vm]!.reason ?? 'skipped']),
    ],
    failed: [
      ...plan.moves.filter((m) => ['failed', 'return-failed'].includes(states[m.vm]?.state ?? '')).map((m): [string, string] => [m.vm, states[m.vm]?.error ?? '']),
      ...toSave.filter((s) => savedState[s.vm] && !savedState[s.vm]!.ok).map((s): [string, string] => [s.vm, `not saved: ${savedState[s.vm]!.error ?? ''}`]),
    ],
  };
  const status = opts.status ?? (tally.failed.length ? 'partial' : 'succeeded');
  await emit(deps, op, { type: 'finished', opId: op.id, host: p.host, tally, status, durationMs, ...(opts.rolledBack ? { rolledBack: opts.rolledBack } : {}) });
  // The host is free before the operation says it ended: whoever waits on it (a rolling run's restore) finds it free.
  await releaseLock(deps.rt, p.host, op.id);
  await finishOp(deps, op, status, tallyLine(tally));
}

// ---------------------------------------------------------------------------------------
// Decisions

const drainDecisions: Controlled = {
  async resume(deps, op, decision: Decision, arg) {
    const p = params(op);
    const round = p.round ?? 0;
    if (decision === 'start') {
      await deps.ops.patch(op.id, { status: 'running', params: { ...params(op), stage: 'executing' } satisfies DrainParams });
      await refreshCard(deps, op.id, { force: true });
      await enqueueExec(deps, op.id, round);
      return;
    }
    const states = await vmStates(deps, op.id);
    if (decision === 'rollback') {
      await deps.ops.patch(op.id, { status: 'running', params: { ...params(op), stage: 'rolling-back' } satisfies DrainParams });
    } else if (decision === 'retry') {
      for (const s of Object.values(states)) if (s.state === 'failed') await setVmState(deps, op.id, { ...s, state: 'pending', error: undefined });
      await emit(deps, op, { type: 'retrying', vms: p.failed ?? [] });
      await deps.ops.patch(op.id, { status: 'running', params: { ...params(op), stage: 'executing', failed: [] } satisfies DrainParams });
    } else if (decision === 'skip') {
      const s: VmState | undefined = arg ? states[arg] : undefined;
      if (s) await setVmState(deps, op.id, { ...s, state: 'skipped', reason: `skipped after it failed (${s.error ?? 'error'})` });
      await emit(deps, op, { type: 'vm-skipped', vm: arg ?? '', host: p.host });
      await deps.ops.patch(op.id, { status: 'running', params: { ...params(op), stage: 'executing', failed: (p.failed ?? []).filter((v) => v !== arg) } satisfies DrainParams });
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
    return why.length ? refusal(why.join('; '), 'vms-changed') : null;
  },
  async replan(deps, op) {
    const n = (params(op).plans ?? 1) + 1;
    await deps.ops.patch(op.id, { status: 'running', params: { ...params(op), stage: 'planning', plans: n, approvalId: undefined } satisfies DrainParams });
    await refreshCard(deps, op.id, { force: true });
    await queueStep(deps, 'drain-plan', `op-${op.id}-plan-${n}`, { opId: op.id });
  },
  planBlocks(plan) {
    return drainPlanBlocks(plan as DrainPlan);
  },
  async stopWaiting(deps, op, why) {
    const p = params(op);
    await releaseLock(deps.rt, p.host, op.id);
    if (stageOf(op) === 'held') {
      const states = await vmStates(deps, op.id);
      const moved = Object.values(states).filter((s) => s.state === 'moved').length;
      await setLedgerStatus(deps.rt, p.host, 'drained');
      await emit(deps, op, { type: 'stopped-waiting', opId: op.id, title: op.title, host: p.host, why, held: true, moved });
      await finishOp(deps, op, 'cancelled', `${why} on hold after ${moved} moved`);
    } else {
      await emit(deps, op, { type: 'stopped-waiting', opId: op.id, title: op.title, host: p.host, why, held: false, moved: 0 });
      await finishOp(deps, op, 'cancelled', `${why}; nothing moved`);
    }
  },
};

/** Skip needs a VM that actually failed; checked before the decision is recorded. */
export async function validateSkip(deps: Deps, opId: string, vm: string): Promise<Refusal | null> {
  const op = await deps.ops.get(opId);
  if (!op || op.kind !== KIND) return null;
  const failed = params(op).failed ?? [];
  if (!failed.includes(vm)) return refusal(`${vm} is not a failed VM of job ${op.id}${failed.length ? `; failed: ${failed.join(', ')}` : ''}.`, 'not-failed');
  return null;
}

export { decide };

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
