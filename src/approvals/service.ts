/**
 * Approvals as Ferry runs them: create a request and its card, take a decision from a button,
 * a modal or a typed command (all three reach decideApproval, so Slack and the console follow
 * one policy), expire what nobody decided in time, and hand an approved plan to its job.
 *
 * Every decision, refused or not, is audited. Refusals are one ephemeral sentence and change
 * nothing, except that a click which finds the request expired or its plan changed stamps
 * that terminal state (the sweep or the job would do the same) so the card loses its buttons.
 */
import type { Deps } from '../jobs/context.js';
import type { Conversation } from '../bot/surface.js';
import { message } from '../bot/messages.js';
import { audit } from '../audit/audit.js';
import { membership, type GroupMembers } from '../core/permissions.js';
import { refreshCard, registerCard } from '../jobs/cards.js';
import { registerJob } from '../jobs/registry.js';
import { ApprovalStore, type ApprovalRecord } from './store.js';
import { approvedBy, decide, expire, finishedSentence, formatUtcTime, resolvePolicy, type DecideResult } from './policy.js';
import { planHash } from './plan-hash.js';
import { removalHeadline, renderApprovalCard, type PlannedPort, type PortOutcome } from './cards.js';
import { pauseState, pausedRefusal } from './kill-switch.js';

export const REMOVAL_KIND = 'remove-stale-ports';
export const REMOVAL_JOB = 'remove-stale-ports';
export const EXPIRY_JOB = 'approval-expiry';
/** How often the scheduled sweep looks for expired requests. */
export const EXPIRY_SWEEP_MS = 30_000;

export function approvalStore(deps: Deps): ApprovalStore {
  return new ApprovalStore(deps.rt);
}

function hostsOf(ports: readonly PlannedPort[]): string[] {
  return [...new Set(ports.map((p) => p.host))];
}

/** The repeatable sweep on the timers queue; upserting is idempotent, so every request may call it. */
export async function ensureExpirySweep(deps: Deps): Promise<void> {
  await deps.queues.timers.upsertJobScheduler(EXPIRY_JOB, { every: EXPIRY_SWEEP_MS }, { name: EXPIRY_JOB, data: {}, opts: { removeOnComplete: 50, removeOnFail: 50 } });
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
  const store = approvalStore(deps);
  const policy = resolvePolicy(deps.rt.config, 'remove-ports');
  const hosts = hostsOf(req.ports);
  const record = await store.create<PlannedPort[]>(
    { action: 'remove-ports', requester: req.requester, plan: req.ports, summary: removalHeadline(req.ports) },
    policy,
    { conv: req.conv, title: req.title },
  );
  const id = record.request.id;
  const cardRef = (await deps.outbox.post(req.conv, renderApprovalCard(record.request))) ?? undefined;
  if (cardRef) await store.patchMeta(id, { cardRef });
  await audit(deps.rt, {
    actor: req.requester,
    kind: 'decision',
    action: `request approval ${id}: ${record.request.summary}`,
    targets: hosts,
    outcome: 'started',
    detail: req.ports.map((p) => `${p.host} ${p.wwpn}`).join(', ').slice(0, 2000),
  });
  await ensureExpirySweep(deps).catch((e: unknown) => deps.rt.log.error({ err: String(e) }, 'could not schedule the approval expiry sweep'));
  // The exact moment too, so a card does not wait up to a sweep interval to say it expired.
  const delay = Math.max(0, record.request.expiresAt - deps.rt.clock.now()) + 1000;
  await deps.queues.timers.add(EXPIRY_JOB, { id }, { delay, jobId: `approval-expire-${id}`, removeOnComplete: true, removeOnFail: 50 }).catch(() => undefined);
  return { ...record, meta: { ...record.meta, cardRef } };
}

