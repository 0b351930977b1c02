/**
 * Rolling runs (Cluster-Aware Updating as the model): at a rolling window's start, approval per
 * policy ('rolling-run'), then one host at a time: drain → patch hook → restore → check that
 * every VM that was on the host is back on it, and only then the next host. Failed hosts are
 * retried (patchWindows.hostRetries); more than patchWindows.maxFailedHosts failures stop the
 * run (CAU's MaxFailedNodes); nothing new starts once the window has ended; a host in progress
 * is always finished, never abandoned. The next step is decided by the pure core
 * (rollingRunDecision in src/core/windows.ts).
 *
 * Shape: the run is an operation (kind 'rolling-run', "job 41") with a card carrying
 * Pause/Resume/Abort (and Approve while waiting, Done while a manual patch is due). Its state
 * is one JSON record (rr:<op>) written only under the run's lock by the step job
 * ('rolling-step' on 'ops'); buttons and commands change flags under the same lock and kick a
 * step. Each step does one bounded thing (start a drain, look at it, …) and schedules the next,
 * so a restart loses nothing: the state says where the run is, and the catch-up scan kicks
 * any run whose step job is gone.
 *
 * Drain and restore are not reimplemented here: a HostCycle starts them as their own
 * operations (with their ledger, locks and approvals) and the run watches those operations.
 * The cycle is the drain/restore workflows' (deps.wiring.hostCycle, from src/jobs/patch/cycle.ts); without one
 * a host fails with a sentence that says so.
 *
 * The patch hook is configuration (patchWindows.hook). Manual: Ferry posts "hyp02 is drained,
 * patch it and click Done" and waits. Command: a 'patch-hook' job runs it on the drained host
 * through the host's adapter (runCommand; "{host}" becomes the host name), posts exit code,
 * last lines of output and duration in the thread, and audits it. A non-zero exit or an error
 * fails the host the way a failed drain does: its VMs come home (the restore runs, so the next
 * host still starts only with every VM of this one back) and it counts toward maxFailedHosts.
 * The hook job is its own job, not a step: a step holds the run's lock for a moment, a patch
 * can take hours. It never runs twice for one attempt (a re-delivery after a crash reports
 * "outcome unknown" instead of patching again).
 *
 * Split as kubectl's drain is: this runner acts and emits RunEvents; run-narration.ts turns
 * them into the thread's sentences, run-card.ts draws the card and report, run-state.ts keeps
 * the record and its lock, hook.ts runs the command hook.
 */
import type { Job } from 'bullmq';
import { hostFailureSentence } from '../../adapters/types.js';
import type { Deps } from '../context.js';
import type { GiveUpHook, Workflow } from '../wiring.js';
import { ensureCard, refreshCard } from '../cards.js';
import { FINISHED, type Operation, type OpStatus } from '../operations.js';
import { rollingRunDecision, windowEnd, formatInstant } from '../../core/windows.js';
import { durationMs, formatDuration } from '../../core/duration.js';
import { resolvePolicy, approvedBy, type ApprovalRequest } from '../../approvals/policy.js';
import { planHash } from '../../approvals/plan-hash.js';
import { renderRequestCard } from '../../approvals/cards.js';
import { approvalStore, claimExecution, decideApproval, expireRequest, requestApproval, voidApproval, type ApprovalHandler } from '../../approvals/service.js';
import { describePrincipals, type GroupMembers } from '../../core/permissions.js';
import { plural, who, type Message } from '../../chat/messages.js';
import type { Conversation } from '../../chat/conversation.js';
import { audit } from '../../audit/audit.js';
import { errorText } from '../retry.js';
import { WindowStore, type PatchWindow } from './store.js';
import { windowsChanged } from './scheduler.js';
import { kick, POLL_MS, readRun, RUN_ACTIONS, RUN_KIND, withRunLock, writeRun, type HookOutcome, type HookState, type RunHost, type RunParams, type RunState } from './run-state.js';
import { expandHook, hookKey, hookOk, hookSummary, runHookJob, type HookJobData } from './hook.js';
import { narrateRun, type RunEvent } from './run-narration.js';
import { runCard } from './run-card.js';
import { refusal, type Refusal } from '../../core/refusal.js';

// Callers (handlers, App Home, tests) keep importing the run's names from here.
export { readRun, RUN_ACTIONS, RUN_KIND };
/** While a command hook runs: its job kicks the run when done, this is only the safety net. */
const WATCH_MS = 15_000;

