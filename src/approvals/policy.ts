/**
 * Approval policy and the approval state machine (pure: no Redis, no Slack, the clock is a
 * parameter). The Redis store persists ApprovalRequest as JSON and applies every transition
 * with a compare-and-set on `version`, re-reading and re-deciding when it loses a race; the
 * reducer guarantees that pending -> approved happens at most once for any sequence of
 * decisions, so a double click, a retried delivery or two approvers racing run nothing twice.
 *
 * Result contract of decide(): a Decided means the request changed and must be persisted (CAS)
 * and its card redrawn; a refusal (core/refusal.ts, the one shape every refusal has) is one
 * sentence for an ephemeral reply and changes nothing, except that it may carry `request` when the click found the request expired or its
 * plan changed: the request is then in a terminal state to persist, and the card loses its
 * buttons.
 */
import type { FerryConfig } from '../config/schema.js';
import { durationMs } from '../core/duration.js';
import { describePrincipals, isMemberOfAny, mention, type Membership } from '../core/permissions.js';
import { planHash } from './plan-hash.js';
import { refusal, type Refusal } from '../core/refusal.js';

export const APPROVAL_ACTIONS = ['remove-ports', 'drain', 'migrate', 'rolling-run', 'pause', 'override'] as const;
/** override: going ahead despite a refused precheck (e.g. draining with a running non-HA VM). */
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

export interface ResolvedPolicy {
  action: ApprovalAction;
  /** Distinct approvers needed besides the requester. 0: the requester's own Start suffices. */
  approvals: number;
  /** Principals (see src/core/permissions.ts) who may approve. */
  approvers: string[];
  expiryMs: number;
  /** True when ferry.yml has an entry for this action; false means the defaults below. */
  configured: boolean;
}

const DEFAULT_EXPIRY_MS = 30 * 60_000;

/**
 * Defaults when ferry.yml says nothing. Removing a port cannot be rolled back, so it needs a
 * second person; a drain or migration rolls back on failure and the requester's Start
 * suffices; pause is a kill switch that must act at once, so approvals 0 and its approver
 * list is who may pull it (permissions.ts reads it for pause all / resume all).
 */
const DEFAULTS: Record<ApprovalAction, { approvals: number; approvers: string[] }> = {
  'remove-ports': { approvals: 1, approvers: ['group:approvers'] },
  drain: { approvals: 0, approvers: ['group:approvers'] },
  migrate: { approvals: 0, approvers: ['group:approvers'] },
  'rolling-run': { approvals: 1, approvers: ['group:approvers'] },
  pause: { approvals: 0, approvers: ['group:approvers'] },
  override: { approvals: 1, approvers: ['group:approvers'] },
};

/** Other names people write as keys under `approvals:` in ferry.yml. */
const ALIASES: Record<ApprovalAction, string[]> = {
  'remove-ports': ['remove-stale-ports', 'remove_ports'],
  drain: [],
  migrate: [],
  'rolling-run': ['rolling', 'rolling_run'],
  pause: ['pause-all'],
  override: [],
};

export function resolvePolicy(config: Pick<FerryConfig, 'approvals'>, action: ApprovalAction): ResolvedPolicy {
  const keys = [action, ...ALIASES[action]];
  const key = keys.find((k) => config.approvals[k] !== undefined);
  const entry = key === undefined ? undefined : config.approvals[key];
  if (!entry) return { action, ...DEFAULTS[action], approvers: [...DEFAULTS[action].approvers], expiryMs: DEFAULT_EXPIRY_MS, configured: false };
  return { action, approvals: entry.approvals, approvers: [...entry.approvers], expiryMs: durationMs(entry.expiry), configured: true };
}

// ---------------------------------------------------------------------------------------
// Requests

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'void' | 'executed';

export interface Decision {
  user: string;
  decision: 'approve' | 'reject';
  reason?: string;
  /** Epoch milliseconds. */
  at: number;
}

