/**
 * remove stale ports, after approval (seed 000: get, compare, then remove):
 *   1. claim: approved -> executed with a compare-and-set; only the winner runs, so a double
 *      click, a retried delivery or a second enqueue removes nothing twice. A retry of this
 *      job after a crash resumes from the per-port results already recorded;
 *   2. per port of the frozen plan, in order: read the host's NPIV picture again just before
 *      removing and skip the port (saying why) if it is gone, if a VM now uses it, or if it
 *      is no longer on the HBA and fabric the approvers saw; otherwise remove it through the
 *      adapter. Each port is audited (kind 'adapter') and shown on the card; the thread gets
 *      its lines in at most four milestone messages;
 *   3. a failure is reported as "port 3 of 7 failed: why" and the other ports go on;
 *   4. summary in the thread and on the card. There is no rollback: the card said so first.
 * The kill switch is honoured between ports: the port being removed finishes, the rest wait.
 */
import { FINISHED, paramsOf, type Operation } from '../operations.js';
import { hostFailureSentence } from '../../adapters/types.js';
import { DelayedError, type Job } from 'bullmq';
import { findStalePorts } from '../../core/stale-ports.js';
import { message, section, type Message } from '../../chat/messages.js';
import type { CardRenderer, Workflow } from '../wiring.js';
import { refreshCard } from '../cards.js';
import { errorText, withDeadline } from '../retry.js';
import type { Deps } from '../context.js';
import { audit } from '../../audit/audit.js';
import { approvedBy, canExecute, markExecuted, voidRequest, type ApprovalRequest } from '../../approvals/policy.js';
import { approvalStore, redrawCard, requestApproval, type ApprovalHandler } from '../../approvals/service.js';
import type { ApprovalRecord } from '../../approvals/store.js';
import type { Conversation } from '../../chat/conversation.js';
import { removalHeadline, renderApprovalCard, summaryLine, tally, type PlannedPort, type PortOutcome } from '../../approvals/cards.js';
import { pauseState, pausedBy } from '../../approvals/kill-switch.js';
import { mention } from '../../core/permissions.js';
import { withMutex } from '../../mutex.js';

export const REMOVAL_KIND = 'remove-stale-ports';

/** A removal's params: the approval request it carries out, and why it is held (pause all). */
export interface RemovalParams {
  approvalId: string;
  paused?: string;
}

export function removalParams(op: Pick<Operation, 'id' | 'kind' | 'params'>): RemovalParams {
  return paramsOf<RemovalParams>(op, [REMOVAL_KIND]);
}
export const REMOVAL_JOB = 'remove-stale-ports';

const PORT_DEADLINE_MS = 90_000;
const PAUSE_RECHECK_MS = 2000;
/** Thread messages per removal, at most (plus the summary). */
const MILESTONES = 4;

type Claim = 'claimed' | 'resume' | 'refused';