/** The runner's one way to speak: an event, narrated into the run's thread. */
async function emit(deps: Deps, op: Pick<Operation, 'conv'>, e: RunEvent): Promise<void> {
  await deps.outbox.post(op.conv, narrateRun(e));
}

// ---------------------------------------------------------------------------------------
// The seam to the drain/restore workflows

export interface CycleRequest {
  host: string;
  /** The run's thread: the drain and restore report there. */
  conv: Conversation;
  requester: string;
  runOpId: number;
  /** Who approved the run: the drain needs no second approval for the same plan. */
  approvedBy: string[];
}

export interface HostCycle {
  /** Start draining `host`; returns the drain's operation id (it reports its own progress). */
  drain(deps: Deps, req: CycleRequest): Promise<number>;
  /** Start restoring `host` (exit maintenance, move its ledger VMs home); returns the operation id. */
  restore(deps: Deps, req: CycleRequest): Promise<number>;
  /** Called while the run watches a sub-operation (e.g. press the drain's Start for the approved run). */
  nudge?(deps: Deps, opId: number, req: CycleRequest): Promise<void>;
}


// ---------------------------------------------------------------------------------------
// Start

/** What approvers are asked to let run on every host. */
function hookNote(deps: Deps): string {
  const hook = deps.rt.config.patchWindows.hook;
  return 'command' in hook ? `, patch hook \`${hook.command}\` on each host` : ', patched by hand (Done)';
}

export async function startRollingRun(deps: Deps, w: PatchWindow): Promise<Operation> {
  const policy = resolvePolicy(deps.rt.config, 'rolling-run');
  const requester = w.createdBy ?? 'ferry';
  // One thread per run with the run card at its head: the card goes top-level where the window
  // was made, and the approval, every host's drain/restore cards, hook results and the report
  // follow in its thread (op.conv, threaded under the card once it is posted).
  const { threadTs: _windowThread, ...top } = w.conv;
  const created = await deps.ops.create({
    kind: RUN_KIND,
    title: `rolling run of patch window ${w.id}`,
    requester,
    conv: top as PatchWindow['conv'],
    hosts: w.hosts,
    params: { windowId: w.id } satisfies RunParams,
  });
  const op = (await ensureCard(deps, created.id)) ?? created;
  const now = deps.rt.clock.now();
  const state: RunState = {
    windowId: w.id,
    hosts: w.hosts.map((host) => ({ host, status: 'pending', attempts: 0, log: [] })),
    approved: policy.approvals === 0,
    approvedBy: [],
    paused: false,
  };
  if (policy.approvals > 0) {
    // The approvals store: its card, expiry sweep, plan-hash binding and execution claim.
    const rec = await requestApproval<RunPlan>(deps, {
      action: 'rolling-run',
      conv: op.conv,
      requester,
      plan: { runOpId: op.id, windowId: w.id, hosts: w.hosts },
      summary: `rolling run of patch window ${w.id}: ${plural(w.hosts.length, 'host')}, one at a time${hookNote(deps)}`,
      title: op.title,
      policy,
      opId: op.id,
    });
    state.approvalId = rec.request.id;
  }
  await writeRun(deps, op.id, state);
  const store = new WindowStore(deps.rt);
  await store.update(w.id, { revision: w.revision, status: w.status }, { runOpId: op.id });
  await deps.ops.patch(op.id, state.approved ? { status: 'running', startedAt: now } : { status: 'waiting', summary: 'waiting for approval' });
  await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `rolling run of patch window ${w.id}`, targets: w.hosts, opId: op.id, outcome: 'started' }).catch(() => undefined);
  await refreshCard(deps, op.id);
  if (!state.approved) {
    await emit(deps, op, { type: 'approval-needed', windowId: w.id, opId: op.id, approvals: policy.approvals, approvers: describePrincipals(policy.approvers), approvalId: state.approvalId ?? '' });
  }
  windowsChanged(deps);
  await kick(deps, op.id);
  return op;
}


// ---------------------------------------------------------------------------------------
// Steps

