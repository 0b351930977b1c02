/**
 * Approvals as Ferry runs them: create a request and its card, take a decision from a button,
 * a modal or a typed command (all three reach decideApproval, so Slack and the console follow
 * one policy), expire what nobody decided in time, and hand an approved plan to its job.
 *
 * One mechanism for every action: each action registers an ApprovalHandler (how its plan is
 * drawn, what runs when it is approved, what stops when it is rejected, expires or is void).
 * Each workflow's descriptor lists its handlers: stale-port removal
 * (src/jobs/workflows/remove-stale-ports.ts), drain/migrate/override (src/jobs/drain/control.ts)
 * and rolling runs (src/jobs/patch/rolling.ts); src/ferry.ts wires them.
 *
 * Every decision, refused or not, is audited. Refusals are one ephemeral sentence and change
 * nothing, except that a click which finds the request expired or its plan changed stamps
 * that terminal state (the sweep or the job would do the same) so the card loses its buttons.
 */
import { randomUUID } from 'node:crypto';
import type { Deps } from '../jobs/context.js';
import type { Conversation } from '../chat/conversation.js';
import { message, type Message } from '../chat/messages.js';
import { audit } from '../audit/audit.js';
import { membership, type GroupMembers } from '../core/permissions.js';
import type { Workflow } from '../jobs/wiring.js';
import { ApprovalStore, type ApprovalRecord } from './store.js';
import {
  approvedBy,
  decide,
  expire,
  finishedSentence,
  formatUtcTime,
  markExecuted,
  resolvePolicy,
  voidRequest,
  type ApprovalAction,
  type ApprovalRequest,
  type DecideResult,
  type Decided,
  type ResolvedPolicy,
} from './policy.js';
import { planHash } from './plan-hash.js';
import { pauseState, pausedRefusal } from './kill-switch.js';
import { refusal, type Refusal } from '../core/refusal.js';

export const EXPIRY_JOB = 'approval-expiry';
/** How often the scheduled sweep looks for expired requests. */
export const EXPIRY_SWEEP_MS = 30_000;

export function approvalStore(deps: Deps): ApprovalStore {
  return new ApprovalStore(deps.rt);
}

// ---------------------------------------------------------------------------------------
// Hand-off registry: what each action does with its requests

export type ClosedHow = 'rejected' | 'expired' | 'void';

export interface ApprovalHandler<P = unknown> {
  /** The card while the request is decided (and after, without buttons). */
  render(request: ApprovalRequest<P>, deps: Deps): Message;
  /** Hosts (and other names) the plan touches, for the audit trail. */
  targets(plan: P): string[];
  /** "nothing was removed": said when a request ends without running. */
  nothingDone: string;
  /**
   * Called once, by the caller whose decision approved the request, before the thread is told:
   * create what carries it out (an operation) and say what happens next (appended to "Approved by").
   */
  prepare?(deps: Deps, record: ApprovalRecord<P>): Promise<{ record: ApprovalRecord<P>; note?: string }>;
  /** Then carry it out (queue the job, resume the waiting operation). Claims execution itself. */
  onApproved(deps: Deps, record: ApprovalRecord<P>): Promise<void>;
  /** The request ended without running: stop whatever waited on it. */
  onClosed?(deps: Deps, record: ApprovalRecord<P>, how: ClosedHow): Promise<void>;
  /**
   * A decision found the request approved but never carried out (the process that approved it
   * failed or died before handing it on): hand it on now, once. Returns what to say in the
   * thread, or null when another caller is already doing it.
   */
  recover?(deps: Deps, record: ApprovalRecord<P>): Promise<string | null>;
  /** Redraw in place; default: update the approval card with render(). */
  redraw?(deps: Deps, record: ApprovalRecord<P>): Promise<void>;
}

export function approvalHandler<P = unknown>(deps: Deps, action: ApprovalAction): ApprovalHandler<P> {
  const h = deps.wiring.approvals.get(action);
  if (!h) throw new Error(`no approval handler is registered for ${action}`);
  return h as unknown as ApprovalHandler<P>;
}

function targetsOf(deps: Deps, request: ApprovalRequest<unknown>): string[] {
  const h = deps.wiring.approvals.get(request.action) as ApprovalHandler<unknown> | undefined;
  try {
    return h ? h.targets(request.plan) : [];
  } catch {
    return [];
  }
}