async function checkAndRemove(deps: Deps, request: ApprovalRequest<PlannedPort[]>, port: PlannedPort, n: number, opId: number): Promise<PortOutcome> {
  const base = { n, host: port.host, wwpn: port.wwpn };
  const auditPort = (outcome: 'ok' | 'failed' | 'skipped', detail?: string) =>
    audit(deps.rt, {
      actor: request.requester,
      kind: 'adapter',
      action: `removeVirtualPort ${port.wwpn}`,
      targets: [port.host, port.wwpn],
      opId,
      approvedBy: approvedBy(request),
      outcome,
      detail: detail ? `request ${request.id}: ${detail}` : `request ${request.id}`,
    });
  let inv;
  try {
    const adapter = deps.rt.adapters.forHost(port.host);
    inv = await withDeadline(PORT_DEADLINE_MS, `re-check of ${port.host}`, (signal) => adapter.npivInventory(port.host, { signal }));
  } catch (e) {
    const reason = `could not re-check ${port.host} before removing ${port.wwpn}: ${hostFailureSentence(port.host, e)}`;
    await auditPort('failed', reason);
    return { ...base, outcome: 'failed', reason };
  }
  const present = inv.virtualPorts.find((p) => p.wwpn === port.wwpn);
  // Set just before the adapter call: a port gone after a crash mid-call was removed by us.
  const attemptedKey = deps.ops.keyOf(opId, 'attempted');
  if (!present && (await deps.rt.redis.hexists(attemptedKey, String(n)))) {
    await auditPort('ok', `confirmed gone on re-check after Ferry was interrupted mid-removal; fabric ${port.fabric}, HBA ${port.hba}`);
    return { ...base, outcome: 'removed', reason: 'confirmed gone after Ferry was interrupted during its removal' };
  }
  let skip: string | undefined;
  if (!present) skip = `${port.wwpn} is no longer on ${port.host} (already removed)`;
  else if (!findStalePorts(inv).some((p) => p.wwpn === port.wwpn)) {
    const owner = inv.endpointOwners?.[port.wwpn];
    skip = `${port.wwpn} on ${port.host} is now in use${owner ? ` by VM ${owner}` : ' by a VM'}; left in place`;
  } else if (present.hbaWwpn !== port.hba || present.fabric !== port.fabric) {
    skip = `${port.wwpn} on ${port.host} is now on HBA ${present.hbaWwpn}, fabric ${present.fabric}, not what was approved; left in place`;
  }
  if (skip) {
    await auditPort('skipped', skip);
    return { ...base, outcome: 'skipped', reason: skip };
  }
  await deps.rt.redis.multi().hset(attemptedKey, String(n), String(Date.now())).expire(attemptedKey, 30 * 86_400).exec();
  try {
    await withDeadline(PORT_DEADLINE_MS, `removal of ${port.wwpn} on ${port.host}`, (signal) => deps.rt.adapters.forHost(port.host).removeVirtualPort(present!, { signal }));
  } catch (e) {
    // A removal that errored or outlived its deadline may still have happened: look before saying it failed.
    const gone = await deps.rt.adapters
      .forHost(port.host)
      .npivInventory(port.host)
      .then((again) => !again.virtualPorts.some((p) => p.wwpn === port.wwpn))
      .catch(() => false);
    if (gone) {
      await auditPort('ok', `the adapter reported "${errorText(e)}" but the port is gone on re-check; fabric ${port.fabric}, HBA ${port.hba}`);
      return { ...base, outcome: 'removed', reason: `gone on re-check although the call reported: ${errorText(e)}` };
    }
    const reason = `${port.wwpn}: ${hostFailureSentence(port.host, e)}`;
    await auditPort('failed', reason);
    return { ...base, outcome: 'failed', reason };
  }
  await auditPort('ok', `fabric ${port.fabric}, HBA ${port.hba}`);
  return { ...base, outcome: 'removed' };
}

export function portLine(o: PortOutcome, total: number, port: PlannedPort): string {
  if (o.outcome === 'removed') return `Port ${o.n} of ${total}: removed ${port.wwpn} on ${port.host} (fabric ${port.fabric}).`;
  if (o.outcome === 'skipped') return `Port ${o.n} of ${total} skipped: ${o.reason}.`;
  return `Port ${o.n} of ${total} failed: ${o.reason}. The other ports go on.`;
}

function summaryMessage(request: ApprovalRequest<PlannedPort[]>, opId: number, results: PortOutcome[]): Message {
  const line = summaryLine(request.plan.length, results);
  const t = tally(results);
  const rows = results.filter((r) => r.outcome !== 'removed').map((r) => [String(r.n), r.host, r.wwpn, r.outcome, r.reason ?? '']);
  const text = `Removal finished (request ${request.id}, job ${opId}): ${line}`;
  return message(
    text,
    section(`*${text}*`),
    ...(rows.length ? [{ type: 'table' as const, title: t.failed ? '*Not removed* (failed ports can be retried with a new request)' : '*Not removed*', columns: ['#', 'Host', 'WWPN', 'Result', 'Why'], rows }] : []),
  );
}