async function finishRun(deps: Deps, op: Operation, state: RunState, status: OpStatus, text: string): Promise<void> {
  const now = deps.rt.clock.now();
  state.finished = { status, message: text, atMs: now };
  await writeRun(deps, op.id, state);
  await deps.ops.patch(op.id, { status, finishedAt: now, summary: text.slice(0, 200) });
  await emit(deps, op, { type: 'finished', op, state });
  await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `rolling run of patch window ${state.windowId} ended`, targets: op.hosts, opId: op.id, outcome: status === 'succeeded' ? 'ok' : 'failed', detail: text }).catch(() => undefined);
  await refreshCard(deps, op.id, { force: true });
  windowsChanged(deps);
}

/** A later failure of a host whose hook had already failed names both. */
function withHookFailure(h: RunHost, error: string): string {
  return h.hookFailed ? `${h.hookFailed}; then ${error}` : error;
}

function failHost(deps: Deps, h: RunHost, error: string): void {
  h.status = 'failed';
  h.error = error;
  h.phase = undefined;
  h.finishedAtMs = deps.rt.clock.now();
  h.log.push(`attempt ${h.attempts}: ${error}`);
}

/** Names of homeVms not on `host` now, with where they are. */
async function notHome(deps: Deps, h: RunHost): Promise<string[]> {
  const adapter = deps.rt.adapters.forHost(h.host);
  const out: string[] = [];
  for (const vm of h.homeVms ?? []) {
    try {
      const found = await adapter.findVm(vm);
      if (!found) out.push(`${vm} (not found)`);
      else if (found.host !== h.host) out.push(`${vm} (on ${found.host})`);
    } catch (e) {
      out.push(`${vm} (${errorText(e)})`);
    }
  }
  return out;
}

/** Watch a sub-operation: undefined while it runs, else its final state. */
async function subOp(deps: Deps, id: number): Promise<Operation | undefined> {
  const op = await deps.ops.get(id);
  if (!op) throw new Error(`operation ${id} vanished`);
  return FINISHED.includes(op.status) ? op : undefined;
}

/** The patching phase with a command hook: start its job once, then wait for its outcome. */
async function patchWithHook(deps: Deps, op: Operation, state: RunState, h: RunHost, hook: HookState): Promise<HostProgress> {
  const key = hookKey(deps, op.id, h.host, h.attempts);
  if (!hook.jobId) {
    const jobId = `rr-hook-${op.id}-${h.host}-${h.attempts}`;
    const data: HookJobData = { runOpId: op.id, host: h.host, attempt: h.attempts, command: hook.command, timeoutMs: hook.timeoutMs, approvedBy: state.approvedBy };
    // One attempt: a patch command is not blindly run again.
    await deps.queues.ops.add('patch-hook', data, { jobId, attempts: 1, removeOnComplete: true, removeOnFail: 100 });
    hook.jobId = jobId;
    await emit(deps, op, { type: 'hook-started', host: h.host, timeoutMs: hook.timeoutMs, command: hook.command });
    return 'watch';
  }
  if (!hook.outcome) {
    let raw = await deps.rt.redis.get(key);
    if (!raw) {
      const job = await deps.queues.ops.getJob(hook.jobId);
      const jobState = job ? await job.getState() : 'missing';
      if (!['missing', 'unknown', 'completed', 'failed'].includes(jobState)) return 'watch';
      // The outcome is written before the job completes: look once more before calling it lost.
      raw = await deps.rt.redis.get(key);
      if (!raw) {
        const why = jobState === 'failed' ? `failed (${job?.failedReason ?? 'no reason given'})` : 'was lost';
        raw = JSON.stringify({ error: `the patch hook job ${why}; whether the command ran is unknown`, durationMs: 0, tail: [] } satisfies HookOutcome);
      }
    }
    hook.outcome = JSON.parse(raw) as HookOutcome;
  }
  const o = hook.outcome;
  await emit(deps, op, { type: 'hook-finished', host: h.host, outcome: o, command: hook.command });
  if (hookOk(o)) {
    h.log.push(`attempt ${h.attempts}: patched (hook exited 0 after ${formatDuration(o.durationMs)})`);
  } else {
    h.hookFailed = `patch hook ${hookSummary(o)}`;
    h.log.push(`attempt ${h.attempts}: ${h.hookFailed}`);
  }
  // Either way the host is restored: the next host starts only with every VM of this one home.
  h.phase = 'restoring';
  return 'again';
}

type HostProgress = 'again' | 'poll' | 'watch' | 'wait';

