/**
 * The decisions around a planned move: Start (after the plan card), Cancel, and, for a drain
 * held after a failure, Roll back / Retry / Skip VM. Buttons and typed commands (`start 41`,
 * `rollback 41`, `retry 41`, `skip 41 web07`, `cancel 41`) reach the same functions here.
 *
 * Approvals: policy (src/approvals/policy.ts) says how many approvers a drain or migrate
 * needs; the default is 0, and the requester's own Start runs it (Start / Cancel on the plan
 * card). When policy asks for approvers (a configured drain/migrate approval, or an override
 * such as saving a running non-HA VM, seed 001 rule 1) the plan becomes a request in the
 * approvals store (src/approvals/service.ts), like every other action: its own card, bound to
 * the plan's hash, decided by `approve <request>` or its buttons (a typed `start <job>` is the
 * same approve), expiring on the store's sweep, surviving restarts. When it is approved the real
 * state is read again; a plan that no longer holds (a VM moved) voids the approval and the
 * drain is planned again, with a new request.
 *
 * While an operation waits for a decision no worker is busy and nothing polls: one delayed
 * timer job ('op-watch') runs when the wait expires (the plan's expiry, or its request's), and a
 * cancel (typed or clicked) ends the wait itself through decide(). The patch windows' catch-up
 * scan re-arms lost watches and finishes what a crash between an approval and its start left.
 */
import type { Job } from 'bullmq';
import { approvedBy as approvedByOf, resolvePolicy, statusLine, type ApprovalAction, type ApprovalRequest, type ResolvedPolicy } from '../../approvals/policy.js';
import { planHash } from '../../approvals/plan-hash.js';
import { renderRequestCard } from '../../approvals/cards.js';
import {
  approvalStore,
  claimExecution,
  decideApproval,
  expireRequest,
  requestApproval,
  voidApproval,
  type ApprovalHandler,
} from '../../approvals/service.js';
import type { ApprovalRecord } from '../../approvals/store.js';
import { describePrincipals, mention, type GroupMembers } from '../../core/permissions.js';
import { audit } from '../../audit/audit.js';
import { context, message, type Block } from '../../chat/messages.js';
import type { Workflow } from '../wiring.js';
import { refreshCard } from '../cards.js';
import { releaseReservations } from './reserve.js';
import { commonParams, FINISHED, type Operation } from '../operations.js';
import type { Deps } from '../context.js';
import { refusal, type Refusal } from '../../core/refusal.js';

export type Decision = 'start' | 'rollback' | 'retry' | 'skip';

/** The plan and hold cards' buttons (src/bot/handlers/drain.ts maps each to its command). */
export const DRAIN_ACTIONS = {
  start: 'ferry:drain-start',
  cancel: 'ferry:drain-cancel',
  rollback: 'ferry:drain-rollback',
  retry: 'ferry:drain-retry',
  skip: 'ferry:drain-skip',
} as const;

export interface Controlled {
  /** Continue after a decision (enqueue the next job). */
  resume(deps: Deps, op: Operation, decision: Decision, arg?: string): Promise<void>;
  /** Finish an operation cancelled (or expired) while it waited. */
  stopWaiting(deps: Deps, op: Operation, why: string): Promise<void>;
  /** The plan an approval binds to, as stored now (a re-plan changes its hash). */
  currentPlan?(deps: Deps, op: Operation): Promise<unknown>;
  /**
   * Read the real state again at approval: why the plan no longer holds, or null. The sentence
   * is a clause ("vm07 is no longer found"): it is said inside "the plan no longer holds: …".
   */
  check?(deps: Deps, op: Operation, plan: unknown): Promise<Refusal | null>;
  /** Plan again after a stale plan (a new request follows); without it the operation ends. */
  replan?(deps: Deps, op: Operation): Promise<void>;
  /** The plan as the approval card shows it. */
  planBlocks?(plan: unknown): Block[];
}

function controlledOf(deps: Deps, kind: string): Controlled | undefined {
  return deps.wiring.controlled.get(kind);
}

/**
 * What a planned move (drain, migrate) keeps in its params around its waits, read once and
 * typed here instead of cast where it is used.
 */
