/**
 * Drain events as the thread reads them: one pure function from an event to its message, so
 * every sentence a drain says is here and can be tested without Redis or a host.
 */
import { formatDuration } from '../../core/duration.js';
import { mention } from '../../core/permissions.js';
import { context, message, plural, section, type Block, type Button, type Message } from '../../chat/messages.js';
import { DRAIN_ACTIONS } from './control.js';
import { lockedSentence } from './locks.js';
import { namesLine } from './steps.js';
import type { DrainEvent, DrainTally } from './events.js';

export function narrateDrain(e: DrainEvent): Message {
  switch (e.type) {
    case 'resumed':
      return message(`Resumed job ${e.opId} after its worker stopped: ${e.moved} of ${e.total} VMs had already moved. Carrying on from the hosts' real state; nothing moves twice.`);
    case 'locked-out':
      return message(`${lockedSentence(e.held)} job ${e.opId} stops here; nothing more was changed.`);
    case 'gate-refused':
      return message(`${e.why} job ${e.opId} stops here; nothing was moved and ${e.host} stays out of maintenance.`);
    case 'open-ledger':
      return message(`${e.host} still has the ledger of job ${e.ledgerOpId}, which was never restored; restore ${e.host} first. Nothing was changed.`);
    case 'maintenance-entered': {
      // vSphere enters maintenance only once the host is empty; until then it refuses new VMs.
      const state = e.entering
        ? `${e.host} is entering maintenance: no new VMs land on it, and the platform completes it once the last running VM has left.`
        : `${e.host} is in maintenance: no new VMs land on it.`;
      const notes = e.notes.length ? ` Note: ${e.notes.join(' ')}` : '';
      return message(`${state} Moving ${plural(e.moves, 'VM')}, ${e.concurrency} at a time.${notes}`);
    }
    case 'lock-lost':
      return message(
        `job ${e.opId} lost its lock on ${e.host}: ${lockedSentence(e.lost)} It stopped after its current migration: ${e.moved} of ${e.total} VMs moved and ${e.host} stays in maintenance. Once job ${e.lost.opId} is done, restore ${e.host} brings them home.`,
      );
    case 'cancelled':
      return message(`job ${e.opId} was cancelled by ${mention(e.by)}: ${e.moved} of ${e.total} VMs had moved. ${e.host} stays in maintenance; restore ${e.host} brings them home.`);
    case 'vm-failed':
      return message(`${e.vm} could not move to ${e.target} after ${plural(e.attempts, 'attempt')}: ${e.error}`);
    case 'rollback-started':
      return message(`Rolling back job ${e.opId}: ${e.host} leaves maintenance and ${plural(e.back, 'VM')} ${e.back === 1 ? 'moves' : 'move'} back to it.`);
    case 'rollback-stuck':
      return message(`${e.host} could not leave maintenance: ${e.error}. The VMs stay where they are; restore ${e.host} tries again.`);
    case 'rolled-back':
      return e.problems.length
        ? message(`Rollback of job ${e.opId} finished with problems: ${e.returned} of ${e.back} VMs are back on ${e.host}; ${e.problems.join('; ')}. restore ${e.host} tries the rest again.`)
        : message(`Rolled back job ${e.opId}: ${plural(e.returned, 'VM')} ${e.returned === 1 ? 'is' : 'are'} back on ${e.host} and ${e.host} is out of maintenance. Every VM is where it started.`);
    case 'held': {
      const buttons: Button[] = [
        { action: DRAIN_ACTIONS.rollback, label: 'Roll back', value: String(e.opId), style: 'danger', command: `rollback ${e.opId}` },
        { action: DRAIN_ACTIONS.retry, label: 'Retry', value: String(e.opId), style: 'primary', command: `retry ${e.opId}` },
        ...e.failed.slice(0, 10).map((vm): Button => ({ action: DRAIN_ACTIONS.skip, label: `Skip ${vm}`, value: `${e.opId} ${vm}`, command: `skip ${e.opId} ${vm}` })),
      ];
      const text = `job ${e.opId} is on hold: ${namesLine(e.failed)} failed to move. ${e.moved} of ${e.total} VMs moved, ${e.left} not started; ${e.host} stays in maintenance until you decide.`;
      return message(
        text,
        section(`:pause_button: ${text}`),
        context('Roll back moves every moved VM home and takes the host out of maintenance; Retry tries the failed VMs again; Skip leaves a VM on the host and carries on.'),
        { type: 'actions', buttons },
      );
    }
    case 'save-failed':
      return message(`${e.vm} could not be saved on ${e.host}: ${e.error}. It keeps running there while ${e.host} is in maintenance.`);
    case 'retrying':
      return message(`Retrying ${namesLine(e.vms)}; the drain carries on.`);
    case 'vm-skipped':
      return message(`${e.vm} stays on ${e.host}; the drain carries on.`);
    case 'stopped-waiting':
      return e.held
        ? message(`job ${e.opId} was ${e.why} while on hold: ${e.moved} moved VMs stay on their new hosts and ${e.host} stays in maintenance; restore ${e.host} brings them home.`)
        : message(`job ${e.opId} (${e.title}): ${e.why}. Nothing was moved.`);
    case 'finished':
      return finishedMessage(e);
  }
}

function finishedMessage(e: Extract<DrainEvent, { type: 'finished' }>): Message {
  const { tally: t, host } = e;
  const savedPart = t.toSave ? ` ${t.saved.length} saved,` : '';
  const headline = e.rolledBack
    ? `drain of ${host} failed${e.rolledBack.failed.length ? ` (${e.rolledBack.failed.join(', ')})` : ''} and was rolled back`
    : `${host} drained in ${formatDuration(e.durationMs)}: ${t.moved.length} moved,${savedPart} ${t.skipped.length} skipped, ${t.failed.length} failed`;
  const blocks: Block[] = [section(`*${headline}.*`)];
  if (t.moved.length) blocks.push({ type: 'table', title: '*Moved*', columns: ['VM', 'To', 'Took'], rows: t.moved.map((m) => [m.vm, m.target, formatDuration(m.durationMs)]) });
  if (t.returned.length) blocks.push({ type: 'table', title: `*Back on ${host}*`, columns: ['VM', 'From'], rows: t.returned.map((m) => [m.vm, m.from]) });
  if (t.saved.length) blocks.push({ type: 'table', title: `*Saved on ${host}* (cut off until restore ${host} resumes them)`, columns: ['VM'], rows: t.saved.map((s) => [s]) });
  if (t.skipped.length) blocks.push({ type: 'table', title: '*Skipped*', columns: ['VM', 'Why'], rows: t.skipped });
  if (t.failed.length) blocks.push({ type: 'table', title: '*Failed*', columns: ['VM', 'Error'], rows: t.failed });
  blocks.push(context(`job ${e.opId} · ${formatDuration(e.durationMs)}${e.status === 'succeeded' ? ` · ledger saved: restore ${host} brings the VMs home` : ''}`));
  return message(`${headline}.`, ...blocks);
}

/** The operation's one-line record of how it ended (the card and `status` show it). */
export function tallyLine(t: DrainTally): string {
  return `${t.moved.length} moved, ${t.returned.length ? `${t.returned.length} back, ` : ''}${t.toSave ? `${t.saved.length} saved, ` : ''}${t.skipped.length} skipped, ${t.failed.length} failed`;
}
