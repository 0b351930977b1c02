/**
 * The last line of defence: a job that has used up its attempts on an unexpected fault. Its
 * operation must not stay "running" for ever with its hosts locked and nobody told. Ferry
 * says plainly what stopped and what state it left, marks the operation failed, and frees
 * the operation's host locks. Workflows handle the faults they expect themselves; this only
 * catches what they did not.
 */
import type { Job } from 'bullmq';
import type { Deps } from './context.js';
import { commonParams, FINISHED } from './operations.js';
import { refreshCard } from './cards.js';
import { errorText } from './retry.js';
import { releaseLock } from './drain/locks.js';
import { readLedger, isOpen } from './drain/ledger.js';
import { releaseReservations } from './drain/reserve.js';
import { audit } from '../audit/audit.js';
import { message } from '../chat/messages.js';

export function isLastAttempt(job: Job): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

export async function giveUp(deps: Deps, job: Job, err: unknown): Promise<void> {
  const opId = (job.data as { opId?: unknown }).opId;
  if (typeof opId !== 'number') return;
  const op = await deps.ops.get(opId);
  if (!op || FINISHED.includes(op.status)) return;
  const why = errorText(err);
  const notes: string[] = [];
  for (const host of op.hosts) {
    await releaseLock(deps.rt, host, opId);
    const ledger = await readLedger(deps.rt, host);
    if (ledger && ledger.opId === opId && isOpen(ledger)) notes.push(`the ledger of ${host} is kept: \`restore ${host}\` brings its VMs home`);
  }
  // Ended like finishOp ends it: a staged operation (drain, restore, migrate) is at stage
  // 'done', so its card shows the failure and a re-delivered step of it does nothing.
  const fresh = (await deps.ops.get(opId)) ?? op;
  const common = commonParams(fresh);
  if (common.cluster !== undefined) await releaseReservations(deps.rt, common.cluster, opId).catch(() => undefined);
  const stage = common.stage !== undefined ? { params: { ...fresh.params, stage: 'done' } } : {};
  await deps.ops.patch(opId, { status: 'failed', finishedAt: deps.rt.clock.now(), summary: `stopped: ${why}`, ...stage });
  const hook = deps.wiring.giveUp.get(op.kind);
  if (hook) {
    try {
      notes.push(...((await hook(deps, fresh, why)) ?? []));
    } catch (e) {
      deps.rt.log.error({ opId, err: e }, 'give-up hook failed');
      notes.push(`Ferry could not settle its own state (${errorText(e)}); look at its hosts before anything else`);
    }
  }
  await deps.outbox.post(
    op.conv,
    message(`job ${opId} stopped after ${job.attemptsMade + 1} attempts at "${job.name}": ${why}. Nothing more will run for it; what had already happened stays as the card shows${notes.length ? `, and ${notes.join('; ')}` : ''}.`),
  );
  await audit(deps.rt, { actor: 'ferry', kind: 'workflow', action: `${op.title} stopped`, targets: op.hosts, opId, outcome: 'failed', detail: why }).catch(() => undefined);
  await refreshCard(deps, opId, { force: true });
}
