/**
 * drain, restore (undrain), migrate, precheck, and the decisions around them: start, rollback,
 * retry, skip (typed, and as buttons on the cards). Handlers answer fast: bad input that the
 * inventory or Redis can judge is refused here in one sentence; everything that needs a
 * hypervisor is a job.
 */
import type { CommandContext, HandlerOf } from '../commands.js';
import { clickAction, jobIdOf, type ActionContext, type ActionSpec } from '../actions.js';
import type { ChatWorkflow } from '../router.js';
import { message } from '../../chat/messages.js';
import { mention } from '../../core/permissions.js';
import { unknownHostsSentence } from '../../core/selectors.js';
import { startDrain, validateSkip } from '../../jobs/workflows/drain.js';
import { startRestore } from '../../jobs/workflows/restore.js';
import { startMigrate } from '../../jobs/workflows/migrate.js';
import { acquireLock, lockedSentence, readLock } from '../../jobs/drain/locks.js';
import { isOpen, readLedger } from '../../jobs/drain/ledger.js';
import { dataLossNote } from '../../jobs/epoch.js';
import { DRAIN_ACTIONS, decide, startNeeds, type Decision } from '../../jobs/drain/control.js';
import type { Deps } from '../../jobs/context.js';
import { cancelAskedSentence } from '../../jobs/operations.js';
import { refusal, type Refusal } from '../../core/refusal.js';

function knownHost(ctx: CommandContext, host: string): string | null {
  const lower = host.toLowerCase();
  return ctx.deps.rt.inventory.hosts.find((h) => h.toLowerCase() === lower) ?? null;
}

/** Take the host for a new operation, or refuse naming who has it. The op is created first so the lock can name it. */
async function lockFor(ctx: CommandContext, host: string, opId: number, what: string, ttlMs: number): Promise<boolean> {
  const held = await acquireLock(ctx.deps.rt, { host, opId, owner: ctx.user, op: what }, ttlMs);
  if (!held) return true;
  await ctx.deps.ops.patch(opId, { status: 'cancelled', finishedAt: Date.now(), summary: lockedSentence(held) });
  await ctx.refuse(refusal(`${lockedSentence(held)} Nothing was started.`));
  return false;
}

/** The lock, then the ack: a host another operation holds is refused in the ack itself. */
async function lockThenAccept(ctx: CommandContext, host: string, opId: number, what: string, ttlMs: number): Promise<boolean> {
  if (!(await lockFor(ctx, host, opId, what, ttlMs))) return false;
  await ctx.accepted();
  return true;
}

const drainCommand: HandlerOf<'drain'> = async (ctx, cmd) => {
  const host = knownHost(ctx, cmd.host);
  if (!host) {
    await ctx.refuse(refusal(`${unknownHostsSentence([cmd.host], ctx.deps.rt.inventory)} Nothing was started.`));
    return;
  }
  if (!cmd.dryRun) {
    const held = await readLock(ctx.deps.rt, host);
    if (held) {
      await ctx.refuse(refusal(`${lockedSentence(held)} Nothing was started.`));
      return;
    }
  }
  const title = `drain ${host}${cmd.dryRun ? ' dry-run' : ''}${cmd.rollback === 'hold' ? ' rollback hold' : ''}${cmd.parallel ? ` parallel ${cmd.parallel}` : ''}${cmd.saveNonHa ? ' save-non-ha' : ''}${cmd.coldMigrate ? ' cold-migrate' : ''}`;
  // No echo: the card is the command's one answer, posted beside the plan job. The lock is taken
  // before the plan job runs, so a second drain is refused at once (in the ack).
  if (cmd.dryRun) await ctx.accepted();
  await startDrain(ctx.deps, {
    conv: ctx.conv,
    requester: ctx.user,
    title,
    drain: { host, dryRun: cmd.dryRun, rollback: cmd.rollback, ...(cmd.parallel ? { parallel: cmd.parallel } : {}), saveNonHa: cmd.saveNonHa, coldMigrate: cmd.coldMigrate },
    lock: cmd.dryRun ? undefined : (opId) => lockThenAccept(ctx, host, opId, 'drain', 35 * 60_000),
  });
};

const restoreCommand: HandlerOf<'restore'> = async (ctx, cmd) => {
  const host = knownHost(ctx, cmd.host);
  if (!host) {
    await ctx.refuse(refusal(`${unknownHostsSentence([cmd.host], ctx.deps.rt.inventory)} Nothing was started.`));
    return;
  }
  const ledger = await readLedger(ctx.deps.rt, host);
  if (!ledger || !isOpen(ledger)) {
    await ctx.refuse(
      refusal(
        ledger?.status === 'restored' || ledger?.status === 'rolled-back'
          ? `${host}'s last drain (job ${ledger!.opId}) was already ${ledger!.status === 'restored' ? 'restored' : 'rolled back'}; there is nothing to restore.`
          : `${host} has no drain ledger to restore; only a host drained by Ferry can be restored.${await dataLossNote(ctx.deps.rt, host)}`,
      ),
    );
    return;
  }
  const held = await readLock(ctx.deps.rt, host);
  if (held) {
    await ctx.refuse(refusal(`${lockedSentence(held)} Nothing was started.`));
    return;
  }
  await startRestore(ctx.deps, { conv: ctx.conv, requester: ctx.user, title: `restore ${host}`, host, lock: (opId) => lockThenAccept(ctx, host, opId, 'restore', 60_000) });
};

