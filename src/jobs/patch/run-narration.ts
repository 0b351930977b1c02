/**
 * What a rolling run says in its thread: the runner (rolling.ts) emits RunEvents and this pure
 * module turns each into its message, so every sentence of a run is here.
 */
import { formatDuration } from '../../core/duration.js';
import { context, message, plural, section, type Block, type Message } from '../../chat/messages.js';
import type { Operation } from '../operations.js';
import { hookOk, hookSummary } from './hook.js';
import { reportMessage } from './run-card.js';
import { RUN_ACTIONS, type HookOutcome, type RunState } from './run-state.js';

export type RunEvent =
  /** The window started and its run waits for approvers. */
  | { type: 'approval-needed'; windowId: string; opId: number; approvals: number; approvers: string; approvalId: string }
  | { type: 'host-starting'; host: string; index: number; total: number; attempt: number }
  | { type: 'draining'; host: string; job: number }
  /** Manual hook: a person patches the drained host and clicks Done. */
  | { type: 'patch-due'; opId: number; host: string }
  | { type: 'hook-started'; host: string; timeoutMs: number; command: string }
  | { type: 'hook-finished'; host: string; outcome: HookOutcome; command: string }
  | { type: 'restoring'; host: string; job: number }
  | { type: 'home-after-hook-failed'; host: string; vms: number; hookFailed: string }
  | { type: 'host-patched'; host: string; vms: number }
  /** A control (pause, resume, abort, Done) took effect: its sentence, as its caller was answered. */
  | { type: 'control'; sentence: string }
  | { type: 'finished'; op: Operation; state: RunState };

export function narrateRun(e: RunEvent): Message {
  switch (e.type) {
    case 'approval-needed':
      return message(
        `Patch window ${e.windowId} has started; its rolling run (job ${e.opId}) needs ${plural(e.approvals, 'approval')} from ${e.approvers}: "approve ${e.approvalId}" (or "approve run ${e.opId}") or the Approve button.`,
      );
    case 'host-starting':
      return message(`${e.host} (${e.index}/${e.total})${e.attempt > 1 ? `, attempt ${e.attempt}` : ''}: starting.`);
    case 'draining':
      return message(`${e.host}: draining (job ${e.job}).`);
    case 'patch-due':
      return message(`${e.host} is drained, patch it and click Done.`, section(`:hammer_and_wrench: *${e.host} is drained, patch it and click Done.*`), {
        type: 'actions',
        buttons: [{ action: RUN_ACTIONS.done, label: `Done: ${e.host} is patched`, value: `${e.opId}:${e.host}`, style: 'primary', command: `done ${e.opId}` }],
      });
    case 'hook-started':
      return message(`${e.host} is drained; running the patch hook (timeout ${formatDuration(e.timeoutMs)}): \`${e.command}\``);
    case 'hook-finished':
      return hookMessage(e.host, e.outcome, e.command);
    case 'restoring':
      return message(`${e.host}: restoring (job ${e.job}).`);
    case 'home-after-hook-failed':
      return message(`${e.host}'s ${plural(e.vms, 'VM')} ${e.vms === 1 ? 'is' : 'are'} home again; the host counts as failed: its ${e.hookFailed}.`);
    case 'host-patched':
      return message(`${e.host} is patched and its ${plural(e.vms, 'VM')} ${e.vms === 1 ? 'is' : 'are'} home.`);
    case 'control':
      return message(e.sentence);
    case 'finished':
      return reportMessage(e.op, e.state);
  }
}

function hookMessage(host: string, o: HookOutcome, command: string): Message {
  const head = hookOk(o)
    ? `${host}: the patch hook exited 0 after ${formatDuration(o.durationMs)}; restoring it now.`
    : `${host}: the patch hook ${hookSummary(o)}; its VMs are brought home and the host counts as failed.`;
  const blocks: Block[] = [section(`${hookOk(o) ? ':white_check_mark:' : ':x:'} *${head}*`)];
  if (o.tail.length) blocks.push(section(`\`\`\`${o.tail.join('\n')}\`\`\``));
  blocks.push(context(`patch hook \`${command.length > 200 ? `${command.slice(0, 200)}…` : command}\`${o.exitCode !== undefined ? ` · exit code ${o.exitCode}` : ''} · ${formatDuration(o.durationMs)}`));
  return message(head, ...blocks);
}