export interface ApprovalRequest<P = unknown> {
  id: string;
  action: ApprovalAction;
  requester: string;
  /** The frozen plan (JSON data) and its hash; execution runs exactly this plan. */
  plan: P;
  planHash: string;
  /** One line for cards and audit: "remove 7 stale ports on hyp03". */
  summary: string;
  /** Distinct approvals needed (0: the requester's Start, or one approver, suffices). */
  required: number;
  approvers: string[];
  /** Epoch milliseconds. */
  createdAt: number;
  expiresAt: number;
  decisions: Decision[];
  status: ApprovalStatus;
  /** Set when the request leaves pending (approved counts: the decision is final). */
  finishedAt?: number;
  /** Set by markExecuted, when the job claims the approved plan. */
  executedAt?: number;
  /** Why it is void, for the card. */
  voidReason?: string;
  /** Bumped on every transition: the store's compare-and-set key. */
  version: number;
}

export interface NewRequest<P> {
  /** Allocated by the store (e.g. INCR), short enough to type: "approve 12". */
  id: string;
  action: ApprovalAction;
  requester: string;
  plan: P;
  summary: string;
}

export function createRequest<P>(input: NewRequest<P>, policy: ResolvedPolicy, now: number): ApprovalRequest<P> {
  return {
    id: input.id,
    action: input.action,
    requester: input.requester,
    plan: input.plan,
    // Hashed here, not passed in, so the stored hash always belongs to the stored plan.
    planHash: planHash(input.plan),
    summary: input.summary,
    required: policy.approvals,
    approvers: [...policy.approvers],
    createdAt: now,
    expiresAt: now + policy.expiryMs,
    decisions: [],
    status: 'pending',
    version: 0,
  };
}

export interface DecisionInput {
  user: string;
  decision: 'approve' | 'reject';
  reason?: string;
  /** The hash carried by the card that was clicked (button value), or typed with the command. */
  planHash: string;
  now: number;
}

export type RefusalCode = 'self-approval' | 'not-approver' | 'expired' | 'plan-changed' | 'finished' | 'duplicate';

export interface Decided<P = unknown> {
  readonly refused: false;
  readonly request: ApprovalRequest<P>;
  readonly effect: 'recorded' | 'approved' | 'rejected';
  readonly sentence: string;
}

/** A refused decision; `request` when the click itself ended the request (expired, plan changed). */
export interface ApprovalRefusal<P = unknown> extends Refusal {
  readonly code: RefusalCode;
  readonly request?: ApprovalRequest<P>;
}

export type DecideResult<P = unknown> = Decided<P> | ApprovalRefusal<P>;

function refuse<P>(code: RefusalCode, sentence: string, request?: ApprovalRequest<P>): ApprovalRefusal<P> {
  return { ...refusal(sentence), code, ...(request ? { request } : {}) };
}