/** The repeatable sweep on the timers queue; upserting is idempotent, so every request may call it. */
export async function ensureExpirySweep(deps: Deps): Promise<void> {
  await deps.queues.timers.upsertJobScheduler(EXPIRY_JOB, { every: EXPIRY_SWEEP_MS }, { name: EXPIRY_JOB, data: {}, opts: { removeOnComplete: 50, removeOnFail: 50 } });
}

export interface NewApproval<P> {
  action: ApprovalAction;
  conv: Conversation;
  requester: string;
  plan: P;
  summary: string;
  title?: string;
  /** Defaults to resolvePolicy(config, action); drain/migrate combine theirs with override. */
  policy?: ResolvedPolicy;
  /** The operation waiting on the request (drain, migrate, rolling run). */
  opId?: number;
  /** For the audit entry. */
  detail?: string;
}

/**
 * Create a request for any action, post its card in `conv` (a thread), audit it and make sure
 * it expires on time. Everything is in Redis: a restart loses no pending request or button.
 */
export async function requestApproval<P>(deps: Deps, req: NewApproval<P>): Promise<ApprovalRecord<P>> {
  const handler = approvalHandler<P>(deps, req.action);
  const store = approvalStore(deps);
  const policy = req.policy ?? resolvePolicy(deps.rt.config, req.action);
  const record = await store.create<P>(
    { action: req.action, requester: req.requester, plan: req.plan, summary: req.summary },
    policy,
    { conv: req.conv, ...(req.title ? { title: req.title } : {}), ...(req.opId !== undefined ? { opId: req.opId } : {}) },
  );
  const id = record.request.id;
  const cardRef = (await deps.outbox.post(req.conv, handler.render(record.request, deps))) ?? undefined;
  if (cardRef) await store.patchMeta(id, { cardRef });
  await audit(deps.rt, {
    actor: req.requester,
    kind: 'decision',
    action: `request approval ${id}: ${record.request.summary}`,
    targets: handler.targets(req.plan),
    ...(req.opId !== undefined ? { opId: req.opId } : {}),
    outcome: 'started',
    ...(req.detail ? { detail: req.detail.slice(0, 2000) } : {}),
  });
  await ensureExpirySweep(deps).catch((e: unknown) => deps.rt.log.error({ err: e }, 'could not schedule the approval expiry sweep'));
  // The exact moment too, so a card does not wait up to a sweep interval to say it expired.
  const delay = Math.max(0, record.request.expiresAt - deps.rt.clock.now()) + 1000;
  await deps.queues.timers.add(EXPIRY_JOB, { id }, { delay, jobId: `approval-expire-${id}`, removeOnComplete: true, removeOnFail: 50 }).catch(() => undefined);
  return { ...record, meta: { ...record.meta, cardRef } };
}

/** Redraw a request's card in place (decisions are rare: no throttle needed). */
export async function redrawCard<P>(deps: Deps, record: ApprovalRecord<P>): Promise<void> {
  const handler = approvalHandler<P>(deps, record.request.action);
  if (handler.redraw) return handler.redraw(deps, record);
  if (record.meta.cardRef) await deps.outbox.update(record.meta.conv, record.meta.cardRef, handler.render(record.request, deps));
}

