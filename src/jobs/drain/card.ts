/**
 * The drain's card, drawn from stored state only (plan, per-VM states, percents): the plan
 * with Start / Cancel while it waits, then progress per VM, then how it ended.
 */
import { mention } from '../../core/permissions.js';
import { context, message, progressBar, section, type Block } from '../../chat/messages.js';
import type { CardRenderer } from '../wiring.js';
import { FINISHED } from '../operations.js';
import { stageOf, startBlocks } from './control.js';
import { percents, vmStates } from './steps.js';
import { concurrencyFor, drainParams, readPlan, type DrainPlan } from './model.js';

const STATE_LABEL: Record<string, string> = {
  pending: 'waiting',
  moving: 'moving',
  moved: 'moved',
  failed: 'FAILED',
  skipped: 'skipped',
  returning: 'moving back',
  returned: 'back home',
  'return-failed': 'could not go back',
};

function indent(s: string): string {
  return s.replace(/^ {2}/, '    ↳ ');
}

function planLines(plan: DrainPlan): Block {
  return section(plan.lines.map(indent).join('\n').slice(0, 2900));
}

function movesTable(plan: DrainPlan, title: string): Block {
  return { type: 'table', title, columns: ['VM', 'To', 'How', 'Memory'], rows: plan.moves.map((m) => [m.vm, m.target, m.mode, `${Math.round(m.memoryMiB / 1024)} GiB`]) };
}

/** The plan as the approval request's card shows it. */
export function drainPlanBlocks(plan: DrainPlan): Block[] {
  return [planLines(plan), ...(plan.moves.length ? [movesTable(plan, '*Plan* (frozen: these moves, nothing else)')] : [])];
}

export const drainCard: CardRenderer = async (deps, op) => {
  const p = drainParams(op);
  const stage = stageOf(op);
  const plan = await readPlan(deps, op.id);
  const head = `*Drain ${p.host}* · job ${op.id}`;
  if (!plan && FINISHED.includes(op.status)) {
    // Ended before a plan was stored (refused, host unreachable): the card says so, with why.
    const word = op.status === 'failed' ? 'refused: nothing was changed' : op.status;
    return message(`${op.title}: ${word}`, section(`${head} · ${word}`), ...(op.summary ? [section(op.summary)] : []), context(`requested by ${mention(op.requester)}`));
  }
  if (!plan || stage === 'planning') {
    return message(`${op.title}: checking`, section(`${head} · checking ${p.host}'s VMs and the other hosts of ${p.cluster}…`), context(`requested by ${mention(op.requester)}`));
  }
  const blocks: Block[] = [];
  const states = await vmStates(deps, op.id);
  // Nothing ran yet (waiting for Start, a dry run, a refused plan): the card is the plan.
  if (stage === 'awaiting-start' || Object.keys(states).length === 0) {
    const word = op.status === 'failed' ? 'refused: nothing was changed' : p.dryRun ? 'dry run: nothing will change' : op.status === 'waiting' ? 'plan ready' : op.status === 'cancelled' ? 'cancelled' : op.status;
    blocks.push(section(`${head} · ${word}`));
    blocks.push(planLines(plan));
    if (plan.moves.length) blocks.push(movesTable(plan, '*Plan*'));
    if (stage === 'awaiting-start' && op.status === 'waiting') {
      blocks.push(...(await startBlocks(deps, op, `Start: drain ${p.host}`, ` · rollback ${p.rollback} · ${concurrencyFor(deps, p)} at a time`)));
    }
    return message(`${op.title}: ${plan.lines[0]}`, ...blocks);
  }
  const pct = await percents(deps, op.id);
  const total = plan.moves.length;
  const rollingBack = stage === 'rolling-back' || Object.values(states).some((s) => s.state === 'returning' || s.state === 'returned');
  const stateOf = (vm: string): string => states[vm]?.state ?? 'pending';
  const n = (...which: string[]): number => plan.moves.filter((m) => which.includes(stateOf(m.vm))).length;
  // The figures count what the table shows. Rolling back, a VM that never left is home
  // ("stayed home", settled); one that failed and stayed is named as failed, not as done.
  const done = rollingBack ? n('returned', 'return-failed', 'failed', 'pending', 'skipped') : n('moved', 'skipped');
  const failedN = n('failed', 'return-failed');
  const label = rollingBack
    ? `${done}/${total} VMs settled: ${n('returned')} back home, ${n('pending', 'skipped')} never left${failedN ? `, ${failedN} failed` : ''}`
    : `${n('moved')}/${total} VMs moved${n('skipped') ? `, ${n('skipped')} skipped` : ''}${failedN ? `, ${failedN} failed` : ''}`;
  const word =
    op.status === 'waiting' ? 'on hold: waiting for a decision' : stage === 'done' ? op.status : rollingBack ? 'rolling back' : 'draining';
  blocks.push(section(`${head} · ${word}`));
  blocks.push({ type: 'progress', done, total, label });
  blocks.push({
    type: 'table',
    columns: ['VM', 'To', 'State'],
    rows: plan.moves.map((m) => {
      const s = states[m.vm];
      const st = s?.state ?? 'pending';
      const base = rollingBack && st === 'pending' ? 'stayed home' : rollingBack && st === 'failed' ? 'FAILED, stayed home' : (STATE_LABEL[st] ?? st);
      const label = base + ((st === 'moving' || st === 'returning') && pct[m.vm] !== undefined ? ` ${pct[m.vm]}%` : '');
      return [m.vm, st === 'returning' || st === 'returned' || (rollingBack && (st === 'pending' || st === 'failed')) ? p.host : m.target, label];
    }),
  });
  blocks.push(context(`requested by ${mention(op.requester)} · rollback ${p.rollback} · ${concurrencyFor(deps, p)} at a time`));
  return message(`${op.title}: ${word} ${progressBar(done, total, 10)}`, ...blocks);
};
