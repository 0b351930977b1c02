/**
 * restore <host> (alias undrain; seed 001 rule 3): leave maintenance, then every VM of the
 * drain's ledger that is not on its home host moves back, at bounded concurrency. Drift is
 * reported, not guessed around: a VM gone from the cluster, a VM renamed (same id, other
 * name: it still comes home), a VM that a precheck now blocks from going home.
 * Idempotent like the drain: each VM is looked up before it moves; a re-run finishes the rest.
 */
import type { Job } from 'bullmq';
import type { HostFacts } from '../../adapters/types.js';
import { planReturnHome, type HomeMove } from '../../core/placement.js';
import { pMap } from '../../core/pmap.js';
import { formatDuration } from '../../core/duration.js';
import { mention } from '../../core/permissions.js';
import { audit } from '../../audit/audit.js';
import { context, message, plural, section, type Block } from '../../chat/messages.js';
import type { Conversation, MessageRef } from '../../chat/conversation.js';
import type { CardRenderer, Workflow } from '../wiring.js';
import { ensureCard, refreshCard, withCard } from '../cards.js';
import { errorText } from '../retry.js';
import type { Deps } from '../context.js';
import { FINISHED, paramsOf, type Operation } from '../operations.js';
import { acquireLock, keepLocks, lockedSentence, releaseLock } from '../drain/locks.js';
import { redisNow, reserveMoves, settleReservation } from '../drain/reserve.js';
import { isOpen, readLedger, setLedgerStatus, type LedgerVm } from '../drain/ledger.js';
import { dataLossNote } from '../epoch.js';
import { finishOp, opAtStage, queueStep } from '../drain/control.js';
import { auditedCall, clusterFacts, ensureMaintenance, locateVm, moveVm, percents, progressReporter, reportLingering, setPercent, setVmState, vmStates, watchCancel } from '../drain/steps.js';

export const KIND = 'restore';

/** A restore's params: the host it brings VMs home to, and what its ledger read counted. */
export interface RestoreParams {
  host: string;
  cluster: string;
  stage: string;
  /** Moves planned (set once the ledger is read). */
  total?: number;
  alreadyHome?: number;
  durationMs?: number;
}

export function restoreParams(op: Pick<Operation, 'id' | 'kind' | 'params'>): RestoreParams {
  return paramsOf<RestoreParams>(op, [KIND]);
}

interface Drift {
  vm: string;
  /** 'elsewhere': the VM belongs to another host (it was here only because that host was drained). */
  kind: 'gone' | 'renamed' | 'blocked' | 'failed' | 'elsewhere';
  sentence: string;
}

export async function startRestore(
  deps: Deps,
  req: { conv: Conversation; echo?: MessageRef | null; requester: string; title: string; host: string; lock?: (opId: number) => Promise<boolean> },
): Promise<Operation | null> {
  const cluster = deps.rt.inventory.clusterOf[req.host]!;
  const op = await deps.ops.create({ kind: KIND, ...(req.echo ? { echoRef: req.echo } : {}), title: req.title, requester: req.requester, conv: req.conv, hosts: [req.host], params: { host: req.host, cluster, stage: 'restoring' } satisfies RestoreParams });
  if (req.lock && !(await req.lock(op.id))) return null;
  // The restore starts at once; the card (the command's answer) is posted beside it.
  await queueStep(deps, 'restore', `op-${op.id}-restore`, { opId: op.id });
  await ensureCard(deps, op.id);
  return op;
}