async function migrateLike(ctx: CommandContext, vm: string, target: string, opts: { datastore?: string; dryRun: boolean; precheckOnly: boolean }): Promise<void> {
  const host = knownHost(ctx, target);
  if (!host) {
    await ctx.refuse(refusal(`${unknownHostsSentence([target], ctx.deps.rt.inventory)} Nothing was started.`));
    return;
  }
  const verb = opts.precheckOnly ? 'precheck' : 'migrate';
  const title = `${verb} ${vm} to ${host}${opts.datastore ? ` datastore ${opts.datastore}` : ''}${opts.dryRun ? ' dry-run' : ''}`;
  await ctx.accepted();
  await startMigrate(ctx.deps, { conv: ctx.conv, requester: ctx.user, title, ask: { vm, target: host, ...(opts.datastore ? { datastore: opts.datastore } : {}), dryRun: opts.dryRun, precheckOnly: opts.precheckOnly } });
}

const migrateCommand: HandlerOf<'migrate'> = (ctx, cmd) => migrateLike(ctx, cmd.vm, cmd.target, { datastore: cmd.datastore, dryRun: cmd.dryRun, precheckOnly: false });
const precheckCommand: HandlerOf<'precheck'> = (ctx, cmd) => migrateLike(ctx, cmd.vm, cmd.target, { dryRun: true, precheckOnly: true });

// ---------------------------------------------------------------------------------------
// Decisions: typed and clicked reach decide()

async function typed(ctx: CommandContext, id: string, decision: Decision, arg?: string): Promise<void> {
  if (decision === 'skip' && arg) {
    const bad = await validateSkip(ctx.deps, id, arg);
    if (bad) {
      await ctx.refuse(bad);
      return;
    }
  }
  const refused = await decide(ctx.deps, id, ctx.user, decision, arg, ctx.groupMembers);
  if (refused) await ctx.refuse(refused);
}

const startCommand: HandlerOf<'start'> = (ctx, cmd) => typed(ctx, cmd.id, 'start');
const rollbackCommand: HandlerOf<'rollback'> = (ctx, cmd) => typed(ctx, cmd.id, 'rollback');
const retryCommand: HandlerOf<'retry'> = (ctx, cmd) => typed(ctx, cmd.id, 'retry');
const skipCommand: HandlerOf<'skip'> = (ctx, cmd) => typed(ctx, cmd.id, 'skip', cmd.vm);

/** A click stands for the typed decision: same permission, same kill switch (src/bot/actions.ts), same decide(). */
async function clicked(ctx: ActionContext, decision: Decision | 'cancel'): Promise<void> {
  const [id, arg] = ctx.value.split(' ');
  if (decision === 'skip' && arg) {
    const bad = await validateSkip(ctx.deps, id!, arg);
    if (bad) {
      await ctx.refuse(bad);
      return;
    }
  }
  if (decision === 'cancel') {
    const refused = await cancelClick(ctx.deps, id!, ctx.user);
    if (refused) await ctx.refuse(refused);
    return;
  }
  const refused = await decide(ctx.deps, id!, ctx.user, decision, arg, ctx.groupMembers);
  if (refused) await ctx.refuse(refused);
}

const NOT_A_JOB = refusal('That button does not name a job; nothing was done.', 'bad-button');

function decisionClick(name: 'start' | 'cancel' | 'rollback' | 'retry'): ActionSpec {
  return clickAction(name, (value) => {
    const id = jobIdOf(value);
    return id ? { name, id } : NOT_A_JOB;
  }, (ctx) => clicked(ctx, name));
}

/** Cancel from the card: a waiting plan ends at once; a running migration is aborted, other steps finish first. */
async function cancelClick(deps: Deps, id: string, user: string): Promise<Refusal | null> {
  const op = await deps.ops.get(id);
  if (!op) return refusal(`There is no job ${id}.`, 'not-found');
  if (op.status !== 'waiting' && op.status !== 'running') return refusal(`job ${op.id} already ended (${op.status}).`, 'finished');
  if (op.status === 'running') {
    await deps.ops.requestCancel(op.id, user);
    await deps.outbox.post(op.conv, message(cancelAskedSentence(op, mention(user))));
    return null;
  }
  return decide(deps, id, user, 'cancel', undefined);
}

export const drainChat: ChatWorkflow = {
  name: 'drain',
  commands: {
    drain: drainCommand,
    restore: restoreCommand,
    migrate: migrateCommand,
    precheck: precheckCommand,
    start: startCommand,
    rollback: rollbackCommand,
    retry: retryCommand,
    skip: skipCommand,
  },
  actions: {
    [DRAIN_ACTIONS.start]: decisionClick('start'),
    [DRAIN_ACTIONS.cancel]: decisionClick('cancel'),
    [DRAIN_ACTIONS.rollback]: decisionClick('rollback'),
    [DRAIN_ACTIONS.retry]: decisionClick('retry'),
    [DRAIN_ACTIONS.skip]: clickAction('skip', (value) => {
      const [id, vm] = value.split(' ');
      return id && jobIdOf(id) && vm ? { name: 'skip', id, vm } : NOT_A_JOB;
    }, (ctx) => clicked(ctx, 'skip')),
  },
};

export { startNeeds };