/** One bounded step for the host in progress. */
async function advanceHost(deps: Deps, op: Operation, state: RunState, h: RunHost): Promise<HostProgress> {
  const req: CycleRequest = { host: h.host, conv: op.conv, requester: op.requester, runOpId: op.id, approvedBy: state.approvedBy };
  switch (h.phase ?? 'snapshot') {
    case 'snapshot': {
      const hook = deps.rt.config.patchWindows.hook;
      const adapter = deps.rt.adapters.forHost(h.host);
      if ('command' in hook && !adapter.capabilities.hostCommands) {
        failHost(deps, h, `its ${adapter.kind} adapter cannot run the command patch hook; nothing was done to it`);
        return 'again';
      }
      try {
        const vms = await deps.rt.adapters.forHost(h.host).listVms(h.host);
        h.homeVms = vms.map((v) => v.name);
      } catch (e) {
        failHost(deps, h, `could not list its VMs: ${hostFailureSentence(h.host, e)}`);
        return 'again';
      }
      h.phase = 'draining';
      return 'again';
    }
    case 'draining': {
      const cycle = deps.wiring.hostCycle;
      if (!cycle) {
        failHost(deps, h, 'the drain and restore workflows are not available in this Ferry build');
        return 'again';
      }
      if (h.drainOp === undefined) {
        try {
          h.drainOp = await cycle.drain(deps, req);
        } catch (e) {
          failHost(deps, h, errorText(e));
          return 'again';
        }
        await emit(deps, op, { type: 'draining', host: h.host, job: h.drainOp });
        return 'poll';
      }
      await cycle.nudge?.(deps, h.drainOp, req);
      const d = await subOp(deps, h.drainOp);
      if (!d) return 'poll';
      if (d.status !== 'succeeded') {
        failHost(deps, h, `drain job ${d.id} ${d.status}${d.summary ? `: ${d.summary}` : ''}`);
        const away = await notHome(deps, h);
        if (away.length) state.halt = `${h.host}'s VMs are not all home after its failed drain: ${away.join(', ')}; the run stops here`;
        return 'again';
      }
      h.phase = 'patching';
      const hook = deps.rt.config.patchWindows.hook;
      if ('command' in hook) {
        h.hook = { command: expandHook(hook.command, h.host), timeoutMs: durationMs(hook.timeout) };
        return 'again';
      }
      if ('manual' in hook) {
        await emit(deps, op, { type: 'patch-due', opId: op.id, host: h.host });
      }
      return 'wait';
    }
    case 'patching': {
      if (h.hook) return patchWithHook(deps, op, state, h, h.hook);
      if (!h.patchDone) return 'wait';
      h.phase = 'restoring';
      h.log.push(`attempt ${h.attempts}: patched (Done by ${h.patchDone.by})`);
      return 'again';
    }
    case 'restoring': {
      const cycle = deps.wiring.hostCycle;
      if (!cycle) {
        failHost(deps, h, 'the restore workflow is not available in this Ferry build');
        return 'again';
      }
      if (h.restoreOp === undefined) {
        try {
          h.restoreOp = await cycle.restore(deps, req);
        } catch (e) {
          failHost(deps, h, withHookFailure(h, errorText(e)));
          state.halt = `${h.host} could not be restored (${errorText(e)}); it stays in maintenance and the run stops here`;
          return 'again';
        }
        await emit(deps, op, { type: 'restoring', host: h.host, job: h.restoreOp });
        return 'poll';
      }
      const r = await subOp(deps, h.restoreOp);
      if (!r) return 'poll';
      if (r.status !== 'succeeded') {
        failHost(deps, h, withHookFailure(h, `restore job ${r.id} ${r.status}${r.summary ? `: ${r.summary}` : ''}`));
        const away = await notHome(deps, h);
        if (away.length) state.halt = `${h.host}'s VMs are not all home: ${away.join(', ')}; the run stops here`;
        return 'again';
      }
      h.phase = 'verifying';
      return 'again';
    }
    case 'verifying': {
      const away = await notHome(deps, h);
      if (away.length) {
        failHost(deps, h, withHookFailure(h, `not every VM is home: ${away.join(', ')}`));
        state.halt = `${h.host}'s VMs are not all home (${away.join(', ')}); the next host does not start`;
        return 'again';
      }
      if (h.hookFailed) {
        const hookFailed = h.hookFailed;
        failHost(deps, h, hookFailed);
        await emit(deps, op, { type: 'home-after-hook-failed', host: h.host, vms: h.homeVms?.length ?? 0, hookFailed });
        return 'again';
      }
      h.status = 'succeeded';
      h.phase = undefined;
      h.finishedAtMs = deps.rt.clock.now();
      h.log.push(`attempt ${h.attempts}: patched, ${plural(h.homeVms?.length ?? 0, 'VM')} home`);
      await emit(deps, op, { type: 'host-patched', host: h.host, vms: h.homeVms?.length ?? 0 });
      return 'again';
    }
  }
}

