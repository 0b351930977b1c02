/**
 * migrate <vm> to <host> [datastore <ds>] [dry-run] and precheck <vm> to <host> (seeds 002,
 * 003, 004): the drain's prechecks for one VM; with a datastore, a combined host + storage move
 * after the free-space check on the target datastore (seed 003). NPIV VMs keep their WWPN set:
 * the adapter creates the secondary vHBA on the target, migrates, destroys the primary on the
 * source, and undoes its own work on failure (seed 002). After the move the source is checked
 * for the VM's ports left behind (seed 000), reported with the removal button.
 * Plan card with Start / Cancel as for a drain; source and target are locked while it runs.
 */
import type { Job } from 'bullmq';
import { AdapterError, hostFailureSentence, type VmFacts } from '../../adapters/types.js';
import { precheckMigrate, renderMigratePrecheck, withFindings } from '../../core/prechecks.js';
import { formatDuration } from '../../core/duration.js';
import { audit } from '../../audit/audit.js';
import { context, message, section, type Block } from '../../chat/messages.js';
import type { Conversation, MessageRef } from '../../chat/conversation.js';
import type { Workflow } from '../wiring.js';
import { ensureCard, refreshCard, withCard } from '../cards.js';
import { errorText } from '../retry.js';
import type { Deps } from '../context.js';
import { paramsOf, type Operation } from '../operations.js';
import { acquireLocks, keepLocks, lockedSentence, releaseLock } from '../drain/locks.js';
import { refusal } from '../../core/refusal.js';
import { finishOp, opAtStage, queueStep, requestStartApproval, stageOf, startBlocks, startNeeds, watchWaiting, type Controlled } from '../drain/control.js';
import { moveVm, percents, progressReporter, reportLingering, setPercent, watchCancel } from '../drain/steps.js';
import { mention } from '../../core/permissions.js';

export const KIND = 'migrate';
export const PRECHECK_KIND = 'precheck';

export interface MigrateAsk {
  vm: string;
  target: string;
  datastore?: string;
  dryRun: boolean;
  /** `precheck <vm> to <host>`: verdict only. */
  precheckOnly?: boolean;
}

export interface MigrateParams extends MigrateAsk {
  stage?: string;
  vmId?: string;
  source?: string;
  cluster?: string;
  mode?: 'live' | 'cold';
  lines?: string[];
  /** What its waits keep (drain/control.ts waitState). */
  approvalId?: string;
  waitingSince?: number;
  durationMs?: number;
}

export function migrateParams(op: Pick<Operation, 'id' | 'kind' | 'params'>): MigrateParams {
  return paramsOf<MigrateParams>(op, [KIND, PRECHECK_KIND]);
}

export async function startMigrate(deps: Deps, req: { conv: Conversation; echo?: MessageRef | null; requester: string; title: string; ask: MigrateAsk }): Promise<Operation> {
  const op = await deps.ops.create({
    kind: req.ask.precheckOnly ? PRECHECK_KIND : KIND,
    ...(req.echo ? { echoRef: req.echo } : {}),
    title: req.title,
    requester: req.requester,
    conv: req.conv,
    hosts: [req.ask.target],
    params: { ...req.ask, stage: 'planning' } satisfies MigrateParams,
  });
  // The plan starts at once; the card (the command's answer) is posted beside it.
  await queueStep(deps, 'migrate-plan', `op-${op.id}-plan`, { opId: op.id });
  await ensureCard(deps, op.id);
  return op;
}

/** The VM anywhere in the inventory: the target's cluster first. */
async function findAnywhere(deps: Deps, name: string, target: string): Promise<VmFacts | null> {
  const first = deps.rt.inventory.clusterOf[target];
  const clusters = [first, ...Object.keys(deps.rt.config.clusters).filter((c) => c !== first)].filter((c): c is string => Boolean(c));
  for (const c of clusters) {
    const vm = await deps.rt.adapters.forCluster(c).findVm(name).catch(() => null);
    if (vm) return vm;
  }
  return null;
}