async function removeStalePorts(deps: Deps, job: Job): Promise<void> {
  const { approvalId } = job.data as { approvalId: string };
  const store = approvalStore(deps);
  const now = deps.rt.clock.now();
  const out = await store.transition<PlannedPort[], Claim>(approvalId, (request) => {
    if (request.status === 'executed') return { next: null, result: 'resume' };
    const claimed = markExecuted(request, now);
    if (claimed) return { next: claimed, result: 'claimed' };
    // An approved request whose stored plan no longer hashes to what was approved: void, never run.
    if (request.status === 'approved' && !canExecute(request)) return { next: voidRequest(request, 'the stored plan no longer matches the approved one', now).request, result: 'refused' };
    return { next: null, result: 'refused' };
  });
  if (!out) return;
  const { request, meta } = out.record;
  const opId = meta.opId!;
  if (out.result === 'refused') {
    deps.rt.log.warn({ approvalId, status: request.status }, 'removal job found nothing executable');
    if (request.status === 'void') {
      await deps.ops.patch(opId, { status: 'cancelled', finishedAt: Date.now(), summary: `approval request ${approvalId}: void` });
      await deps.outbox.post(meta.conv, message(`Request ${approvalId} is void: ${request.voidReason}; nothing was removed.`));
      await refreshCard(deps, opId, { force: true });
    }
    return;
  }
  const op = await deps.ops.get(opId);
  if (!op || FINISHED.includes(op.status)) return; // already carried out
  await deps.ops.patch(opId, { status: 'running', startedAt: op.startedAt ?? Date.now(), params: { ...removalParams(op), paused: undefined } satisfies RemovalParams });
  await refreshCard(deps, opId, { force: true });

  const total = request.plan.length;
  const resultsKey = deps.ops.keyOf(opId, 'results');
  // Per-port results go to the card (one edit a second at most); the thread gets milestones:
  // a message per quarter of the plan with the lines of its ports, so 100 ports are 4 posts,
  // not 100 paced at Slack's one message a second per channel.
  const milestone = Math.max(1, Math.ceil(total / MILESTONES));
  const pending: string[] = [];
  const flush = async (): Promise<void> => {
    if (!pending.length) return;
    const lines = pending.splice(0);
    await deps.outbox.post(meta.conv, lines.length === 1 ? message(lines[0]!) : message(`${lines[0]} … (${lines.length} ports)`, section(lines.join('\n'))));
  };
  for (const [i, port] of request.plan.entries()) {
    const n = i + 1;
    if (await deps.rt.redis.hexists(resultsKey, String(n))) continue; // done before a restart
    const paused = await pauseState(deps.rt);
    if (paused) {
      await flush();
      const note = `Held: ${pausedBy(paused)}; ports ${n}–${total} wait for resume all.`;
      const cur = await deps.ops.get(opId);
      if (cur && removalParams(cur).paused !== note) {
        await deps.ops.patch(opId, { params: { ...removalParams(cur), paused: note } satisfies RemovalParams });
        await deps.outbox.post(meta.conv, message(note));
        await refreshCard(deps, opId, { force: true });
      }
      // Give the worker back; the paused queue runs this again after resume all.
      await job.moveToDelayed(Date.now() + PAUSE_RECHECK_MS, job.token);
      throw new DelayedError();
    }
    if (await deps.ops.cancelRequested(opId)) break;
    const outcome = await checkAndRemove(deps, request, port, n, opId);
    const fresh = await deps.rt.redis.hsetnx(resultsKey, String(n), JSON.stringify(outcome));
    if (!fresh) continue;
    await deps.ops.incr(opId, outcome.outcome);
    pending.push(portLine(outcome, total, port));
    if (n % milestone === 0 || n === total) await flush();
    await refreshCard(deps, opId);
  }
  await flush();

  const results = Object.values(await deps.ops.results<PortOutcome>(opId)).sort((a, b) => a.n - b.n);
  const t = tally(results);
  const cancelled = results.length < total;
  const status = cancelled ? 'cancelled' : t.failed ? 'partial' : 'succeeded';
  await deps.ops.patch(opId, { status, finishedAt: Date.now(), summary: summaryLine(total, results) });
  await deps.outbox.post(meta.conv, summaryMessage(request, opId, results));
  await refreshCard(deps, opId, { force: true });
  deps.rt.log.info({ approvalId, opId, ...t, approvedBy: approvedBy(request).map(mention) }, 'stale port removal finished');
}


// ---------------------------------------------------------------------------------------
// The request: a frozen plan on the approvals store, and the operation that carries it out

function hostsOf(ports: readonly PlannedPort[]): string[] {
  return [...new Set(ports.map((p) => p.host))];
}

/**
 * Post an approval card for a frozen removal plan in `conv` (a thread). The operation that
 * carries it out ("job 41") is created when the plan is approved, and takes this card as its
 * status card.
 */
export async function requestRemoval(
  deps: Deps,
  req: { conv: Conversation; requester: string; ports: PlannedPort[]; title: string },
): Promise<ApprovalRecord<PlannedPort[]>> {
  return requestApproval<PlannedPort[]>(deps, {
    action: 'remove-ports',
    conv: req.conv,
    requester: req.requester,
    plan: req.ports,
    summary: removalHeadline(req.ports),
    title: req.title,
    detail: req.ports.map((p) => `${p.host} ${p.wwpn}`).join(', '),
  });
}