/** The step job: advance the run as far as it can go without waiting. */
export async function rollingStep(deps: Deps, opId: number): Promise<void> {
  const got = await withRunLock(deps, opId, async () => {
    for (let guard = 0; guard < 50; guard++) {
      const op = await deps.ops.get(opId);
      const state = await readRun(deps, opId);
      // A run that ended (its own step gave up included) never advances again.
      if (!op || !state || state.finished || FINISHED.includes(op.status)) return;
      const store = new WindowStore(deps.rt);
      const w = await store.get(state.windowId);
      const now = deps.rt.clock.now();
      const aborted = (await deps.ops.cancelRequested(opId)) !== null || !w || w.status === 'cancelled';

      if (!state.approved) {
        if (aborted) {
          if (state.approvalId) await voidApproval(deps, state.approvalId, `rolling run ${opId} was cancelled`, { say: false });
          return finishRun(deps, op, state, 'cancelled', 'The run was cancelled before it was approved; no host was touched.');
        }
        if (state.approvalId) {
          const gate = await approvalGate(deps, op, state, w);
          if (gate === 'approved') continue;
          if (typeof gate === 'string') return finishRun(deps, op, state, 'cancelled', gate);
          await kick(deps, opId, gate.waitMs);
          return;
        }
        if (state.approval && now >= state.approval.expiresAt) {
          return finishRun(deps, op, state, 'cancelled', `The run's approval expired at ${formatInstant(state.approval.expiresAt, w?.zone ?? 'UTC')}; no host was touched.`);
        }
        if (state.approval) await kick(deps, opId, Math.min(60_000, Math.max(POLL_MS, state.approval.expiresAt - now)));
        return;
      }

      const running = state.hosts.find((h) => h.status === 'running');
      if (running) {
        const p = await advanceHost(deps, op, state, running);
        await writeRun(deps, opId, state);
        await refreshCard(deps, opId);
        if (p === 'again') continue;
        if (p === 'poll') await kick(deps, opId, POLL_MS);
        if (p === 'watch') await kick(deps, opId, WATCH_MS);
        return;
      }
      if (state.halt) return finishRun(deps, op, state, 'failed', `Stopped: ${state.halt}.`);

      const maxAttempts = deps.rt.config.patchWindows.hostRetries + 1;
      const decision = rollingRunDecision({
        hosts: state.hosts,
        maxFailedHosts: deps.rt.config.patchWindows.maxFailedHosts,
        maxAttempts,
        windowStartMs: w?.startMs,
        windowEndMs: w ? windowEnd(w) : now,
        now,
        paused: state.paused,
        aborted,
      });
      if (decision.action === 'start') {
        const h = state.hosts.find((x) => x.host === decision.host)!;
        h.status = 'running';
        h.attempts = decision.attempt;
        h.phase = 'snapshot';
        h.drainOp = undefined;
        h.restoreOp = undefined;
        h.patchDone = undefined;
        h.hook = undefined;
        h.hookFailed = undefined;
        h.error = undefined;
        h.startedAtMs = now;
        const index = state.hosts.indexOf(h) + 1;
        await writeRun(deps, opId, state);
        await emit(deps, op, { type: 'host-starting', host: h.host, index, total: state.hosts.length, attempt: decision.attempt });
        continue;
      }
      if (decision.action === 'wait') {
        if (decision.reason === 'before-window' && decision.untilMs) await kick(deps, opId, decision.untilMs - now);
        await refreshCard(deps, opId);
        return;
      }
      const status: OpStatus =
        decision.action === 'done' ? (decision.summary.failed.length ? 'partial' : 'succeeded') : decision.reason === 'aborted' ? 'cancelled' : decision.summary.succeeded.length ? 'partial' : 'failed';
      return finishRun(deps, op, state, status, decision.message);
    }
    // Fifty transitions without waiting means something loops; look again shortly.
    await kick(deps, opId, POLL_MS);
  });
  if (!got.ok) await kick(deps, opId, POLL_MS);
}