export interface DecisionRequest {
  id: string;
  user: string;
  decision: 'approve' | 'reject';
  reason?: string;
  /** From the clicked card's button; a typed command approves the plan the card shows now. */
  planHash?: string;
  groupMembers: GroupMembers;
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

/**
 * Approve calls in flight per request (a sorted set: token -> deadline). The caller that wins
 * pending -> approved then creates the operation, posts and queues the work; a second approver
 * clicking meanwhile finds the request approved with nothing queued yet and must not take that
 * for an interrupted hand-on (recover) while the winner is still at it. Each approve call is
 * listed before its transition, so the winner is listed before anyone can see its approval; a
 * call that fails leaves the list as it ends, one that dies at its deadline.
 */
const HAND_ON_MS = 60_000;

/** An approve that found its request approved but never started, and started it (the thread heard it). */
export interface Resumed {
  readonly refused: false;
  readonly effect: 'resumed';
  readonly sentence: string;
}

/** What a decision came to; a refusal is for the caller to say (the thread hears everything else). */
export type DecisionOutcome = Decided<unknown> | Resumed | Refusal;

/** The one path for Approve/Reject of every action: button, modal and typed command. */
export async function decideApproval(deps: Deps, input: DecisionRequest): Promise<DecisionOutcome> {
  if (input.decision !== 'approve') return decide1(deps, input, null);
  const key = deps.rt.key('approval', input.id, 'handing-on');
  const token = `${process.pid}-${randomUUID()}`;
  await deps.rt.redis.multi().zadd(key, deps.rt.clock.now() + HAND_ON_MS, token).pexpire(key, HAND_ON_MS).exec();
  try {
    return await decide1(deps, input, async () => {
      // This call lost the transition: it hands nothing on, so it leaves the list first. Of two
      // losers checking at once, at least one then finds the other gone and recovers (the
      // handler makes a second recovery a no-op).
      await deps.rt.redis.zrem(key, token);
      return (await deps.rt.redis.zcount(key, deps.rt.clock.now(), '+inf')) > 0;
    });
  } finally {
    await deps.rt.redis.zrem(key, token).catch(() => undefined);
  }
}

async function decide1(deps: Deps, input: DecisionRequest, othersHandingOn: (() => Promise<boolean>) | null): Promise<DecisionOutcome> {
  const store = approvalStore(deps);
  const first = await store.get(input.id);
  const label = `${input.decision} request ${input.id}`;
  if (!first) {
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: [], outcome: 'refused', detail: 'no such request' });
    return refusal(unknownRequestSentence(input.id), 'not-found');
  }
  const handler = approvalHandler(deps, first.request.action);
  const hosts = targetsOf(deps, first.request);
  if (input.decision === 'approve' && first.request.status === 'pending') {
    // The kill switch holds new work; rejecting stays possible (it only stops things).
    const paused = await pauseState(deps.rt);
    if (paused) {
      await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: hosts, outcome: 'refused', detail: 'paused' });
      return pausedRefusal(paused);
    }
  }
  const members = membership(deps.rt.config, input.groupMembers);
  const out = await store.transition<unknown, DecideResult<unknown>>(input.id, (request) => {
    // A typed decision binds to the plan as stored now: a plan altered without its hash voids.
    const bound = input.planHash ?? planHash(request.plan);
    const r = decide(request, { user: input.user, decision: input.decision, reason: input.reason, planHash: bound, now: deps.rt.clock.now() }, members);
    return { next: r.request ?? null, result: r };
  });
  if (!out) return refusal(unknownRequestSentence(input.id), 'not-found');
  const r = out.result;
  const request = out.record.request;
  // Approved but not handed on: interrupted, unless another approve call is still handing it on.
  if (r.refused && r.code === 'finished' && request.status === 'approved' && handler.recover && !(await othersHandingOn?.())) {
    const said = await handler.recover(deps, out.record);
    if (said) {
      await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: hosts, opId: (await store.get(input.id))?.meta.opId, approvedBy: approvedBy(request), outcome: 'ok', detail: `resumed an approved request that was never started (via ${input.via})` });
      await deps.outbox.post(out.record.meta.conv, message(said));
      return { refused: false, effect: 'resumed', sentence: said };
    }
  }
  if (r.refused) {
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: label, targets: hosts, opId: out.record.meta.opId, outcome: 'refused', detail: `${r.code}: ${r.sentence}` });
    if (out.written) {
      const how: ClosedHow = r.code === 'expired' ? 'expired' : 'void';
      await closeUnexecuted(deps, out.record, how, how === 'expired' ? finishedSentence(request) : `Request ${request.id} is void: ${request.voidReason}; ${handler.nothingDone}. Ask again.`);
    }
    return r;
  }
  // The winner of pending -> approved (exactly one caller) prepares what carries it out.
  let record = out.record;
  let note = '';
  if (r.effect === 'approved' && handler.prepare) {
    const prepared = await handler.prepare(deps, out.record);
    record = prepared.record;
    note = prepared.note ?? '';
  }
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
  await deps.outbox.post(record.meta.conv, message(`${r.sentence}${note ? ` ${note}` : ''}`));
  if (input.from && !sameConversation(input.from, record.meta.conv)) {
    await deps.outbox.post(input.from, message(`Request ${request.id} (${request.summary}): ${r.sentence}`));
  }
  if (r.effect === 'approved') await handler.onApproved(deps, record);
  else if (r.effect === 'rejected') await closeUnexecuted(deps, record, 'rejected', null);
  else await redrawCard(deps, record);
  return r;
}