async function restoreStep(deps: Deps, job: Job): Promise<void> {
  let op = await opAtStage(deps, job, 'restoring');
  if (!op) return;
  const opId = op.id;
  const { host, cluster } = restoreParams(op);
  const held = await acquireLock(deps.rt, { host, opId, owner: op.requester, op: 'restore' });
  // Whatever the thread hears goes under the card (posted beside the job's start).
  op = (await withCard(deps, opId)) ?? op;
  if (held) {
    await deps.outbox.post(op.conv, message(`${lockedSentence(held)} Nothing was changed.`));
    await finishOp(deps, op, 'failed', lockedSentence(held));
    return;
  }
  const keeper = keepLocks(deps.rt, [host], opId, undefined, { owner: op.requester, op: 'restore' });
  try {
    const runs = await deps.rt.redis.incr(deps.ops.keyOf(opId, 'runs'));
    if (runs > 1) await deps.outbox.post(op.conv, message(`Resumed job ${opId} after its worker stopped; carrying on from the hosts' real state.`));
    if (!op.startedAt) op = await deps.ops.patch(opId, { status: 'running', startedAt: deps.rt.clock.now() });
    const ledger = await readLedger(deps.rt, host);
    if (!ledger || !isOpen(ledger)) {
      const sentence = `${host} has no drain ledger to restore; only a host drained by Ferry can be restored.${await dataLossNote(deps.rt, host)}`;
      await deps.outbox.post(op.conv, message(sentence));
      await releaseLock(deps.rt, host, opId);
      await finishOp(deps, op, 'failed', sentence);
      return;
    }
    await setLedgerStatus(deps.rt, host, 'restoring');
    // The memory its VMs take back is reserved before the host leaves maintenance, so a drain of
    // the cluster planning meanwhile does not count it as free (drain/reserve.ts). The home host
    // is not judged here: its VMs lived there (the return plan checks hard limits).
    const unlimited = { [host]: Number.MAX_SAFE_INTEGER };
    await reserveMoves(deps.rt, cluster, opId, ledger.vms.filter((v) => v.home === host).map((v) => ({ vmId: v.id, target: host, memoryMiB: v.memoryMiB })), unlimited, await redisNow(deps.rt));
    if (await ensureMaintenance(deps, op, host, false)) await deps.outbox.post(op.conv, message(`${host} is out of maintenance. Bringing its VMs home.`));

    const { facts, vms, failures } = await clusterFacts(deps, cluster);
    const byHost = new Map(facts.map((f) => [f.name, f]));
    const home = byHost.get(host);
    if (!home) throw new Error(failures[host] ?? `${host} did not answer`);
    const drift: Drift[] = [];
    const moves: HomeMove[] = [];
    const located = await pMap(ledger.vms, 8, async (lv) => ({ lv, where: await locateVm(deps, cluster, lv.name, lv.id) }));
    for (const { lv, where } of located) {
      if (lv.home !== host) {
        // Not this host's VM: it came here from a drained host, whose restore brings it home.
        drift.push({ vm: lv.name, kind: 'elsewhere', sentence: await belongsElsewhere(deps, lv, where?.vm.host ?? null) });
        continue;
      }
      if (!where) {
        drift.push({ vm: lv.name, kind: 'gone', sentence: `${lv.name} is gone: no VM of ${cluster} has its id any more.` });
        continue;
      }
      if (where.renamed) drift.push({ vm: lv.name, kind: 'renamed', sentence: `${lv.name} is now called ${where.vm.name} (same VM id); it comes home under its new name.` });
      const current = byHost.get(where.vm.host);
      if (!current) {
        drift.push({ vm: lv.name, kind: 'failed', sentence: `${lv.name} is on ${where.vm.host}, and ${failures[where.vm.host] ?? `${where.vm.host} did not answer`}; it stays there.` });
        continue;
      }
      moves.push({ vm: where.vm, current });
    }
    const plan = planReturnHome({ home, moves, homeVms: vms[host] ?? [] });
    // Only what really moves home stays reserved.
    const sizes = new Map(located.flatMap(({ where }) => (where ? [[where.vm.id, where.vm.memoryMiB] as const] : [])));
    await reserveMoves(deps.rt, cluster, opId, plan.moves.map((m) => ({ vmId: m.vmId, target: host, memoryMiB: sizes.get(m.vmId) ?? 0 })), unlimited, await redisNow(deps.rt));
    for (const b of plan.blocked) drift.push({ vm: b.vm, kind: 'blocked', sentence: `${b.vm} cannot come home now: ${b.reasons.join(' ')}` });
    const total = plan.moves.length;
    await deps.ops.patch(opId, { params: { ...restoreParams(op), total, alreadyHome: plan.alreadyHome.length } satisfies RestoreParams });
    for (const m of plan.moves) await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'pending', target: host, from: m.from });
    await refreshCard(deps, opId);

    const conc = deps.rt.config.clusters[cluster]?.migrationConcurrency ?? deps.rt.config.limits.migrationConcurrency;
    // A cancel aborts the migrations in flight (the VMs stay where they are), not only the next ones.
    const cancel = watchCancel(deps, opId);
    await pMap(plan.moves, conc, async (m) => {
      if (cancel.signal.aborted || (await deps.ops.cancelRequested(opId))) return;
      // The host must still be this restore's: another operation holding it stops the restore.
      if (await keeper.check()) return;
      const states = await vmStates(deps, opId);
      if (states[m.vm]?.state === 'returned') return;
      await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'returning', target: host, from: m.from });
      const out = await moveVm(deps, op!, { vm: m.vm, vmId: m.vmId, source: m.from, target: host, mode: m.mode }, { cluster, onProgress: progressReporter(deps, opId, m.vm), signal: cancel.signal, locks: keeper });
      await setPercent(deps, opId, m.vm, null);
      await settleReservation(deps.rt, cluster, opId, m.vmId, out.ok).catch(() => undefined);
      if (!out.ok && out.code === 'lock-lost') {
        // Another operation has the host now: this VM stays where it is; the restore stops below.
        await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'pending', target: host, from: m.from, reason: `not moved: ${out.error}` });
      } else if (!out.ok && out.code === 'cancelled') {
        await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'pending', target: host, from: m.from, reason: `cancelled; it stays on ${out.stayedOn ?? m.from}` });
      } else if (out.ok) {
        await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'returned', target: host, from: m.from, durationMs: out.durationMs });
        await reportLingering(deps, op!, m.vm, m.from, out.lingering);
      } else {
        await setVmState(deps, opId, { name: m.vm, id: m.vmId, state: 'return-failed', target: host, from: m.from, error: out.error });
        drift.push({ vm: m.vm, kind: 'failed', sentence: `${m.vm} could not come home from ${m.from}: ${out.error}` });
      }
      await refreshCard(deps, opId);
    }).finally(() => cancel.stop());

    const lostTo = keeper.lost();
    if (lostTo) {
      keeper.stop();
      const back = Object.values(await vmStates(deps, opId)).filter((x) => x.state === 'returned').length;
      const sentence = `stopped after ${back} of ${plan.moves.length} VMs came home: ${lockedSentence(lostTo)}`;
      await setLedgerStatus(deps.rt, host, 'drained');
      await deps.outbox.post(op.conv, message(`job ${opId} lost its lock on ${host}: ${lockedSentence(lostTo)} It stopped after its current migration; ${back} of ${plan.moves.length} VMs are home. Once job ${lostTo.opId} is done, restore ${host} brings the rest home.`));
      await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `restore ${host}: lost the host lock`, targets: [host], opId, outcome: 'failed', detail: lockedSentence(lostTo) });
      await finishOp(deps, op, 'failed', sentence);
      return;
    }

    // save-non-ha: the VMs the drain saved in place (action 'save' in its ledger) start again
    // from their saved state; a VM saved before the drain, or started by hand since, is left be.
    const toResume = ledger.vms.filter((lv) => lv.action === 'save');
    const resumed: string[] = [];
    const adapter = deps.rt.adapters.forHost(host);
    for (const lv of toResume) {
      if (await deps.ops.cancelRequested(opId)) break;
      const where = located.find((x) => x.lv.id === lv.id)?.where;
      if (!where || where.vm.host !== host || where.vm.power !== 'saved') continue;
      try {
        if (!adapter.resumeVm) throw new Error(`${adapter.kind} has no way to resume a saved VM`);
        await auditedCall(deps, op, 'resumeVm', [where.vm.name, host], () => adapter.resumeVm!(host, where.vm.name));
        const now = (await adapter.listVms(host)).find((v) => v.id === lv.id);
        if (now?.power !== 'running') throw new Error(`it is ${now?.power ?? 'gone'} after resuming`);
        resumed.push(where.vm.name);
      } catch (e) {
        drift.push({ vm: lv.name, kind: 'failed', sentence: `${lv.name} was saved by the drain and could not be resumed on ${host}: ${errorText(e)}` });
      }
    }

    const states = await vmStates(deps, opId);
    const back = plan.moves.filter((m) => states[m.vm]?.state === 'returned');
    const cancelledBy = await deps.ops.cancelRequested(opId);
    const failed = drift.filter((d) => d.kind === 'failed');
    const elsewhere = drift.filter((d) => d.kind === 'elsewhere').length;
    const blocked = plan.blocked.map((b) => b.vm);
    // Failed moves leave the ledger open: another restore tries them again. A VM a precheck
    // blocks (a hard limit of its home host) would be blocked again by every restore, and an
    // open ledger refuses the host's next drain: the ledger closes, naming what it left out,
    // and the operation says plainly that those VMs are not home (partial).
    if (failed.length || cancelledBy) await setLedgerStatus(deps.rt, host, 'drained');
    else await setLedgerStatus(deps.rt, host, 'restored', { restoredBy: opId, ...(blocked.length ? { leftOut: blocked } : {}) });
    const durationMs = deps.rt.clock.now() - (op.startedAt ?? op.createdAt);
    const headline = `${host} ${blocked.length || failed.length ? 'partly restored' : 'restored'} in ${formatDuration(durationMs)}: ${plural(back.length, 'VM')} back home, ${plan.alreadyHome.length} already there${toResume.length ? `, ${resumed.length} resumed from saved state` : ''}${elsewhere ? `, ${elsewhere} left to ${elsewhere === 1 ? 'its own home host' : 'their own home hosts'}` : ''}${drift.length > elsewhere ? `, ${plural(drift.length - elsewhere, 'drift')} to look at` : ''}`;
    const blocks: Block[] = [section(`*${headline}.*`)];
    if (back.length) blocks.push({ type: 'table', title: '*Back home*', columns: ['VM', 'From', 'Took'], rows: back.map((m) => [m.vm, m.from, formatDuration(states[m.vm]?.durationMs ?? 0)]) });
    if (drift.length > elsewhere) blocks.push({ type: 'table', title: '*Drift*', columns: ['VM', 'What'], rows: drift.filter((d) => d.kind !== 'elsewhere').map((d) => [d.vm, d.sentence]) });
    if (elsewhere) blocks.push({ type: 'table', title: `*Not ${host}'s VMs* (left where they are)`, columns: ['VM', 'Where it belongs'], rows: drift.filter((d) => d.kind === 'elsewhere').map((d) => [d.vm, d.sentence]) });
    const blockedText = blocked.length
      ? `${plural(blocked.length, 'VM')} could not come home: ${blocked.join(', ')}. ${blocked.length === 1 ? 'It stays where it is and keeps' : 'They stay where they are and keep'} running; fix what blocks ${blocked.length === 1 ? 'it' : 'them'} (see Drift), then \`migrate ${blocked[0]} to ${host}\`${blocked.length > 1 ? ' (and the same for the others)' : ''} brings ${blocked.length === 1 ? 'it' : 'them'} home.${failed.length || cancelledBy ? '' : ` The ledger is closed so ${host} can be drained again; restore ${host} no longer covers ${blocked.length === 1 ? 'it' : 'them'}.`}`
      : '';
    if (blockedText) blocks.push(section(`:warning: ${blockedText}`));
    blocks.push(context(`job ${opId} · ledger of job ${ledger.opId}${cancelledBy ? ` · cancelled by ${mention(cancelledBy)}` : ''}`));
    await deps.outbox.post(op.conv, message(`${headline}.${blockedText ? ` ${blockedText}` : ''}`, ...blocks));
    await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: `restore ${host}`, targets: [host, ...back.map((m) => m.vm)], opId, outcome: failed.length || blocked.length ? 'failed' : 'ok', detail: `${headline}${blocked.length ? `; not home: ${blocked.join(', ')}` : ''}` });
    await releaseLock(deps.rt, host, opId);
    await finishOp(
      deps,
      op,
      cancelledBy ? 'cancelled' : failed.length || blocked.length ? 'partial' : 'succeeded',
      `${back.length} back home, ${plan.alreadyHome.length} already there, ${toResume.length ? `${resumed.length} resumed, ` : ''}${drift.length} drift${blocked.length ? `, not home: ${blocked.join(', ')}` : ''}`,
    );
  } catch (e) {
    deps.rt.log.error({ opId, err: e }, 'restore failed');
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
      await deps.outbox.post(op.conv, message(`restore ${host} stopped: ${errorText(e)}. The ledger is kept; run restore ${host} again.`));
      await setLedgerStatus(deps.rt, host, 'drained');
      await releaseLock(deps.rt, host, opId);
      await finishOp(deps, op, 'failed', errorText(e));
    }
    throw e;
  } finally {
    keeper.stop();
  }
}