// ---------------------------------------------------------------------------------------
// Controls: approve, pause/resume, abort, Done. One path for buttons and typed commands.

export interface ControlInput {
  opId: number;
  user: string;
  groupMembers: GroupMembers;
  host?: string;
}

/** A control's answer: the sentence the thread hears, or the refusal its caller alone hears. */
export type ControlResult = { refused: false; sentence: string } | Refusal;

async function control(deps: Deps, opId: number, fn: (op: Operation, s: RunState) => Promise<ControlResult> | ControlResult): Promise<ControlResult> {
  const op = await deps.ops.get(opId);
  if (!op || op.kind !== RUN_KIND) return refusal(`There is no rolling run ${opId}; "patch windows" shows the windows and their runs.`);
  const got = await withRunLock(deps, opId, async () => {
    const s = await readRun(deps, opId);
    if (!s) return refusal(`Rolling run ${opId} has no state; nothing was done.`);
    if (s.finished) return refusal(`Rolling run ${opId} has already ended (${s.finished.status}).`);
    const now = await deps.ops.get(opId);
    if (!now || FINISHED.includes(now.status)) return refusal(`Rolling run ${opId} has already ended (${now?.status ?? 'gone'}).`);
    const r = await fn(op, s);
    if (!r.refused) await writeRun(deps, opId, s);
    return r;
  });
  if (!got.ok) return refusal(`Rolling run ${opId} is busy; try again in a moment.`);
  if (!got.value.refused) {
    await emit(deps, op, { type: 'control', sentence: got.value.sentence });
    await kick(deps, opId);
    await refreshCard(deps, opId, { force: true });
  }
  return got.value;
}

interface RunPlan {
  runOpId: number;
  windowId: string;
  hosts: string[];
}

/**
 * Under the run's lock: what the run's approval request says. Approved: claim it (approved ->
 * executed, once; a window whose hosts changed since the card voids it) and mark the run
 * approved. Pending: how long to wait. Ended without approval: the sentence the run ends with.
 */
async function approvalGate(deps: Deps, op: Operation, state: RunState, w: PatchWindow | null): Promise<'approved' | string | { waitMs: number }> {
  const id = state.approvalId!;
  const store = approvalStore(deps);
  let rec = await store.get<RunPlan>(id);
  if (!rec) return `The run's approval request ${id} is gone; no host was touched.`;
  const now = deps.rt.clock.now();
  if (rec.request.status === 'pending' && now >= rec.request.expiresAt) {
    await expireRequest(deps, id);
    rec = (await store.get<RunPlan>(id)) ?? rec;
  }
  if (rec.request.status === 'approved') {
    const current: RunPlan = { ...rec.request.plan, hosts: w?.hosts ?? rec.request.plan.hosts };
    if (planHash(current) !== rec.request.planHash) {
      await voidApproval(deps, id, `the hosts of patch window ${state.windowId} changed after the card was shown`);
    } else {
      await claimExecution(deps, id);
    }
    rec = (await store.get<RunPlan>(id)) ?? rec;
  }
  const r = rec.request;
  switch (r.status) {
    case 'pending':
      return { waitMs: Math.min(60_000, Math.max(POLL_MS, r.expiresAt - now)) };
    case 'approved': // claimed by another caller a moment ago: look again
      return { waitMs: POLL_MS };
    case 'executed':
      state.approved = true;
      state.approvedBy = approvedBy(r);
      await writeRun(deps, op.id, state);
      await deps.ops.patch(op.id, { status: 'running', startedAt: now, summary: 'approved' });
      await refreshCard(deps, op.id, { force: true });
      return 'approved';
    case 'rejected': {
      const d = r.decisions.find((x) => x.decision === 'reject');
      return `The run's approval request ${id} was ${d?.user === r.requester ? 'withdrawn' : 'rejected'} by ${who(d?.user ?? '?')}${d?.reason ? ` (${d.reason})` : ''}; no host was touched.`;
    }
    case 'expired':
      return `The run's approval expired at ${formatInstant(r.expiresAt, w?.zone ?? 'UTC')}; no host was touched.`;
    case 'void':
      return `The run's approval request ${id} is void (${r.voidReason ?? 'the plan changed'}); no host was touched.`;
  }
}