/** Redraw a request's card in place (decisions are rare: no throttle needed). */
export async function redrawCard(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<void> {
  if (record.meta.opId) return refreshCard(deps, record.meta.opId, { force: true });
  if (record.meta.cardRef) await deps.outbox.update(record.meta.conv, record.meta.cardRef, renderApprovalCard(record.request));
}

export interface DecisionRequest {
  id: string;
  user: string;
  decision: 'approve' | 'reject';
  reason?: string;
  /** From the clicked card's button; a typed command approves the plan the card shows now. */
  planHash?: string;
  groupMembers: GroupMembers;
  refuse(sentence: string): Promise<void>;
  /** Where the decision was made, when that is not the request's own thread (typed elsewhere). */
  from?: Conversation;
  via: 'button' | 'modal' | 'command';
}

function sameConversation(a: Conversation, b: Conversation): boolean {
  if (a.surface === 'console' && b.surface === 'console') return a.session === b.session;
  if (a.surface === 'slack' && b.surface === 'slack') return a.channel === b.channel && (a.threadTs ?? '') === (b.threadTs ?? '');
  return false;
}

export function unknownRequestSentence(id: string): string {
  return `There is no approval request ${id}; nothing was done.`;
}

/** The one path for Approve/Reject: button, modal and typed command. Returns the outcome for tests. */
export async function decideApproval(deps: Deps, input: DecisionRequest): Promise<DecideResult<PlannedPort[]> | null> {
  const store = approvalStore(deps);
  const first = await store.get<PlannedPort[]>(input.id);
  const label = `${input.decision} request ${input.id}`;
  if (!first) {
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: [], outcome: 'refused', detail: 'no such request' });
    await input.refuse(unknownRequestSentence(input.id));
    return null;
  }
  const hosts = hostsOf(first.request.plan);
  if (input.decision === 'approve' && first.request.status === 'pending') {
    // The kill switch holds new work; rejecting stays possible (it only stops things).
    const paused = await pauseState(deps.rt);
    if (paused) {
      await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: hosts, outcome: 'refused', detail: 'paused' });
      await input.refuse(pausedRefusal(paused));
      return null;
    }
  }
  const members = membership(deps.rt.config, input.groupMembers);
  const out = await store.transition<PlannedPort[], DecideResult<PlannedPort[]>>(input.id, (request) => {
    // A typed decision binds to the plan as stored now: a plan altered without its hash voids.
    const bound = input.planHash ?? planHash(request.plan);
    const r = decide(request, { user: input.user, decision: input.decision, reason: input.reason, planHash: bound, now: deps.rt.clock.now() }, members);
    return { next: r.ok ? r.request : (r.request ?? null), result: r };
  });
  if (!out) {
    await input.refuse(unknownRequestSentence(input.id));
    return null;
  }
  const r = out.result;
  const request = out.record.request;
  if (!r.ok) {
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: hosts, opId: out.record.meta.opId, outcome: 'refused', detail: `${r.code}: ${r.refusal}` });
    if (out.written) await closeUnexecuted(deps, out.record, r.code === 'expired' ? finishedSentence(request) : `Request ${request.id} is void: ${request.voidReason}; nothing was removed. Ask again.`);
    await input.refuse(r.refusal);
    return r;
  }
  // The winner of pending -> approved (exactly one caller) creates the operation and queues it.
  const record = r.effect === 'approved' ? await createRemovalOp(deps, out.record) : out.record;
  await audit(deps.rt, {
    actor: input.user,
    kind: 'decision',
    action: label,
    targets: hosts,
    opId: record.meta.opId,
    approvedBy: approvedBy(request),
    outcome: 'ok',
    detail: `${r.effect}${input.reason ? `: ${input.reason}` : ''} (via ${input.via})`,
  });
  await deps.outbox.post(record.meta.conv, message(`${r.sentence}${r.effect === 'approved' ? ` Removing the ports now, one by one (job ${record.meta.opId}).` : ''}`));
  if (input.from && !sameConversation(input.from, record.meta.conv)) {
    await deps.outbox.post(input.from, message(`Request ${request.id} (${request.summary}): ${r.sentence}`));
  }
  if (r.effect === 'approved') await startRemoval(deps, record);
  else await redrawCard(deps, record);
  return r;
}

/** The removal's operation, carrying the approval card as its status card. */
async function createRemovalOp(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<ApprovalRecord<PlannedPort[]>> {
  const { request, meta } = record;
  const op = await deps.ops.create({
    kind: REMOVAL_KIND,
    title: meta.title ?? request.summary,
    requester: request.requester,
    conv: meta.conv,
    hosts: hostsOf(request.plan),
    params: { approvalId: request.id },
  });
  await deps.ops.patch(op.id, { cardRef: meta.cardRef, summary: `approval request ${request.id}: approved` });
  const next = (await approvalStore(deps).patchMeta(request.id, { opId: op.id })) ?? { ...meta, opId: op.id };
  return { request, meta: next };
}

/** Queue the removal. The job id makes a second enqueue a no-op; markExecuted makes a second run one too. */
export async function startRemoval(deps: Deps, record: ApprovalRecord<PlannedPort[]>): Promise<void> {
  await deps.queues.ops.add(REMOVAL_JOB, { approvalId: record.request.id }, { jobId: `remove-${record.request.id}`, attempts: 3, backoff: { type: 'exponential', delay: 1000 } });
  await redrawCard(deps, record);
}

/** A request that ends without running (rejected, expired, void): the card says so and loses its buttons. */
async function closeUnexecuted(deps: Deps, record: ApprovalRecord<PlannedPort[]>, say: string | null): Promise<void> {
  await redrawCard(deps, record);
  if (say) await deps.outbox.post(record.meta.conv, message(say));
}

/** The scheduled sweep: every pending request past its expiry becomes expired and its card loses its buttons. */
export async function expireDue(deps: Deps): Promise<string[]> {
  const store = approvalStore(deps);
  const now = deps.rt.clock.now();
  const expired: string[] = [];
  for (const id of await store.due(now)) {
    const out = await store.transition<PlannedPort[], boolean>(id, (request) => {
      const e = expire(request, now);
      return { next: e.changed ? e.request : null, result: e.changed };
    });
    if (!out?.written) continue;
    expired.push(id);
    const req = out.record.request;
    await audit(deps.rt, { actor: 'ferry', kind: 'decision', action: `expire request ${id}`, targets: hostsOf(req.plan), opId: out.record.meta.opId, outcome: 'skipped', detail: `expired at ${formatUtcTime(req.expiresAt)}` });
    await closeUnexecuted(deps, out.record, `Request ${id} expired at ${formatUtcTime(req.expiresAt)} without ${req.required === 1 ? 'an approval' : 'enough approvals'}; nothing was removed. Ask again if it is still needed.`);
  }
  return expired;
}

registerJob(EXPIRY_JOB, 'timers', async (deps) => expireDue(deps));

registerCard(REMOVAL_KIND, async (deps, op) => {
  const id = String(op.params.approvalId ?? '');
  const record = id ? await approvalStore(deps).get<PlannedPort[]>(id) : null;
  if (!record) return message(`${op.title}: preparing the approval request…`);
  if (record.request.status !== 'executed') return renderApprovalCard(record.request);
  const results = Object.values(await deps.ops.results<PortOutcome>(op.id)).sort((a, b) => a.n - b.n);
  const finished = ['succeeded', 'partial', 'failed', 'cancelled'].includes(op.status);
  const paused = typeof op.params.paused === 'string' ? op.params.paused : undefined;
  return renderApprovalCard(record.request, { status: finished ? 'done' : op.status === 'queued' ? 'queued' : 'running', results, paused });
});
