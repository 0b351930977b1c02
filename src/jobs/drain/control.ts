/**
 * The decisions around a planned move: Start (after the plan card), Cancel, and, for a drain
 * held after a failure, Roll back / Retry / Skip VM. Buttons and typed commands (`start 41`,
 * `rollback 41`, `retry 41`, `skip 41 web07`, `cancel 41`) reach the same functions here.
 *
 * Approvals seam: policy (src/approvals/policy.ts) says how many approvers a drain or migrate
 * needs; the default is 0, and the requester's own Start runs it. An override (saving a
 * running non-HA VM, seed 001 rule 1) needs an approver other than the requester. Until the
 * approvals store lands, approver Starts are counted here in a Redis set (distinct users).
 *
 * While an operation waits for a decision no worker is busy: a small timer job ('op-watch')
 * looks once a second for a typed `cancel <id>` and for the plan's expiry.
 */
import type { Job } from 'bullmq';
import { resolvePolicy, type ApprovalAction } from '../../approvals/policy.js';
import { describePrincipals, isMemberOfAny, membership, mention, type GroupMembers } from '../../core/permissions.js';
import { audit } from '../../audit/audit.js';
import { message } from '../../bot/messages.js';
import { registerJob } from '../registry.js';
import { refreshCard } from '../cards.js';
import { FINISHED, type Operation } from '../operations.js';
import type { Deps } from '../context.js';

export type Decision = 'start' | 'rollback' | 'retry' | 'skip';

export interface Controlled {
  /** Continue after a decision (enqueue the next job). */
  resume(deps: Deps, op: Operation, decision: Decision, arg?: string): Promise<void>;
  /** Finish an operation cancelled (or expired) while it waited. */
  stopWaiting(deps: Deps, op: Operation, why: string): Promise<void>;
}

const kinds = new Map<string, Controlled>();

export function registerControlled(kind: string, c: Controlled): void {
  kinds.set(kind, c);
}

export function stageOf(op: Operation): string {
  return String(op.params.stage ?? '');
}

export interface StartNeeds {
  action: ApprovalAction;
  approvals: number;
  approvers: string[];
  expiryMs: number;
}

/** Who must click Start: the requester (0 approvals) or N approvers other than the requester. */
export function startNeeds(deps: Deps, op: Operation): StartNeeds {
  const action: ApprovalAction = op.params.override ? 'override' : op.kind === 'migrate' ? 'migrate' : 'drain';
  const base = resolvePolicy(deps.rt.config, op.kind === 'migrate' ? 'migrate' : 'drain');
  const p = op.params.override ? resolvePolicy(deps.rt.config, 'override') : base;
  return { action, approvals: Math.max(p.approvals, action === 'override' ? 1 : 0), approvers: p.approvers, expiryMs: base.expiryMs };
}

function label(op: Operation): string {
  return `job ${op.id} (${op.title})`;
}

/**
 * Apply one decision. Returns a sentence for the clicking/typing user alone when refused, or
 * null when it took effect (the thread says what happens next).
 */
