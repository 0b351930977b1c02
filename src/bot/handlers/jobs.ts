/** jobs, job <id>, cancel <id>: operations as Ferry remembers them. */
import type { HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { context, message, section, who } from '../../chat/messages.js';
import { formatDuration } from '../../core/duration.js';
import { FINISHED, cancelAskedSentence, type Operation } from '../../jobs/operations.js';
import { compressNames } from '../../core/selectors.js';
import { decide } from '../../jobs/drain/control.js';
import { refusal } from '../../core/refusal.js';

function when(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

function row(op: Operation): string[] {
  const took = op.finishedAt ? formatDuration(op.finishedAt - (op.startedAt ?? op.createdAt)) : '';
  return [String(op.id), op.title.slice(0, 60), op.status, op.requester, when(op.createdAt), took];
}

const jobsCommand: HandlerOf<'jobs'> = async (ctx) => {
  const [active, recent] = await Promise.all([ctx.deps.ops.active(), ctx.deps.ops.recent(15)]);
  const finished = recent.filter((o) => FINISHED.includes(o.status));
  if (!active.length && !finished.length) {
    await ctx.reply(message('No operations yet. Try "find stale ports hyp01..hyp12".'));
    return;
  }
  const cols = ['Job', 'Command', 'Status', 'By', 'Started', 'Took'];
  await ctx.reply(
    message(
      `${active.length} running, ${finished.length} recent`,
      section(`*${active.length} running*`),
      ...(active.length ? [{ type: 'table' as const, columns: cols, rows: active.map(row) }] : []),
      section(`*Recent*`),
      { type: 'table', columns: cols, rows: finished.map(row) },
    ),
  );
};

const jobCommand: HandlerOf<'job'> = async (ctx, cmd) => {
  const op = await ctx.deps.ops.get(cmd.id);
  if (!op) {
    await ctx.refuse(refusal(`There is no job ${cmd.id}; "jobs" lists them.`));
    return;
  }
  await ctx.reply(
    message(
      `job ${op.id}: ${op.title} (${op.status})`,
      section(`*job ${op.id}* · ${op.title} · *${op.status}*`),
      {
        type: 'fields',
        fields: [
          `*Requested by*\n${who(op.requester)}`,
          `*Hosts*\n${compressNames(op.hosts) || '—'}`,
          `*Created*\n${when(op.createdAt)}`,
          `*Took*\n${op.finishedAt ? formatDuration(op.finishedAt - (op.startedAt ?? op.createdAt)) : 'still running'}`,
        ],
      },
      ...(op.summary ? [context(op.summary)] : []),
    ),
  );
};

const cancelCommand: HandlerOf<'cancel'> = async (ctx, cmd) => {
  const op = await ctx.deps.ops.get(cmd.id);
  if (!op) {
    await ctx.refuse(refusal(`There is no job ${cmd.id}; "jobs" lists them.`));
    return;
  }
  if (FINISHED.includes(op.status)) {
    await ctx.refuse(refusal(`job ${op.id} already ended (${op.status}); nothing to cancel.`));
    return;
  }
  // Workflows check this flag between steps; a running migration watches it and is aborted at once.
  await ctx.deps.ops.requestCancel(op.id, ctx.user);
  await ctx.deps.outbox.post(op.conv, message(cancelAskedSentence(op, who(ctx.user))));
  // A plan waiting for Start or a decision has no step to see the flag: it ends now (nothing polls it).
  if (op.status === 'waiting' && ctx.deps.wiring.controlled.has(op.kind)) await decide(ctx.deps, op.id, ctx.user, 'cancel', undefined);
  await ctx.answer(message(`Cancelling job ${op.id} (${op.title}); its thread will say when it has stopped.`));
};

export const jobsChat: ChatWorkflow = { name: 'jobs', commands: { jobs: jobsCommand, job: jobCommand, cancel: cancelCommand } };