/**
 * The execution claim for handlers that carry the plan out themselves: approved -> executed
 * with a compare-and-set, so only one caller (a click, a retried job, a recovery scan) goes on.
 * `currentPlanHash`: the plan about to run; a different one voids the request instead.
 */
export async function claimExecution<P>(deps: Deps, id: string, currentPlanHash?: string): Promise<{ claimed: boolean; record: ApprovalRecord<P> | null }> {
  const now = deps.rt.clock.now();
  const out = await approvalStore(deps).transition<P, boolean>(id, (request) => {
    if (currentPlanHash !== undefined && request.status === 'approved' && currentPlanHash !== request.planHash) return { next: null, result: false };
    const next = markExecuted(request, now);
    return { next, result: next !== null };
  });
  return { claimed: out?.written === true && out.result, record: out?.record ?? null };
}

/**
 * End a pending or approved request that can no longer run (its plan changed, or what waited
 * on it was cancelled): the card says why and loses its buttons. `notify`: call the handler's
 * onClosed (not when the caller is the thing that waited).
 */
export async function voidApproval(deps: Deps, id: string, reason: string, opts: { actor?: string; say?: boolean; notify?: boolean } = {}): Promise<boolean> {
  const now = deps.rt.clock.now();
  const out = await approvalStore(deps).transition<unknown, boolean>(id, (request) => {
    const v = voidRequest(request, reason, now);
    return { next: v.changed ? v.request : null, result: v.changed };
  });
  if (!out?.written) return false;
  const request = out.record.request;
  const handler = approvalHandler(deps, request.action);
  await audit(deps.rt, { actor: opts.actor ?? 'ferry', kind: 'decision', action: `void request ${id}`, targets: targetsOf(deps, request), opId: out.record.meta.opId, outcome: 'skipped', detail: reason });
  await redrawCard(deps, out.record);
  if (opts.say !== false) await deps.outbox.post(out.record.meta.conv, message(`Request ${id} is void: ${reason}; ${handler.nothingDone}.`));
  if (opts.notify) await handler.onClosed?.(deps, out.record, 'void');
  return true;
}

/** A request that ends without running (rejected, expired, void): the card says so and loses its buttons. */
async function closeUnexecuted(deps: Deps, record: ApprovalRecord<unknown>, how: ClosedHow, say: string | null): Promise<void> {
  await redrawCard(deps, record);
  if (say) await deps.outbox.post(record.meta.conv, message(say));
  await approvalHandler(deps, record.request.action).onClosed?.(deps, record, how);
}

/** Expire one request if it is due (the sweep, and owners that look at their request before the sweep does). */
export async function expireRequest(deps: Deps, id: string): Promise<boolean> {
  const now = deps.rt.clock.now();
  const out = await approvalStore(deps).transition<unknown, boolean>(id, (request) => {
    const e = expire(request, now);
    return { next: e.changed ? e.request : null, result: e.changed };
  });
  if (!out?.written) return false;
  const req = out.record.request;
  const handler = approvalHandler(deps, req.action);
  await audit(deps.rt, { actor: 'ferry', kind: 'decision', action: `expire request ${id}`, targets: targetsOf(deps, req), opId: out.record.meta.opId, outcome: 'skipped', detail: `expired at ${formatUtcTime(req.expiresAt)}` });
  await closeUnexecuted(
    deps,
    out.record,
    'expired',
    `Request ${id} expired at ${formatUtcTime(req.expiresAt)} without ${req.required === 1 ? 'an approval' : 'enough approvals'}; ${handler.nothingDone}. Ask again if it is still needed.`,
  );
  return true;
}

/** The scheduled sweep: every pending request past its expiry becomes expired and its card loses its buttons. */
export async function expireDue(deps: Deps): Promise<string[]> {
  const store = approvalStore(deps);
  const expired: string[] = [];
  for (const id of await store.due(deps.rt.clock.now())) {
    if (await expireRequest(deps, id)) expired.push(id);
  }
  return expired;
}


/** The approvals store's expiry sweep. */
export const approvalsWorkflow: Workflow = {
  name: 'approvals',
  jobs: { [EXPIRY_JOB]: { queue: 'timers', handler: async (deps) => expireDue(deps) } },
};