async function planStep(deps: Deps, job: Job): Promise<void> {
  let op = await opAtStage(deps, job, 'planning');
  if (!op) return;
  const opId = op.id;
  const p = migrateParams(op);
  op = await deps.ops.patch(opId, { status: 'running', startedAt: deps.rt.clock.now() });
  const end = async (status: Operation['status'], lines: string[], summary: string) => {
    await deps.outbox.post(op!.conv, message(lines[0]!, section(lines.join('\n').slice(0, 2900))));
    await finishOp(deps, op!, status, summary, { lines });
  };
  const vm = await findAnywhere(deps, p.vm, p.target);
  // Whatever the thread hears goes under the card, which was posted while the VM was looked up.
  op = (await withCard(deps, opId)) ?? op;
  if (!vm) {
    await end('failed', [`There is no VM ${p.vm} on any host Ferry manages; nothing was changed.`], 'no such VM');
    return;
  }
  let lines: string[];
  let ok: boolean;
  let mode: 'live' | 'cold';
  try {
    const [source, target, targetVms] = await Promise.all([
      deps.rt.adapters.forHost(vm.host).describeHost(vm.host),
      deps.rt.adapters.forHost(p.target).describeHost(p.target),
      deps.rt.adapters.forHost(p.target).listVms(p.target),
    ]);
    let pre = precheckMigrate(vm, source, target, { targetVms, ...(p.datastore ? { datastore: p.datastore } : {}) });
    // A configured migration network is not a working one: where the adapter can, the path is tried from the source.
    const adapter = deps.rt.adapters.forHost(vm.host);
    if (!pre.error && pre.mode === 'live' && vm.host !== p.target && adapter === deps.rt.adapters.forHost(p.target) && adapter.checkMigrationPath) {
      pre = withFindings(pre, await adapter.checkMigrationPath(vm.host, p.target));
    }
    lines = renderMigratePrecheck(pre);
    ok = pre.ok && !pre.error;
    mode = pre.mode;
    if (pre.error) {
      await end('failed', [`${pre.error} Nothing was changed.`], pre.error);
      return;
    }
  } catch (e) {
    const why = e instanceof AdapterError ? hostFailureSentence(e.host, e) : errorText(e);
    await end('failed', [`Ferry could not check ${p.vm}: ${why}. Nothing was changed.`], why);
    return;
  }
  const next: Partial<MigrateParams> = { vmId: vm.id, source: vm.host, cluster: deps.rt.inventory.clusterOf[vm.host], mode, lines };
  op = await deps.ops.patch(opId, { hosts: [vm.host, p.target], params: { ...migrateParams(op), ...next } satisfies MigrateParams });
  if (p.precheckOnly || p.dryRun || !ok) {
    await end(ok ? 'succeeded' : 'failed', p.dryRun && ok ? [...lines, 'Dry run: nothing was changed.'] : lines, lines[0]!);
    return;
  }
  const held = await acquireLocks(deps.rt, [vm.host, p.target], { opId, owner: op.requester, op: 'migrate' }, startNeeds(deps, op).expiryMs + 60_000);
  if (held) {
    await end('failed', [`${lockedSentence(held)} Nothing was changed.`], lockedSentence(held));
    return;
  }
  // Policy asking for approvers (approvals.migrate): the plan goes to an approval request.
  const approvalId = await requestStartApproval(deps, op, migratePlan(migrateParams(op)));
  await deps.ops.patch(opId, { status: 'waiting', params: { ...migrateParams(op), stage: 'awaiting-start', waitingSince: deps.rt.clock.now(), approvalId } satisfies MigrateParams });
  await refreshCard(deps, opId, { force: true });
  await watchWaiting(deps, opId);
}

