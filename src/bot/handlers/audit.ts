/** audit <host|vm|job>: the most recent audit entries about it, newest first, as a table. */
import type { HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { context, message, plural, section } from '../../chat/messages.js';
import { queryAudit } from '../../audit/audit.js';
import { mention } from '../../core/permissions.js';

const LIMIT = 25;

function when(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

const auditCommand: HandlerOf<'audit'> = async (ctx, cmd) => {
  const entries = await queryAudit(ctx.deps.rt, cmd.target, { limit: LIMIT });
  const what = /^\d+$/.test(cmd.target) ? `job ${cmd.target}` : cmd.target;
  if (!entries.length) {
    await ctx.reply(message(`Nothing in the audit trail about ${what} (kept ${ctx.deps.rt.config.audit.retentionDays} days).`));
    return;
  }
  const headline = `Audit: ${what}, ${plural(entries.length, 'entry', 'entries')}, newest first`;
  await ctx.reply(
    message(
      headline,
      section(`*${headline}*`),
      {
        type: 'table',
        columns: ['When (UTC)', 'Who', 'Kind', 'What', 'Outcome', 'Job', 'Approved by', 'Detail'],
        rows: entries.map((e) => [
          when(e.at),
          mention(e.actor),
          e.kind,
          e.action.slice(0, 80),
          e.outcome,
          e.opId === undefined ? '' : String(e.opId),
          (e.approvedBy ?? []).map(mention).join(' '),
          (e.detail ?? '').slice(0, 120),
        ]),
      },
      context(`append-only trail in Redis · last ${LIMIT} shown · kept ${ctx.deps.rt.config.audit.retentionDays} days`),
    ),
  );
};

export const auditChat: ChatWorkflow = { name: 'audit', commands: { audit: auditCommand } };