/**
 * One sentence saying where a VM of this ledger belongs when that is another host: the drain
 * that moved it here from there is not restored yet, or was restored while the VM was here.
 */
async function belongsElsewhere(deps: Deps, lv: LedgerVm, now: string | null): Promise<string> {
  if (now === lv.home) return `${lv.name} is home on ${lv.home} already.`;
  const where = now ? `it stays on ${now}` : 'it is not found in the cluster now';
  const other = await readLedger(deps.rt, lv.home);
  if (other && isOpen(other) && other.vms.some((v) => v.id === lv.id)) {
    return `${lv.name} belongs to ${lv.home}, not here (drain job ${other.opId} moved it off ${lv.home}); ${where}, and restore ${lv.home} brings it home.`;
  }
  return `${lv.name} belongs to ${lv.home}, not here; ${where}${now ? `, and migrate ${lv.name} to ${lv.home} brings it home` : ''}.`;
}

const restoreCard: CardRenderer = async (deps, op) => {
  const p = restoreParams(op);
  const host = p.host;
  const states = Object.values(await vmStates(deps, op.id));
  const pct = await percents(deps, op.id);
  // Until the ledger is read there is nothing to count: no "100% 0/0" progress.
  const known = p.total !== undefined;
  const total = p.total ?? 0;
  const back = states.filter((s) => s.state === 'returned').length;
  const failed = states.filter((s) => s.state === 'return-failed').length;
  const already = p.alreadyHome ?? 0;
  const finished = FINISHED.includes(op.status);
  const word = finished ? op.status : known ? 'bringing VMs home' : 'reading the ledger';
  const rows = states.map((s) => [s.name, s.from ?? '', s.state === 'returning' ? `moving back${pct[s.name] !== undefined ? ` ${pct[s.name]}%` : ''}` : s.state === 'returned' ? 'home' : s.state === 'return-failed' ? 'FAILED' : s.state === 'pending' ? 'waiting' : s.state]);
  const label = `${back}/${total} VMs back${failed ? `, ${failed} failed` : ''}${already ? ` (${already} already home)` : ''}`;
  return message(
    `${op.title}: ${word}`,
    section(`*Restore ${host}* · job ${op.id} · ${word}`),
    ...(known && total > 0 ? [{ type: 'progress' as const, done: back, total, label }] : known ? [section(`Nothing to move: ${already ? `${plural(already, 'VM')} already home` : 'the ledger is empty'}.`)] : []),
    ...(rows.length ? [{ type: 'table' as const, columns: ['VM', 'From', 'State'], rows }] : []),
    context(`requested by ${mention(op.requester)}`),
  );
};

export type { HostFacts };

export const restoreWorkflow: Workflow = { name: 'restore', jobs: { restore: { queue: 'ops', handler: restoreStep } }, cards: { [KIND]: restoreCard } };
