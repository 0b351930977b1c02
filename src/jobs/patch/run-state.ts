/**
 * A rolling run's state: one JSON record (rr:<op>) written only under the run's lock, and the
 * step job that advances it (kick). The runner is rolling.ts; its sentences run-narration.ts;
 * its card run-card.ts; the command patch hook hook.ts.
 */
import type { Deps } from '../context.js';
import { withMutex } from '../../mutex.js';
import type { OpStatus } from '../operations.js';
import type { RollingHost } from '../../core/windows.js';
import type { ApprovalRequest } from '../../approvals/policy.js';

export const RUN_KIND = 'rolling-run';

/** A rolling run's params: only its window; everything else is its run state (rr:<op>). */
export interface RunParams {
  windowId: string;
}
/** How soon a run looks again at a sub-operation in progress. */
export const POLL_MS = 500;

/** The run card's buttons (src/bot/handlers/patch-windows.ts maps each to its command). */
export const RUN_ACTIONS = {
  approve: 'ferry:rr-approve',
  pause: 'ferry:rr-pause',
  resume: 'ferry:rr-resume',
  abort: 'ferry:rr-abort',
  done: 'ferry:rr-done',
} as const;

export type Phase = 'snapshot' | 'draining' | 'patching' | 'restoring' | 'verifying';

export interface RunHost extends RollingHost {
  phase?: Phase;
  drainOp?: number;
  restoreOp?: number;
  /** VMs on the host when its turn came: all must be back on it before the next host. */
  homeVms?: string[];
  patchDone?: { by: string; atMs: number };
  /** The command patch hook of this attempt (absent with the manual hook). */
  hook?: HookState;
  /** The hook failed: the host is restored (its VMs come home), then counts as failed with this. */
  hookFailed?: string;
  startedAtMs?: number;
  finishedAtMs?: number;
  /** Per-attempt history for the report. */
  log: string[];
}

export interface HookOutcome {
  /** Absent when the command could not be run or finished (connection fault, timeout). */
  exitCode?: number;
  error?: string;
  durationMs: number;
  /** Last lines of its output, stdout then stderr. */
  tail: string[];
}

export interface HookState {
  /** As run: "{host}" already replaced. */
  command: string;
  timeoutMs: number;
  jobId?: string;
  outcome?: HookOutcome;
}

export interface RunState {
  windowId: string;
  hosts: RunHost[];
  /** The run's start approval in the approvals store (`approve <id>`, alias `approve run <job>`). */
  approvalId?: string;
  /** Legacy: runs created before the approvals store served rolling runs kept their request here. */
  approval?: ApprovalRequest<{ windowId: string; hosts: string[] }>;
  approved: boolean;
  approvedBy: string[];
  paused: boolean;
  pausedBy?: string;
  /** Set when the run cannot go on whatever the policy says (a host's VMs are not home). */
  halt?: string;
  finished?: { status: OpStatus; message: string; atMs: number };
}

const stateKey = (deps: Deps, opId: number) => deps.rt.key('rr', opId);

export async function readRun(deps: Deps, opId: number): Promise<RunState | null> {
  const raw = await deps.rt.redis.get(stateKey(deps, opId));
  return raw ? (JSON.parse(raw) as RunState) : null;
}

export async function writeRun(deps: Deps, opId: number, s: RunState): Promise<void> {
  await deps.rt.redis.set(stateKey(deps, opId), JSON.stringify(s));
}

/** The run's lock: one writer at a time, whichever process. */
export async function withRunLock<T>(deps: Deps, opId: number, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> {
  return withMutex(deps.rt.redis, deps.rt.key('rr', opId, 'lock'), { ttlMs: 120_000, waitMs: 3000 }, fn);
}

let kickSeq = 0;
/** Ask for a step; delayed ones are deduplicated per time slot so polling never piles up jobs. */
export async function kick(deps: Deps, opId: number, delayMs = 0): Promise<void> {
  const slot = delayMs > 0 ? `d${Math.floor((Date.now() + delayMs) / POLL_MS)}` : `n${process.pid}-${Date.now()}-${kickSeq++}`;
  await deps.queues.ops.add('rolling-step', { opId }, { jobId: `rr-${opId}-${slot}`, delay: delayMs, removeOnComplete: true, removeOnFail: 100, attempts: 3, backoff: { type: 'exponential', delay: 1000 } });
}