async function execStep(deps: Deps, job: Job): Promise<void> {
  let op = await opAtStage(deps, job, 'executing');
  if (!op) return;
  const opId = op.id;
  const p = migrateParams(op);
  const hosts = [p.source!, p.target];
  const held = await acquireLocks(deps.rt, hosts, { opId, owner: op.requester, op: 'migrate' });
  if (held) {
    await deps.outbox.post(op.conv, message(`${lockedSentence(held)} job ${opId} stops here; nothing was changed.`));
    await finishOp(deps, op, 'failed', lockedSentence(held));
    return;
  }
  // Takes a lost lock back while nobody else has it; another operation holding it stops the move.
  const keeper = keepLocks(deps.rt, hosts, opId, undefined, { owner: op.requester, op: 'migrate' });
  const cancel = watchCancel(deps, opId);
  try {
    const runs = await deps.rt.redis.incr(deps.ops.keyOf(opId, 'runs'));
    if (runs > 1) await deps.outbox.post(op.conv, message(`Resumed job ${opId} after its worker stopped; checking where ${p.vm} is before doing anything.`));
    if (!op.startedAt) op = await deps.ops.patch(opId, { startedAt: deps.rt.clock.now() });
    const lostTo = await keeper.check();
    if (lostTo) {
      keeper.stop();
      await deps.outbox.post(op.conv, message(`${lockedSentence(lostTo)} job ${opId} stops here; ${p.vm} was not moved.`));
      await finishOp(deps, op, 'failed', lockedSentence(lostTo));
      return;
    }
    const out = await moveVm(
      deps,
      op,
      { vm: p.vm, vmId: p.vmId!, source: p.source!, target: p.target, mode: p.mode ?? 'live', ...(p.datastore ? { datastore: p.datastore } : {}) },
      { cluster: p.cluster!, onProgress: progressReporter(deps, opId, p.vm), signal: cancel.signal, locks: keeper },
    );
    cancel.stop();
    // Another operation took a host while the VM moved (its lock had expired): said, not hidden.
    const lostDuring = out.ok ? keeper.lost() : null;
    keeper.stop();
    await setPercent(deps, opId, p.vm, null);
    for (const h of hosts) await releaseLock(deps.rt, h, opId);
    const storage = p.datastore ? ` with its storage on ${p.datastore}` : '';
    if (out.ok) {
      const text = out.already
        ? `${p.vm} is on ${p.target}${storage} (it got there before this run checked); nothing moved twice.`
        : `${p.vm} moved ${p.mode === 'cold' ? 'cold' : 'live'} from ${p.source} to ${p.target}${storage} in ${formatDuration(out.durationMs)}.`;
      const lostNote = lostDuring ? ` While it moved, job ${lostDuring.opId} took ${lostDuring.host} (this job's lock had expired): ${lockedSentence(lostDuring)} Ferry did nothing more there.` : '';
      await deps.outbox.post(op.conv, message(text + lostNote));
      await reportLingering(deps, op, p.vm, p.source!, out.lingering);
      await finishOp(deps, op, 'succeeded', text);
    } else if (out.code === 'lock-lost') {
      // Another operation holds a host now (between attempts): no further attempt starts.
      const text = `job ${opId} lost its lock: ${out.error} It stops here; ${p.vm} stays on ${out.stayedOn ?? p.source} after ${out.attempts} attempt${out.attempts === 1 ? '' : 's'}.`;
      await deps.outbox.post(op.conv, message(text));
      await finishOp(deps, op, 'failed', text);
    } else if (out.code === 'cancelled') {
      const by = cancel.by() ?? (await deps.ops.cancelRequested(opId)) ?? 'someone';
      const where = out.stayedOn ?? p.source!;
      const text = `job ${opId} was cancelled by ${mention(by)}: the migration of ${p.vm} to ${p.target} was stopped and ${p.vm} stays on ${where}.`;
      await deps.outbox.post(op.conv, message(text, section(`:no_entry_sign: ${text}`), context(out.error)));
      await finishOp(deps, op, 'cancelled', `cancelled by ${mention(by)}; ${p.vm} stays on ${where}`);
    } else if (out.stayedOn === p.target) {
      const text = `${p.vm} reached ${p.target}, but the check after the move found a problem: ${out.error}. Ferry leaves it there for someone to look at.`;
      await deps.outbox.post(op.conv, message(text));
      await finishOp(deps, op, 'failed', text);
    } else {
      const text = `${p.vm} could not move to ${p.target} after ${out.attempts} attempt${out.attempts === 1 ? '' : 's'}: ${out.error}. It stays on ${p.source}; the adapter undid its partial work.`;
      await deps.outbox.post(op.conv, message(text));
      await finishOp(deps, op, 'failed', text);
    }
    await audit(deps.rt, { actor: op.requester, kind: 'workflow', action: op.title, targets: [p.vm, ...hosts], opId, outcome: out.ok ? 'ok' : 'failed', ...(out.ok ? {} : { detail: out.code === 'cancelled' ? 'cancelled' : out.error.slice(0, 500) }) });
  } finally {
    cancel.stop();
    keeper.stop();
  }
}