/** "14:32 UTC". Cards and refusals say UTC: approvers may sit in different zones. */
export function formatUtcTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 16)} UTC`;
}

function listUsers(users: readonly string[]): string {
  const m = users.map(mention);
  if (m.length <= 1) return m[0] ?? 'nobody';
  return `${m.slice(0, -1).join(', ')} and ${m[m.length - 1]}`;
}

/** Distinct users whose approval counts, in the order they approved. */
export function approvedBy(request: ApprovalRequest<unknown>): string[] {
  const users: string[] = [];
  for (const d of request.decisions) {
    if (d.decision === 'approve' && !users.includes(d.user)) users.push(d.user);
  }
  return users;
}

/** Approvals still needed while pending (0 once approved). */
export function remainingApprovals(request: ApprovalRequest<unknown>): number {
  if (request.status !== 'pending') return 0;
  // With required 0 one click (the requester's Start) is still needed to go ahead.
  return Math.max(Math.max(request.required, 1) - approvedBy(request).length, 0);
}

/** Who may approve, as a sentence fragment: "the approvers group or <@U1>". */
export function whoMayApprove(request: ApprovalRequest<unknown>): string {
  if (request.required === 0) return `${mention(request.requester)} (who asked) or ${describePrincipals(request.approvers)}`;
  return describePrincipals(request.approvers);
}

/** Why a finished request takes no more decisions. */
export function finishedSentence(request: ApprovalRequest<unknown>): string {
  switch (request.status) {
    case 'pending':
      return `This request is still waiting for approval.`;
    case 'approved':
      return `Already ${request.required === 0 ? 'started' : 'approved'} by ${listUsers(approvedBy(request))}; nothing to do.`;
    case 'executed':
      return `Already ${request.required === 0 ? 'started' : 'approved'} by ${listUsers(approvedBy(request))} and carried out; nothing to do.`;
    case 'rejected': {
      const reject = request.decisions.find((d) => d.decision === 'reject');
      const by = reject ? mention(reject.user) : 'someone';
      return reject?.user === request.requester ? `Already withdrawn by ${by}; nothing to do.` : `Already rejected by ${by}; nothing to do.`;
    }
    case 'expired':
      return `This request expired at ${formatUtcTime(request.expiresAt)}; ask again.`;
    case 'void':
      return `This request is void${request.voidReason ? ` (${request.voidReason})` : ''}; ask again.`;
  }
}

function finish<P>(request: ApprovalRequest<P>, status: ApprovalStatus, now: number, extra: Partial<ApprovalRequest<P>> = {}): ApprovalRequest<P> {
  return { ...request, ...extra, status, finishedAt: now, version: request.version + 1 };
}

/**
 * Apply one click or typed approve/reject. Checks run in this order, so that someone who
 * may not decide cannot void a request by clicking a stale card (anyone's click may stamp
 * an already expired request expired: the sweep would do the same):
 * finished -> expired -> requester / approver -> plan hash -> duplicate -> apply.
 *
 * The requester may reject (withdraw) their own request, and with required 0 their approve
 * is the Start; with required >= 1 their approve is refused even when they are listed.
 * Any reject by an approver rejects the request. Approvals count distinct users.
 */
export function decide<P>(request: ApprovalRequest<P>, input: DecisionInput, members: Membership): DecideResult<P> {
  const { user, decision, now } = input;

  if (request.status !== 'pending') return refuse('finished', finishedSentence(request));

  if (now >= request.expiresAt) {
    const expired = finish(request, 'expired', now);
    return refuse('expired', finishedSentence(expired), expired);
  }

  const isRequester = user === request.requester;
  if (isRequester) {
    if (decision === 'approve' && request.required > 0) {
      return refuse('self-approval', 'You asked for this; someone else has to approve it.');
    }
  } else if (!isMemberOfAny(members, user, request.approvers)) {
    const verb = request.required === 0 ? 'start or reject' : 'approve or reject';
    return refuse('not-approver', `Only ${whoMayApprove(request)} may ${verb} this request.`);
  }

  if (input.planHash !== request.planHash) {
    // Fail closed: whoever decides must have seen the plan that would run.
    const voided = finish(request, 'void', now, { voidReason: 'the plan changed after the card was shown' });
    return refuse('plan-changed', 'The plan changed since this card was shown; the approval is void.', voided);
  }

  const already = approvedBy(request);
  if (decision === 'approve' && already.includes(user)) {
    const left = remainingApprovals(request);
    return refuse('duplicate', `Your approval is already recorded; ${moreNeeded(left)} from ${describePrincipals(request.approvers)}.`);
  }

  const recorded: Decision = { user, decision, at: now, ...(input.reason?.trim() ? { reason: input.reason.trim() } : {}) };
  const withDecision: ApprovalRequest<P> = { ...request, decisions: [...request.decisions, recorded] };

  if (decision === 'reject') {
    const reason = input.reason?.trim();
    const why = reason ? `: ${reason}${/[.!?]$/.test(reason) ? '' : '.'}` : '.';
    const sentence = isRequester ? `Withdrawn by ${mention(user)}${why}` : `Rejected by ${mention(user)}${why}`;
    return { refused: false, request: finish(withDecision, 'rejected', now), effect: 'rejected', sentence };
  }

  // Only this branch leaves pending for approved, and only from pending: exactly once.
  const by = approvedBy(withDecision);
  if (by.length >= request.required) {
    const sentence = request.required === 0 ? `Started by ${mention(user)}.` : `Approved by ${listUsers(by)}.`;
    return { refused: false, request: finish(withDecision, 'approved', now), effect: 'approved', sentence };
  }
  const left = request.required - by.length;
  return {
    refused: false,
    request: { ...withDecision, version: request.version + 1 },
    effect: 'recorded',
    sentence: `Approval ${by.length} of ${request.required} recorded from ${mention(user)}; ${moreNeeded(left)} from ${describePrincipals(request.approvers)}.`,
  };
}

function moreNeeded(left: number): string {
  return left === 1 ? 'one more is needed' : `${left} more are needed`;
}

/** Called by the scheduled sweep: a pending request past its expiry becomes expired. */
export function expire<P>(request: ApprovalRequest<P>, now: number): { changed: boolean; request: ApprovalRequest<P> } {
  if (request.status !== 'pending' || now < request.expiresAt) return { changed: false, request };
  return { changed: true, request: finish(request, 'expired', now) };
}

/**
 * Void a pending or approved request whose plan no longer holds (re-planned, or the
 * execution-time plan differs). Executed and other finished requests are left alone.
 */
export function voidRequest<P>(request: ApprovalRequest<P>, reason: string, now: number): { changed: boolean; request: ApprovalRequest<P> } {
  if (request.status !== 'pending' && request.status !== 'approved') return { changed: false, request };
  return { changed: true, request: finish(request, 'void', now, { voidReason: reason }) };
}

/**
 * True only for an approved request whose stored plan still hashes to the approved hash
 * (and, when given, equals the plan about to run). The job then claims execution with
 * markExecuted + compare-and-set; only the winner runs.
 */
export function canExecute(request: ApprovalRequest<unknown>, currentPlanHash?: string): boolean {
  if (request.status !== 'approved') return false;
  if (planHash(request.plan) !== request.planHash) return false;
  return currentPlanHash === undefined || currentPlanHash === request.planHash;
}

/** approved -> executed, the claim the job makes before touching anything; null if not executable. */
export function markExecuted<P>(request: ApprovalRequest<P>, now: number): ApprovalRequest<P> | null {
  if (!canExecute(request)) return null;
  return { ...request, status: 'executed', version: request.version + 1, finishedAt: request.finishedAt ?? now, executedAt: now };
}

/** One line for the card footer: "Needs 1 more approval from the approvers group · expires 14:32 UTC". */
export function statusLine(request: ApprovalRequest<unknown>): string {
  const by = approvedBy(request);
  switch (request.status) {
    case 'pending': {
      const expires = `expires ${formatUtcTime(request.expiresAt)}`;
      if (request.required === 0) return `Waiting for ${whoMayApprove(request)} to start it · ${expires}`;
      const left = remainingApprovals(request);
      const so = by.length ? ` (approved so far by ${listUsers(by)})` : '';
      return `Needs ${left} more approval${left === 1 ? '' : 's'} from ${describePrincipals(request.approvers)}${so} · ${expires}`;
    }
    case 'approved':
      return request.required === 0 ? `Started by ${listUsers(by)}` : `Approved by ${listUsers(by)}`;
    case 'executed':
      return `${request.required === 0 ? 'Started' : 'Approved'} by ${listUsers(by)} · carried out`;
    case 'rejected': {
      const r = request.decisions.find((d) => d.decision === 'reject');
      const verb = r?.user === request.requester ? 'Withdrawn' : 'Rejected';
      return `${verb} by ${r ? mention(r.user) : 'someone'}${r?.reason ? `: ${r.reason}` : ''}`;
    }
    case 'expired':
      return `Expired at ${formatUtcTime(request.expiresAt)} without enough approvals`;
    case 'void':
      return `Void${request.voidReason ? `: ${request.voidReason}` : ''}`;
  }
}