export interface WaitState {
  stage: string;
  /** Hold rounds so far: one decision per round. */
  round: number;
  /** The approval request its Start waits on, when policy asks for approvers. */
  approvalId?: string;
  waitingSince?: number;
  /** The plan overrides a refused precheck (save-non-ha). */
  override: boolean;
}

export function waitState(op: Pick<Operation, 'params'>): WaitState {
  const p = op.params;
  return {
    stage: typeof p.stage === 'string' ? p.stage : '',
    round: typeof p.round === 'number' ? p.round : 0,
    ...(typeof p.approvalId === 'string' ? { approvalId: p.approvalId } : {}),
    ...(typeof p.waitingSince === 'number' ? { waitingSince: p.waitingSince } : {}),
    override: p.override === true,
  };
}

export function stageOf(op: Operation): string {
  return waitState(op).stage;
}

/**
 * Queue a step of a staged kind (drain, restore, migrate) with the one retry policy steps
 * share; the job id names the step, so queueing it again (a retried caller) adds nothing.
 */
export async function queueStep(deps: Deps, name: string, jobId: string, data: { opId: number; round?: number }): Promise<void> {
  await deps.queues.ops.add(name, data, { jobId, attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
}

/**
 * The operation a step job of a staged kind (drain, restore, migrate) works on, or null when
 * it is no longer at the stage this step does: a re-delivered or late step then does nothing.
 */
export async function opAtStage(deps: Deps, job: Job, stage: string): Promise<Operation | null> {
  const { opId } = job.data as { opId?: unknown };
  if (typeof opId !== 'number') throw new Error(`job ${job.name} carries no operation id`);
  const op = await deps.ops.get(opId);
  return op && stageOf(op) === stage ? op : null;
}

export interface StartNeeds {
  action: ApprovalAction;
  approvals: number;
  approvers: string[];
  expiryMs: number;
}

/** Who must click Start: the requester (0 approvals) or N approvers other than the requester. */
export function startNeeds(deps: Deps, op: Pick<Operation, 'kind' | 'params'>): StartNeeds {
  const { override } = waitState(op);
  const action: ApprovalAction = override ? 'override' : op.kind === 'migrate' ? 'migrate' : 'drain';
  const base = resolvePolicy(deps.rt.config, op.kind === 'migrate' ? 'migrate' : 'drain');
  const p = override ? resolvePolicy(deps.rt.config, 'override') : base;
  // An override never needs fewer approvals than the plain drain would.
  const approvals = action === 'override' ? Math.max(p.approvals, base.approvals, 1) : p.approvals;
  return { action, approvals, approvers: p.approvers, expiryMs: base.expiryMs };
}

function label(op: Operation): string {
  return `job ${op.id} (${op.title})`;
}

/**
 * Apply one decision. Returns the refusal for the clicking/typing user alone, or
 * null when it took effect (the thread says what happens next).
 */
export async function decide(deps: Deps, opId: string | number, user: string, decision: Decision | 'cancel', arg: string | undefined, groupMembers: GroupMembers = {}): Promise<Refusal | null> {
  const op = await deps.ops.get(opId);
  if (!op) return refusal(`There is no job ${opId}; "jobs" lists them.`);
  const ctl = controlledOf(deps, op.kind);
  if (!ctl) return refusal(`job ${op.id} is a ${op.kind}; it has no ${decision} step.`);
  if (FINISHED.includes(op.status)) return refusal(`${label(op)} already ended (${op.status}).`);
  const stage = stageOf(op);

  if (decision === 'cancel') {
    if (op.status !== 'waiting') return null; // a running job sees the cancel flag itself
    await deps.ops.requestCancel(op.id, user);
    await endWait(deps, op, ctl, `cancelled by ${mention(user)}`, user);
    return null;
  }

  if (decision === 'start') {
    if (stage !== 'awaiting-start' || op.status !== 'waiting') return refusal(`${label(op)} is not waiting for Start (it is ${stage || op.status}).`);
    if (await deps.ops.cancelRequested(op.id)) return refusal(`${label(op)} was cancelled; run the command again for a fresh plan.`);
    const { approvalId } = waitState(op);
    if (approvalId) {
      // Policy asked for approvers: a typed Start is an approve of the operation's request.
      const r = await decideApproval(deps, { id: approvalId, user, decision: 'approve', groupMembers, via: 'command' });
      return r.refused ? r : null;
    }
    const needs = startNeeds(deps, op);
    if (needs.approvals > 0) return refusal(`${label(op)} is waiting for its approval request; it appears in this thread in a moment.`);
    if (user !== op.requester) return refusal(`Only ${mention(op.requester)}, who asked for ${label(op)}, can start it.`);
    // Exactly once, however many clicks or retried deliveries arrive.
    const first = await deps.rt.redis.set(deps.ops.keyOf(op.id, 'started'), user, 'EX', 7 * 86_400, 'NX');
    if (!first) return refusal(`${label(op)} is already started.`);
    await audit(deps.rt, { actor: user, kind: 'decision', action: `start job ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' });
    await deps.outbox.post(op.conv, message(`${mention(user)} started ${label(op)}.`));
    await ctl.resume(deps, op, 'start');
    return null;
  }

  if (stage !== 'held' || op.status !== 'waiting') return refusal(`${label(op)} is not waiting for a decision (it is ${stage || op.status}).`);
  const { round } = waitState(op);
  const first = await deps.rt.redis.set(deps.ops.keyOf(op.id, 'decision', round), `${decision}:${user}`, 'EX', 7 * 86_400, 'NX');
  if (!first) return refusal(`${label(op)} already has a decision for this failure.`);
  await audit(deps.rt, { actor: user, kind: 'decision', action: `${decision}${arg ? ` ${arg}` : ''} job ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' });
  await ctl.resume(deps, op, decision, arg);
  return null;
}

// ---------------------------------------------------------------------------------------
// Waiting: cancel and expiry without a busy worker.

/** When a wait ends by itself: the plan's expiry, or its approval request's; null on hold (a person decides). */
async function waitEndsAt(deps: Deps, op: Operation): Promise<number | null> {
  if (stageOf(op) !== 'awaiting-start') return null;
  const w = waitState(op);
  if (w.approvalId) {
    const rec = await approvalStore(deps).get(w.approvalId);
    return rec?.request.expiresAt ?? deps.rt.clock.now();
  }
  return (w.waitingSince ?? op.createdAt) + startNeeds(deps, op).expiryMs;
}

/**
 * Arm the one watch of a waiting operation, delayed to the moment its wait expires (about one
 * job per plan, where a 1 Hz re-queue made 86,400 a day). The job id names that moment, so
 * arming it again (a retry, the catch-up scan) adds nothing.
 */
export async function watchWaiting(deps: Deps, opId: number, again = false): Promise<void> {
  const op = await deps.ops.get(opId);
  if (!op || op.status !== 'waiting') return;
  const at = await waitEndsAt(deps, op);
  if (at === null) return;
  const jobId = `op-${opId}-watch-${at}${again ? `-${Date.now()}` : ''}`;
  await deps.queues.timers.add('op-watch', { opId }, { jobId, delay: Math.max(0, at - deps.rt.clock.now()), removeOnComplete: true, removeOnFail: 50 });
}

/** The watch, at the wait's expiry (or a cancel flag left by a process that stopped mid-cancel). */
async function watchJob(deps: Deps, job: Job): Promise<void> {
  const { opId } = job.data as { opId: number };
  const op = await deps.ops.get(opId);
  if (!op || op.status !== 'waiting') return;
  if (await settleWaiting(deps, op)) return;
  // Early (another process's clock, or a re-planned wait): look again at the expiry.
  await watchWaiting(deps, opId, true);
}

/** Stop or start a waiting operation whose wait is over; true when it no longer waits. */
async function settleWaiting(deps: Deps, op: Operation): Promise<boolean> {
  const ctl = controlledOf(deps, op.kind);
  if (!ctl) return true;
  const who = await deps.ops.cancelRequested(op.id);
  if (who) {
    await endWait(deps, op, ctl, `cancelled by ${mention(who)}`, who);
    return true;
  }
  const w = waitState(op);
  if (w.stage === 'awaiting-start' && w.approvalId) {
    // The request decides; this only catches what a crash or a late sweep left undone.
    return followApproval(deps, op, ctl, w.approvalId);
  }
  const ends = await waitEndsAt(deps, op);
  if (ends !== null && deps.rt.clock.now() >= ends) {
    await endWait(deps, op, ctl, 'the plan expired before anyone started it');
    return true;
  }
  return false;
}

/** Catch-up scan: every waiting planned move is settled if its wait is over, else its watch is armed again (lost with a Redis that lost data). */
async function scanWaiting(deps: Deps): Promise<void> {
  for (const op of await deps.ops.active()) {
    if (op.status !== 'waiting' || !controlledOf(deps, op.kind)) continue;
    if (!(await settleWaiting(deps, op))) await watchWaiting(deps, op.id);
  }
}

// ---------------------------------------------------------------------------------------
// Approval requests for a planned move (drain, migrate, override)

/** What a drain/migrate request freezes: the operation and its plan as stored when asked. */
export interface OpApprovalPlan {
  opId: number;
  kind: string;
  /** Card title: "drain hyp03 save-non-ha". */
  title: string;
  hosts: string[];
  plan: unknown;
}

function startedKey(deps: Deps, opId: number): string {
  return deps.ops.keyOf(opId, 'started');
}

/**
 * When policy asks for approvers, put the plan to the approvals store (its card is posted in
 * the operation's thread) and return the request id to keep in op.params.approvalId; with 0
 * approvals, undefined (the plan card's Start is enough). Call it before the operation shows
 * itself waiting, so nobody can start it in between.
 */
export async function requestStartApproval(deps: Deps, op: Operation, plan: unknown): Promise<string | undefined> {
  const needs = startNeeds(deps, op);
  if (needs.approvals === 0) return undefined;
  const policy: ResolvedPolicy = { action: needs.action, approvals: needs.approvals, approvers: needs.approvers, expiryMs: needs.expiryMs, configured: true };
  const rec = await requestApproval<OpApprovalPlan>(deps, {
    action: needs.action,
    conv: op.conv,
    requester: op.requester,
    plan: { opId: op.id, kind: op.kind, title: op.title, hosts: op.hosts, plan },
    summary: `${op.title} (job ${op.id})${needs.action === 'override' ? ', overriding a refused precheck' : ''}`,
    title: op.title,
    policy,
    opId: op.id,
  });
  return rec.request.id;
}

/**
 * How long the one path that ends a wait holds its claim: enough to finish it (stopWaiting
 * ends the operation, after which every other path finds it ended); if that process dies
 * mid-way, the catch-up scan ends the wait once the claim lapses.
 */
const END_WAIT_CLAIM_MS = 5 * 60_000;

/**
 * End a wait once. A typed cancel, a second click, the expiry watch and the catch-up scan may
 * all find the same operation waiting with its cancel flag up; the one that claims the end
 * (SET NX) says it in the thread and finishes it, the others say nothing.
 */
async function endWait(deps: Deps, op: Operation, ctl: Controlled, why: string, cancelledBy?: string): Promise<void> {
  const claimed = await deps.rt.redis.set(deps.ops.keyOf(op.id, 'wait-ended'), why, 'PX', END_WAIT_CLAIM_MS, 'NX');
  if (!claimed) return;
  if (cancelledBy) await closeApprovalOf(deps, op, `job ${op.id} was cancelled by ${mention(cancelledBy)}`, cancelledBy);
  await ctl.stopWaiting(deps, op, why);
}

/** The operation stops waiting: its pending request is void, so its card loses its buttons. */
async function closeApprovalOf(deps: Deps, op: Operation, reason: string, actor?: string): Promise<void> {
  const { approvalId } = waitState(op);
  if (!approvalId) return;
  await voidApproval(deps, approvalId, reason, { say: false, ...(actor ? { actor } : {}) }).catch((e: unknown) => deps.rt.log.warn({ err: e, opId: op.id }, 'could not void the approval request'));
}

/** Returns true when the operation stopped waiting. */
async function followApproval(deps: Deps, op: Operation, ctl: Controlled, id: string): Promise<boolean> {
  const rec = await approvalStore(deps).get<OpApprovalPlan>(id);
  if (!rec) {
    await endWait(deps, op, ctl, `its approval request ${id} is gone`);
    return true;
  }
  const r = rec.request;
  if (r.status === 'pending') {
    if (deps.rt.clock.now() < r.expiresAt) return false;
    await expireRequest(deps, id); // onClosed stops the operation
  } else if (r.status === 'approved') {
    await startApproved(deps, rec); // a crash between the approval and the start
  } else if (r.status === 'executed') {
    if (await deps.rt.redis.exists(startedKey(deps, op.id))) await ctl.resume(deps, op, 'start'); // resume is idempotent (job ids)
  } else {
    await stopFor(deps, rec, r.status);
  }
  const now = await deps.ops.get(op.id);
  return !now || now.status !== 'waiting';
}

async function stopFor(deps: Deps, record: ApprovalRecord<OpApprovalPlan>, how: 'rejected' | 'expired' | 'void'): Promise<void> {
  const r = record.request;
  const op = await deps.ops.get(r.plan.opId);
  // Only the request the operation waits on stops it (a re-plan has a newer one).
  if (!op || op.status !== 'waiting' || waitState(op).approvalId !== r.id) return;
  const ctl = controlledOf(deps, op.kind);
  if (!ctl) return;
  const reject = r.decisions.find((d) => d.decision === 'reject');
  const why =
    how === 'rejected'
      ? `${reject?.user === r.requester ? 'withdrawn' : 'rejected'} by ${mention(reject?.user ?? '?')}${reject?.reason ? ` (${reject.reason})` : ''}`
      : how === 'expired'
        ? `its approval request ${r.id} expired before enough approvers approved it`
        : `its approval request ${r.id} is void (${r.voidReason ?? 'the plan changed'})`;
  await endWait(deps, op, ctl, why);
}

/**
 * An approved request: the operation must still wait on exactly this request, its stored plan
 * must hash as the approved one, and the real state must still match the plan; then the claim
 * (approved -> executed, once) and the operation resumes as if its requester pressed Start.
 */
async function startApproved(deps: Deps, record: ApprovalRecord<OpApprovalPlan>): Promise<void> {
  const { request } = record;
  const op = await deps.ops.get(request.plan.opId);
  const ctl = op ? controlledOf(deps, op.kind) : undefined;
  if (!op || !ctl || op.status !== 'waiting' || stageOf(op) !== 'awaiting-start' || waitState(op).approvalId !== request.id) {
    await voidApproval(deps, request.id, `job ${request.plan.opId} no longer waits for it`);
    return;
  }
  const current = ctl.currentPlan ? await ctl.currentPlan(deps, op) : request.plan.plan;
  if (planHash(current) !== planHash(request.plan.plan)) {
    if (await voidApproval(deps, request.id, 'the plan changed after the card was shown')) await endWait(deps, op, ctl, 'its plan changed after it was approved');
    return;
  }
  let why: Refusal | null = null;
  try {
    why = ctl.check ? await ctl.check(deps, op, current) : null;
  } catch (e) {
    why = refusal(`Ferry could not read the hosts again (${e instanceof Error ? e.message : String(e)})`, 'unreadable');
  }
  if (why) {
    const stale = why.sentence;
    if (!(await voidApproval(deps, request.id, `the plan no longer holds: ${stale}`))) return;
    if (ctl.replan) {
      await deps.outbox.post(op.conv, message(`Planning job ${op.id} again from the hosts' real state; the new plan needs a new approval.`));
      await ctl.replan(deps, op);
    } else {
      await endWait(deps, op, ctl, `its plan no longer holds (${stale}); run the command again for a fresh plan`);
    }
    return;
  }
  const claim = await claimExecution<OpApprovalPlan>(deps, request.id);
  if (!claim.claimed) return;
  await deps.rt.redis.set(startedKey(deps, op.id), request.requester, 'EX', 7 * 86_400, 'NX');
  await audit(deps.rt, { actor: request.requester, kind: 'decision', action: `start job ${op.id}`, targets: op.hosts, opId: op.id, approvedBy: approvedByOf(request), outcome: 'ok', detail: `approval request ${request.id}` });
  await ctl.resume(deps, op, 'start');
  await opHandler.redraw?.(deps, claim.record ?? record);
}

function opApprovalCard(request: ApprovalRequest<OpApprovalPlan>, deps: Deps): ReturnType<typeof renderRequestCard> {
  const ctl = controlledOf(deps, request.plan.kind);
  const override = request.action === 'override';
  return renderRequestCard(request, {
    title: request.plan.title,
    plan: ctl?.planBlocks?.(request.plan.plan) ?? [],
    note: override
      ? 'This overrides a refused precheck: running non-HA VMs are saved in place (their service stops until they resume). A failed migration rolls back per the drain\'s rollback policy.'
      : 'A failed migration rolls back per the operation\'s rollback policy. Before it starts, Ferry reads the hosts again: if the plan no longer holds, this approval is void and a new plan is asked for.',
    confirm: { title: 'Approve and start?', text: `${request.summary}: Ferry starts it at once.`, confirm: 'Approve and start' },
  });
}

const opHandler: ApprovalHandler<OpApprovalPlan> = {
  render: opApprovalCard,
  targets: (plan) => plan.hosts,
  nothingDone: 'nothing was moved',
  async prepare(deps, record) {
    return { record, note: `Checking that the plan still holds, then starting job ${record.request.plan.opId}.` };
  },
  onApproved: startApproved,
  onClosed: stopFor,
  async redraw(deps, record) {
    if (record.meta.cardRef) await deps.outbox.update(record.meta.conv, record.meta.cardRef, opApprovalCard(record.request, deps));
    await refreshCard(deps, record.request.plan.opId, { force: true });
  },
};

/** Waiting planned moves: their watch job and the approval handler of drain, migrate and override requests. */
export const plannedMovesWorkflow: Workflow = {
  name: 'planned-moves',
  jobs: { 'op-watch': { queue: 'timers', handler: watchJob } },
  scan: scanWaiting,
  approvals: { drain: opHandler as ApprovalHandler<never>, migrate: opHandler as ApprovalHandler<never>, override: opHandler as ApprovalHandler<never> },
};

/** The plan card's footer while it waits: Start/Cancel (0 approvals) or the request it waits on, and Cancel. */
export async function startBlocks(deps: Deps, op: Operation, startLabel: string, extra = ''): Promise<Block[]> {
  const cancel = { action: DRAIN_ACTIONS.cancel, label: 'Cancel', value: String(op.id), command: `cancel ${op.id}` };
  const id = waitState(op).approvalId;
  if (!id) {
    return [
      context(`${mention(op.requester)} starts it${extra}`),
      { type: 'actions', buttons: [{ action: DRAIN_ACTIONS.start, label: startLabel, value: String(op.id), style: 'primary', command: `start ${op.id}` }, cancel] },
    ];
  }
  const rec = await approvalStore(deps).get(id);
  const needs = startNeeds(deps, op);
  const line = rec ? statusLine(rec.request) : `needs ${describePrincipals(needs.approvers)}`;
  return [
    context(`waiting for approval request ${id}${needs.action === 'override' ? ' (it saves running non-HA VMs in place)' : ''}: ${line} · "approve ${id}" or the card's Approve${extra}`),
    { type: 'actions', buttons: [cancel] },
  ];
}

export async function finishOp(deps: Deps, op: Operation, status: Operation['status'], summary: string, params: Record<string, unknown> = {}): Promise<Operation> {
  const fresh = (await deps.ops.get(op.id)) ?? op;
  // Moves that will not happen now free the memory their plan reserved (drain/reserve.ts).
  const { cluster } = commonParams(fresh);
  if (cluster !== undefined) await releaseReservations(deps.rt, cluster, op.id);
  const end = {
    status,
    finishedAt: deps.rt.clock.now(),
    summary,
    params: { ...fresh.params, ...params, stage: 'done', durationMs: deps.rt.clock.now() - (fresh.startedAt ?? fresh.createdAt) },
  };
  // The card and the channel's answer show the end before the operation reads as ended, so
  // whoever waits for the end (a user, a rolling run, a test) finds them final.
  await refreshCard(deps, op.id, { force: true, as: { ...fresh, ...end } });
  const done = await deps.ops.patch(op.id, end);
  // A card posted in the meantime (posted beside the work) is brought to the end too.
  if (!fresh.cardRef) await refreshCard(deps, op.id, { force: true });
  return done;
}
