/**
 * The command patch hook (patchWindows.hook.command): its own 'patch-hook' job runs it once on
 * the drained host through the host's adapter, keeps its outcome, audits it and wakes the run.
 * A re-delivery after a crash reports "outcome unknown" instead of patching again.
 */
import type { Deps } from '../context.js';
import { formatDuration } from '../../core/duration.js';
import { audit } from '../../audit/audit.js';
import { errorText, withDeadline } from '../retry.js';
import { kick, type HookOutcome } from './run-state.js';

const HOOK_TTL_S = 7 * 86_400;

export interface HookJobData {
  runOpId: number;
  host: string;
  attempt: number;
  command: string;
  timeoutMs: number;
  approvedBy: string[];
}

export const hookKey = (deps: Deps, opId: number, host: string, attempt: number) => deps.rt.key('rr', opId, 'hook', host, attempt);

/** The configured command for one host: "{host}" is the Ferry host name (inventory-validated). */
export function expandHook(command: string, host: string): string {
  return command.replaceAll('{host}', host);
}

/** Last lines of stdout then stderr; mention syntax and code fences defused for the thread. */
export function outputTail(stdout: string, stderr: string, lines = 6): string[] {
  const pick = (t: string) =>
    t
      .split(/\r?\n/)
      .map((l) => l.trimEnd())
      .filter(Boolean)
      .slice(-lines)
      .map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l).replace(/```/g, "'''").replace(/<([!@#])/g, '‹$1'));
  return [...pick(stdout), ...pick(stderr)];
}

export const hookOk = (o: HookOutcome): boolean => o.error === undefined && o.exitCode === 0;

/** "exited 1 after 12s: E: Unable to fetch …" / "failed after 2h: command timeout …" */
export function hookSummary(o: HookOutcome): string {
  const took = formatDuration(o.durationMs);
  if (o.error !== undefined) return `failed after ${took}: ${o.error}`;
  const last = o.exitCode === 0 ? undefined : o.tail.at(-1);
  return `exited ${o.exitCode} after ${took}${last ? `: ${last}` : ''}`;
}

/** The 'patch-hook' job: run the hook once, keep its outcome, audit it, wake the run. */
export async function runHookJob(deps: Deps, d: HookJobData): Promise<void> {
  const key = hookKey(deps, d.runOpId, d.host, d.attempt);
  const target = { actor: 'ferry', kind: 'adapter' as const, action: 'patch hook', targets: [d.host], opId: d.runOpId, approvedBy: d.approvedBy };
  let outcome: HookOutcome;
  if (!(await deps.rt.redis.set(`${key}:started`, String(Date.now()), 'EX', HOOK_TTL_S, 'NX'))) {
    if (await deps.rt.redis.exists(key)) return;
    // Delivered again after a crash: patching twice is worse than asking a person to look.
    outcome = { error: `Ferry was interrupted while the hook ran on ${d.host}; it is not run a second time and whether it finished is unknown`, durationMs: 0, tail: [] };
  } else {
    await audit(deps.rt, { ...target, outcome: 'started', detail: d.command }).catch(() => undefined);
    const started = Date.now();
    try {
      const adapter = deps.rt.adapters.forHost(d.host);
      // The adapter honours timeoutMs itself; the deadline only guards against one that hangs.
      const r = await withDeadline(d.timeoutMs + 30_000, `the patch hook on ${d.host}`, (signal) => adapter.runCommand(d.host, d.command, { timeoutMs: d.timeoutMs, signal }));
      outcome = { exitCode: r.exitCode, durationMs: r.durationMs, tail: outputTail(r.stdout, r.stderr) };
    } catch (e) {
      outcome = { error: errorText(e), durationMs: Date.now() - started, tail: [] };
    }
  }
  await deps.rt.redis.set(key, JSON.stringify(outcome), 'EX', HOOK_TTL_S);
  await audit(deps.rt, { ...target, outcome: hookOk(outcome) ? 'ok' : 'failed', detail: `${d.command}: ${hookSummary(outcome)}` }).catch(() => undefined);
  await kick(deps, d.runOpId);
}