export async function decide(deps: Deps, opId: string | number, user: string, decision: Decision | 'cancel', arg: string | undefined, groupMembers: GroupMembers = {}): Promise<string | null> {
  const op = await deps.ops.get(opId);
  if (!op) return `There is no job ${opId}; "jobs" lists them.`;
  const ctl = kinds.get(op.kind);
  if (!ctl) return `job ${op.id} is a ${op.kind}; it has no ${decision} step.`;
  if (FINISHED.includes(op.status)) return `${label(op)} already ended (${op.status}).`;
  const stage = stageOf(op);
  const members = membership(deps.rt.config, groupMembers);

  if (decision === 'cancel') {
    if (op.status !== 'waiting') return null; // a running job sees the cancel flag itself
    await deps.rt.redis.set(deps.rt.key('op', op.id, 'cancel'), user, 'EX', 86_400);
    await ctl.stopWaiting(deps, op, `cancelled by ${mention(user)}`);
    return null;
  }

  if (decision === 'start') {
    if (stage !== 'awaiting-start' || op.status !== 'waiting') return `${label(op)} is not waiting for Start (it is ${stage || op.status}).`;
    if (await deps.ops.cancelRequested(op.id)) return `${label(op)} was cancelled; run the command again for a fresh plan.`;
    const needs = startNeeds(deps, op);
    if (needs.approvals === 0) {
      if (user !== op.requester) return `Only ${mention(op.requester)}, who asked for ${label(op)}, can start it.`;
    } else {
      if (user === op.requester) return `${label(op)} needs ${needs.approvals === 1 ? 'an approver' : `${needs.approvals} approvers`} other than you (${needs.action === 'override' ? 'it overrides a refused precheck' : 'policy'}): ${describePrincipals(needs.approvers)}.`;
      if (!isMemberOfAny(members, user, needs.approvers)) return `Starting ${label(op)} needs ${describePrincipals(needs.approvers)}.`;
      const setKey = deps.rt.key('op', op.id, 'approvers');
      await deps.rt.redis.sadd(setKey, user);
      const n = await deps.rt.redis.scard(setKey);
      await audit(deps.rt, { actor: user, kind: 'decision', action: `approve start of job ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' });
      if (n < needs.approvals) {
        await deps.outbox.post(op.conv, message(`${mention(user)} approved ${label(op)} (${n} of ${needs.approvals}).`));
        return null;
      }
    }
    // Exactly once, however many clicks or retried deliveries arrive.
    const first = await deps.rt.redis.set(deps.rt.key('op', op.id, 'started'), user, 'EX', 7 * 86_400, 'NX');
    if (!first) return `${label(op)} is already started.`;
    const approvedBy = await deps.rt.redis.smembers(deps.rt.key('op', op.id, 'approvers'));
    await audit(deps.rt, { actor: user, kind: 'decision', action: `start job ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok', ...(approvedBy.length ? { approvedBy } : {}) });
    await deps.outbox.post(op.conv, message(`${mention(user)} started ${label(op)}.`));
    await ctl.resume(deps, op, 'start');
    return null;
  }

  if (stage !== 'held' || op.status !== 'waiting') return `${label(op)} is not waiting for a decision (it is ${stage || op.status}).`;
  const round = Number(op.params.round ?? 0);
  const first = await deps.rt.redis.set(deps.rt.key('op', op.id, 'decision', round), `${decision}:${user}`, 'EX', 7 * 86_400, 'NX');
  if (!first) return `${label(op)} already has a decision for this failure.`;
  await audit(deps.rt, { actor: user, kind: 'decision', action: `${decision}${arg ? ` ${arg}` : ''} job ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' });
  await ctl.resume(deps, op, decision, arg);
  return null;
}

// ---------------------------------------------------------------------------------------
// Waiting: cancel and expiry without a busy worker.

export async function watchWaiting(deps: Deps, opId: number, delayMs = 1000): Promise<void> {
  await deps.queues.timers.add('op-watch', { opId }, { jobId: `op-${opId}-watch-${Date.now()}`, delay: delayMs, removeOnComplete: true, removeOnFail: 50 });
}

async function watchJob(deps: Deps, job: Job): Promise<void> {
  const { opId } = job.data as { opId: number };
  const op = await deps.ops.get(opId);
  if (!op || op.status !== 'waiting') return;
  const ctl = kinds.get(op.kind);
  if (!ctl) return;
  const who = await deps.ops.cancelRequested(opId);
  if (who) {
    await ctl.stopWaiting(deps, op, `cancelled by ${mention(who)}`);
    return;
  }
  const since = Number(op.params.waitingSince ?? op.createdAt);
  if (stageOf(op) === 'awaiting-start' && deps.rt.clock.now() - since > startNeeds(deps, op).expiryMs) {
    await ctl.stopWaiting(deps, op, 'the plan expired before anyone started it');
    return;
  }
  await watchWaiting(deps, opId);
}

registerJob('op-watch', 'timers', watchJob);

export async function finishOp(deps: Deps, op: Operation, status: Operation['status'], summary: string, params: Record<string, unknown> = {}): Promise<Operation> {
  const fresh = (await deps.ops.get(op.id)) ?? op;
  const done = await deps.ops.patch(op.id, {
    status,
    finishedAt: deps.rt.clock.now(),
    summary,
    params: { ...fresh.params, ...params, stage: 'done', durationMs: deps.rt.clock.now() - (fresh.startedAt ?? fresh.createdAt) },
  });
  await refreshCard(deps, op.id, { force: true });
  return done;
}
