/**
 * The rolling run's card (Pause/Resume/Abort, Approve while waiting, Done while a manual patch
 * is due) and its closing report, drawn from the run's state only.
 */
import type { CardRenderer } from '../wiring.js';
import { FINISHED, type Operation } from '../operations.js';
import { formatDuration } from '../../core/duration.js';
import { statusLine } from '../../approvals/policy.js';
import { approvalStore } from '../../approvals/service.js';
import { context, message, section, who, type Block, type Button, type Message } from '../../chat/messages.js';
import { WindowStore } from './store.js';
import { windowLine } from './scheduler.js';
import { readRun, RUN_ACTIONS, type RunHost, type RunState } from './run-state.js';

export function hostRow(h: RunHost): string[] {
  const took = h.startedAtMs && h.finishedAtMs ? formatDuration(h.finishedAtMs - h.startedAtMs) : '';
  const phase = h.phase === 'patching' && h.hook ? 'patching (hook running)' : h.phase;
  const state = h.status === 'running' ? (phase ?? 'starting') : h.status === 'succeeded' ? 'patched' : h.status === 'failed' ? 'failed' : 'not started';
  return [h.host, state, String(h.attempts), took, (h.error ?? (h.homeVms ? `${h.homeVms.length} VMs` : '')).slice(0, 200)];
}

export function reportMessage(op: Operation, s: RunState): Message {
  const head = s.finished?.message ?? `Rolling run ${op.id}`;
  return message(
    head,
    section(`*Rolling run ${op.id}* (patch window ${s.windowId}): ${head}`),
    { type: 'table', title: '*Per host*', columns: ['Host', 'Result', 'Attempts', 'Took', 'Detail'], rows: s.hosts.map(hostRow) },
    context(`${s.approvedBy.length ? `approved by ${s.approvedBy.map(who).join(', ')} · ` : ''}job ${op.id}`),
  );
}

export const runCard: CardRenderer = async (deps, op) => {
  const s = await readRun(deps, op.id);
  const w = s ? await new WindowStore(deps.rt).get(s.windowId) : null;
  if (!s) return message(`${op.title}: ${op.status}`);
  const done = s.hosts.filter((h) => h.status === 'succeeded' || (h.status === 'failed' && !s.hosts.some((x) => x.status === 'running' && x.host === h.host))).length;
  const current = s.hosts.find((h) => h.status === 'running');
  const approval = s.approvalId && !s.approved ? (await approvalStore(deps).get(s.approvalId))?.request : undefined;
  const state = s.finished
    ? s.finished.status
    : !s.approved
      ? `waiting for approval (${approval ? `request ${approval.id}: ${statusLine(approval)}` : s.approval ? statusLine(s.approval) : ''})`
      : s.paused
        ? `paused by ${who(s.pausedBy ?? '?')}`
        : current
          ? `${current.host}: ${current.phase ?? 'starting'}`
          : 'between hosts';
  const blocks: Block[] = [
    section(`*Rolling run* · job ${op.id} · patch window ${s.windowId} · ${state}${w ? `\n${windowLine(w)}` : ''}`),
    { type: 'progress', done, total: s.hosts.length, label: `${done}/${s.hosts.length} hosts` },
    { type: 'table', columns: ['Host', 'State', 'Attempts', 'Took', 'Detail'], rows: s.hosts.map(hostRow) },
  ];
  if (!s.finished && !FINISHED.includes(op.status)) {
    const buttons: Button[] = [];
    if (!s.approved) buttons.push({ action: RUN_ACTIONS.approve, label: 'Approve', value: String(op.id), style: 'primary', command: `approve run ${op.id}` });
    if (current?.phase === 'patching' && !current.patchDone && !current.hook) {
      buttons.push({ action: RUN_ACTIONS.done, label: `Done: ${current.host} is patched`, value: `${op.id}:${current.host}`, style: 'primary', command: `done ${op.id}` });
    }
    if (s.approved) {
      buttons.push(
        s.paused
          ? { action: RUN_ACTIONS.resume, label: 'Resume', value: String(op.id), command: `resume run ${op.id}` }
          : { action: RUN_ACTIONS.pause, label: 'Pause', value: String(op.id), command: `pause run ${op.id}` },
      );
    }
    buttons.push({
      action: RUN_ACTIONS.abort,
      label: 'Abort',
      value: String(op.id),
      style: 'danger',
      command: `abort run ${op.id}`,
      confirm: { title: 'Abort the rolling run?', text: 'The host in progress is finished; no further host starts.', confirm: 'Abort', deny: 'Keep going' },
    });
    blocks.push({ type: 'actions', buttons });
  }
  blocks.push(context(`requested by ${who(op.requester)}${s.approvedBy.length ? ` · approved by ${s.approvedBy.map(who).join(', ')}` : ''}`));
  return message(`${op.title}: ${state}`, ...blocks);
};