/** What an approval of a migration binds to. */
function migratePlan(p: MigrateParams): Record<string, unknown> {
  return { vm: p.vm, vmId: p.vmId, source: p.source, target: p.target, datastore: p.datastore, mode: p.mode, lines: p.lines };
}

const migrateDecisions: Controlled = {
  async currentPlan(_deps, op) {
    return migratePlan(migrateParams(op));
  },
  async check(deps, op) {
    const p = migrateParams(op);
    const vm = await deps.rt.adapters.forHost(p.source!).findVm(p.vm);
    if (!vm) return refusal(`${p.vm} is no longer found`, 'gone');
    return vm.host === p.source ? null : refusal(`${p.vm} is now on ${vm.host}, not ${p.source}`, 'moved-elsewhere');
  },
  planBlocks(plan) {
    const lines = (plan as { lines?: string[] }).lines ?? [];
    return [section(lines.join('\n').slice(0, 2900))];
  },
  async resume(deps, op) {
    await deps.ops.patch(op.id, { status: 'running', params: { ...migrateParams(op), stage: 'executing' } satisfies MigrateParams });
    await refreshCard(deps, op.id, { force: true });
    await queueStep(deps, 'migrate-exec', `op-${op.id}-exec`, { opId: op.id });
  },
  async stopWaiting(deps, op, why) {
    for (const h of op.hosts) await releaseLock(deps.rt, h, op.id);
    await deps.outbox.post(op.conv, message(`job ${op.id} (${op.title}): ${why}. Nothing was moved.`));
    await finishOp(deps, op, 'cancelled', `${why}; nothing moved`);
  },
};

function card(deps: Deps, op: Operation): Promise<ReturnType<typeof message>> {
  return (async () => {
    const p = migrateParams(op);
    const stage = stageOf(op);
    const what = op.kind === PRECHECK_KIND ? 'Precheck' : 'Migrate';
    const head = `*${what} ${p.vm} → ${p.target}${p.datastore ? ` (datastore ${p.datastore})` : ''}* · job ${op.id}`;
    const blocks: Block[] = [];
    if (stage === 'planning') return message(`${op.title}: checking`, section(`${head} · checking…`));
    if (stage === 'awaiting-start' && op.status === 'waiting') {
      blocks.push(section(`${head} · plan ready`), section((p.lines ?? []).join('\n').slice(0, 2900)));
      blocks.push(...(await startBlocks(deps, op, `Start: migrate ${p.vm}`)));
      return message(`${op.title}: plan ready`, ...blocks);
    }
    if (op.status === 'running' && stage === 'executing') {
      const pct = (await percents(deps, op.id))[p.vm] ?? 0;
      return message(
        `${op.title}: moving ${pct}%`,
        section(`${head} · moving`),
        { type: 'progress', done: pct, total: 100, label: `${p.vm}: ${p.source} → ${p.target}` },
        // Cancel stops the migration in flight (domjobabort, CancelTask, the Hyper-V migration job); the VM stays on its source.
        { type: 'actions', buttons: [{ action: 'ferry:drain-cancel', label: 'Cancel', value: String(op.id), style: 'danger', command: `cancel ${op.id}` }] },
      );
    }
    return message(`${op.title}: ${op.status}`, section(`${head} · ${op.status}`), ...(op.summary ? [context(op.summary)] : []));
  })();
}

export const migrateWorkflow: Workflow = {
  name: 'migrate',
  jobs: { 'migrate-plan': { queue: 'ops', handler: planStep }, 'migrate-exec': { queue: 'ops', handler: execStep } },
  cards: { [KIND]: card, [PRECHECK_KIND]: card },
  controlled: { [KIND]: migrateDecisions },
};