/** The run's request on the approvals store's card; decisions only wake the run (its step decides under the lock). */
function runRequestCard(request: ApprovalRequest<RunPlan>): Message {
  return renderRequestCard(request, {
    title: `Rolling run of patch window ${request.plan.windowId}`,
    plan: [{ type: 'table', title: '*Hosts, in this order, one at a time*', columns: ['#', 'Host'], rows: request.plan.hosts.map((h, i) => [String(i + 1), h]) }],
    note: 'Each host is drained, patched and restored; the next host starts only when every VM of the previous one is home. More failed hosts than patchWindows.maxFailedHosts stop the run.',
    confirm: { title: 'Approve the rolling run?', text: `${request.summary}. Hosts are drained, patched and restored one at a time.`, confirm: 'Approve the run' },
  });
}

const runApprovals: ApprovalHandler<RunPlan> = {
  render: runRequestCard,
  targets: (plan) => plan.hosts,
  nothingDone: 'no host was touched',
  async prepare(_deps, record) {
    return { record, note: `Rolling run ${record.request.plan.runOpId} goes ahead, one host at a time.` };
  },
  async onApproved(deps, record) {
    await kick(deps, record.request.plan.runOpId);
  },
  async onClosed(deps, record) {
    await kick(deps, record.request.plan.runOpId);
  },
  async redraw(deps, record) {
    if (record.meta.cardRef) await deps.outbox.update(record.meta.conv, record.meta.cardRef, runRequestCard(record.request));
    await refreshCard(deps, record.request.plan.runOpId, { force: true });
  },
};

/** `approve run <job>`: an alias of `approve <request>` for the run's request, one policy for both. */
export async function approveRun(deps: Deps, input: ControlInput): Promise<ControlResult> {
  const op = await deps.ops.get(input.opId);
  const s = op?.kind === RUN_KIND ? await readRun(deps, input.opId) : null;
  if (!op || !s) return refusal(`There is no rolling run ${input.opId}; "patch windows" shows the windows and their runs.`);
  if (s.finished) return refusal(`Rolling run ${op.id} has already ended (${s.finished.status}).`);
  if (FINISHED.includes(op.status)) return refusal(`Rolling run ${op.id} has already ended (${op.status}).`);
  if (s.approved) return refusal(`Rolling run ${op.id} is already approved.`);
  if (!s.approvalId) return refusal(`Rolling run ${op.id} has no approval request Ferry can decide; abort it and start the window's run again.`);
  const r = await decideApproval(deps, { id: s.approvalId, user: input.user, decision: 'approve', groupMembers: input.groupMembers, via: 'command' });
  if (r.refused) return r;
  return { refused: false, sentence: r.sentence };
}