/** The removal's operation, carrying the approval card as its status card. */
async function createRemovalOp(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<ApprovalRecord<PlannedPort[]>> {
  const { request } = record;
  // One operation per request: the approving caller and a later recovery (recover below) both
  // come here. Under the request's mutex, whoever comes second finds the first one's operation.
  const got = await withMutex(deps.rt.redis, deps.rt.key('approval', request.id, 'op-claim'), { ttlMs: 60_000, waitMs: 5000 }, async () => {
    const cur = await approvalStore(deps).get<PlannedPort[]>(request.id);
    if (cur?.meta.opId !== undefined) return { request, meta: cur.meta };
    return createRemovalOpClaimed(deps, record);
  });
  if (!got.ok) throw new Error(`the operation for approval request ${request.id} is being created elsewhere`);
  return got.value;
}

async function createRemovalOpClaimed(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<ApprovalRecord<PlannedPort[]>> {
  const { request, meta } = record;
  const op = await deps.ops.create({
    kind: REMOVAL_KIND,
    title: meta.title ?? request.summary,
    requester: request.requester,
    conv: meta.conv,
    hosts: hostsOf(request.plan),
    params: { approvalId: request.id } satisfies RemovalParams,
  });
  await deps.ops.patch(op.id, { cardRef: meta.cardRef, summary: `approval request ${request.id}: approved` });
  const next = (await approvalStore(deps).patchMeta(request.id, { opId: op.id })) ?? { ...meta, opId: op.id };
  return { request, meta: next };
}

function removalJobId(approvalId: string): string {
  return `remove-${approvalId}`;
}

/** Queue the removal. The job id makes a second enqueue a no-op; markExecuted makes a second run one too. */
export async function startRemoval(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<void> {
  // opId: a job that runs out of attempts is ended as failed by giveUp (src/jobs/give-up.ts), which finds the operation by it.
  await deps.queues.ops.add(REMOVAL_JOB, { approvalId: record.request.id, opId: record.meta.opId }, { jobId: removalJobId(record.request.id), attempts: 3, backoff: { type: 'exponential', delay: 1000 } });
  await redrawCard(deps, record);
}

const removalApprovals: ApprovalHandler<PlannedPort[]> = {
  render: (request) => renderApprovalCard(request),
  targets: hostsOf,
  nothingDone: 'nothing was removed',
  async prepare(deps, record) {
    const next = await createRemovalOp(deps, record);
    return { record: next, note: `Removing the ports now, one by one (job ${next.meta.opId}).` };
  },
  onApproved: startRemoval,
  async recover(deps, record) {
    let rec = record;
    if (rec.meta.opId === undefined) {
      // The approver's own call may still be creating it: only take over when nobody is.
      if (await deps.rt.redis.exists(deps.rt.key('approval', rec.request.id, 'op-claim'))) return null;
      rec = await createRemovalOp(deps, rec);
    }
    // Queued and waiting for a worker, or already run (its job is gone because it is done): nothing was interrupted.
    if (await deps.queues.ops.getJob(removalJobId(rec.request.id))) return null;
    if ((await deps.ops.get(rec.meta.opId!))?.status !== 'queued') return null;
    await startRemoval(deps, rec);
    return `Request ${rec.request.id} was approved by ${approvedBy(rec.request).map(mention).join(', ')} but its removal never started (Ferry was interrupted); removing the ports now, one by one (job ${rec.meta.opId}).`;
  },
  async redraw(deps, record) {
    // Once approved, the removal's operation owns the card (it adds per-port results).
    if (record.meta.opId) return refreshCard(deps, record.meta.opId, { force: true });
    if (record.meta.cardRef) await deps.outbox.update(record.meta.conv, record.meta.cardRef, renderApprovalCard(record.request));
  },
};

const removalCard: CardRenderer = async (deps, op) => {
  const { approvalId: id, paused } = removalParams(op);
  const record = id ? await approvalStore(deps).get<PlannedPort[]>(id) : null;
  if (!record) return message(`${op.title}: preparing the approval request…`);
  if (record.request.status !== 'executed') return renderApprovalCard(record.request);
  const results = Object.values(await deps.ops.results<PortOutcome>(op.id)).sort((a, b) => a.n - b.n);
  const finished = FINISHED.includes(op.status);
  return renderApprovalCard(record.request, { status: finished ? 'done' : op.status === 'queued' ? 'queued' : 'running', results, paused });
};


/** Stale-port removal: its approval handler, its job and its card. */
export const removeStalePortsWorkflow: Workflow = {
  name: 'remove-stale-ports',
  jobs: { [REMOVAL_JOB]: { queue: 'ops', handler: removeStalePorts } },
  approvals: { 'remove-ports': removalApprovals as ApprovalHandler<never> },
  cards: { [REMOVAL_KIND]: removalCard },
};