export async function pauseRun(deps: Deps, input: ControlInput, paused: boolean): Promise<ControlResult> {
  return control(deps, input.opId, (op, s) => {
    if (s.paused === paused) return refusal(`Rolling run ${op.id} is already ${paused ? 'paused' : 'running'}.`);
    s.paused = paused;
    s.pausedBy = paused ? input.user : undefined;
    void audit(deps.rt, { actor: input.user, kind: 'decision', action: `${paused ? 'pause' : 'resume'} run ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' }).catch(() => undefined);
    const current = s.hosts.find((h) => h.status === 'running');
    return {
      refused: false,
      sentence: paused
        ? `${who(input.user)} paused rolling run ${op.id}${current ? `; ${current.host} is finished first` : ''}; no new host starts until "resume run ${op.id}".`
        : `${who(input.user)} resumed rolling run ${op.id}.`,
    };
  });
}

export async function abortRun(deps: Deps, input: ControlInput): Promise<ControlResult> {
  return control(deps, input.opId, async (op, s) => {
    await deps.ops.requestCancel(op.id, input.user);
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: `abort run ${op.id}`, targets: op.hosts, opId: op.id, outcome: 'ok' }).catch(() => undefined);
    const current = s.hosts.find((h) => h.status === 'running');
    return { refused: false, sentence: `${who(input.user)} aborted rolling run ${op.id}${current ? `; ${current.host} is finished first (a half-done host is never abandoned)` : ''}.` };
  });
}

export async function patchDone(deps: Deps, input: ControlInput): Promise<ControlResult> {
  return control(deps, input.opId, async (op, s) => {
    const h = s.hosts.find((x) => x.status === 'running' && x.phase === 'patching' && (!input.host || x.host === input.host));
    if (!h) return refusal(`No host of rolling run ${op.id} is waiting to be patched${input.host ? ` (${input.host} is not)` : ''}.`);
    if (h.hook) return refusal(`${h.host} is patched by the command hook (patchWindows.hook), not by hand; the run goes on when the hook ends.`);
    if (h.patchDone) return refusal(`${h.host} was already marked patched by ${who(h.patchDone.by)}.`);
    h.patchDone = { by: input.user, atMs: deps.rt.clock.now() };
    await audit(deps.rt, { actor: input.user, kind: 'decision', action: `${h.host} patched (run ${op.id})`, targets: [h.host], opId: op.id, outcome: 'ok' }).catch(() => undefined);
    return { refused: false, sentence: `${who(input.user)}: ${h.host} is patched; restoring it now.` };
  });
}

// ---------------------------------------------------------------------------------------
// Give-up: the run's own step job used up its attempts

/** What the host that was mid-cycle is left like, in one sentence. */
async function leftBehind(deps: Deps, h: RunHost): Promise<string> {
  const sub = h.phase === 'restoring' ? h.restoreOp : h.phase === 'draining' ? h.drainOp : undefined;
  if (sub !== undefined) {
    const o = await deps.ops.get(sub);
    if (o && !FINISHED.includes(o.status)) {
      return h.phase === 'restoring'
        ? `${h.host}'s restore (job ${sub}) is still running on its own and reports in this thread`
        : `${h.host}'s drain (job ${sub}) is still running on its own; when it ends, restore ${h.host} brings its VMs home`;
    }
  }
  let maintenance: boolean;
  try {
    maintenance = (await deps.rt.adapters.forHost(h.host).describeHost(h.host)).maintenance;
  } catch (e) {
    return `${hostFailureSentence(h.host, e)}; look at it before anything else: restore ${h.host} brings its VMs home if it is drained`;
  }
  const away = await notHome(deps, h);
  const hook = h.phase === 'patching' && h.hook && !h.hook.outcome ? ` (its patch hook may still be running)` : '';
  if (maintenance) return `${h.host} is still drained${hook}; restore ${h.host} brings its VMs home`;
  if (away.length) return `${h.host} is out of maintenance but not every VM is home (${away.join(', ')}); restore ${h.host} brings them home`;
  return `${h.host} is out of maintenance with every VM home${h.status === 'running' && h.phase !== 'verifying' ? '; it may not be patched' : ''}`;
}

const runGiveUp: GiveUpHook = async (deps, op, why) => {
  const settle = async (): Promise<string[]> => {
    const state = await readRun(deps, op.id);
    if (!state || state.finished) return [];
    const notes: string[] = [];
    const h = state.hosts.find((x) => x.status === 'running');
    if (h) {
      notes.push(await leftBehind(deps, h));
      failHost(deps, h, `the run stopped during ${h.phase ?? 'its start'}: ${why}`);
    }
    state.finished = { status: 'failed', message: `Stopped: the run's step failed (${why})${h ? ` while ${h.host} was mid-cycle` : ''}.`, atMs: deps.rt.clock.now() };
    await writeRun(deps, op.id, state);
    return notes;
  };
  // The operation is already failed, so a step in flight stops at its next look: wait for its lock.
  for (let i = 0; i < 5; i++) {
    const got = await withRunLock(deps, op.id, settle);
    if (got.ok) {
      windowsChanged(deps);
      return got.value;
    }
  }
  const notes = await settle();
  windowsChanged(deps);
  return notes;
};

/** Runs whose step job may be gone (a restart during a poll): the catch-up scan kicks them. */
export async function kickActiveRuns(deps: Deps): Promise<void> {
  for (const op of await deps.ops.active()) {
    if (op.kind === RUN_KIND) await kick(deps, op.id, 0).catch(() => undefined);
  }
}

export const rollingRunWorkflow: Workflow = {
  name: 'rolling-run',
  jobs: {
    // runOpId, not opId: a failed hook job must not make the give-up path end the whole run.
    'patch-hook': { queue: 'ops', handler: async (deps, job: Job) => runHookJob(deps, job.data as HookJobData) },
    'rolling-step': { queue: 'ops', handler: async (deps, job: Job) => rollingStep(deps, Number((job.data as { opId: number }).opId)) },
  },
  cards: { [RUN_KIND]: runCard },
  giveUp: { [RUN_KIND]: runGiveUp },
  approvals: { 'rolling-run': runApprovals as ApprovalHandler<never> },
  rollingStart: async (deps, w) => void (await startRollingRun(deps, w)),
  scan: kickActiveRuns,
};
