/**
 * Approve and Reject: the card's buttons (Approve behind a confirm dialog; Reject opens a
 * modal for an optional reason where Slack is available) and the typed commands `approve <id>`
 * and `reject <id> [reason]` all reach decideApproval, so the console and Slack follow one
 * policy and a refusal is the same sentence everywhere. Every action's request (stale-port
 * removal, drain, migrate, override, rolling run) is decided here.
 */
import type { CommandContext, HandlerOf } from '../commands.js';
import { clickAction, submitView, type ActionContext } from '../actions.js';
import type { ChatWorkflow } from '../router.js';
import { decideApproval, approvalStore, unknownRequestSentence, type DecisionRequest } from '../../approvals/service.js';
import { APPROVE_ACTION, REJECT_ACTION, REJECT_VIEW, parseButtonValue } from '../../approvals/cards.js';
import { decide } from '../../approvals/policy.js';
import { membership } from '../../core/permissions.js';
import { refusal } from '../../core/refusal.js';

/** Decide, and say a refusal to the one who asked (the request's thread hears everything else). */
async function decideAndSay(ctx: CommandContext | ActionContext, req: DecisionRequest): Promise<void> {
  const r = await decideApproval(ctx.deps, req);
  if (r.refused) await ctx.refuse(r);
}

const approveCommand: HandlerOf<'approve'> = async (ctx, cmd) => {
  await decideAndSay(ctx, { id: cmd.id, user: ctx.user, decision: 'approve', groupMembers: ctx.groupMembers, from: ctx.conv, via: 'command' });
};

const rejectCommand: HandlerOf<'reject'> = async (ctx, cmd) => {
  await decideAndSay(ctx, { id: cmd.id, user: ctx.user, decision: 'reject', reason: cmd.reason, groupMembers: ctx.groupMembers, from: ctx.conv, via: 'command' });
};

/** An approval card's button value names its request: "<id>:<planHash>". */
function requestOf(value: string): string {
  return parseButtonValue(value).id;
}

const approveClick = clickAction('approve', (value) => ({ name: 'approve', id: requestOf(value) }), async (ctx) => {
  const { id, planHash } = parseButtonValue(ctx.value);
  // A button without a hash cannot say which plan its clicker saw: treat it as a changed plan.
  await decideAndSay(ctx, { id, user: ctx.user, decision: 'approve', planHash: planHash ?? '', groupMembers: ctx.groupMembers, via: 'button' });
});


/** Would this click's reject be accepted? Someone who may not decide gets the sentence, not a modal. */
async function rejectWouldCount(ctx: ActionContext, id: string, planHash: string): Promise<boolean> {
  const rec = await approvalStore(ctx.deps).get(id);
  if (!rec) return false;
  const r = decide(rec.request, { user: ctx.user, decision: 'reject', planHash, now: ctx.deps.rt.clock.now() }, membership(ctx.deps.rt.config, ctx.groupMembers));
  return !r.refused;
}

const rejectClick = clickAction('reject', (value) => ({ name: 'reject', id: requestOf(value) }), async (ctx) => {
  const { id, planHash } = parseButtonValue(ctx.value);
  if (!ctx.openModal || ctx.conv.surface !== 'slack' || !(await rejectWouldCount(ctx, id, planHash ?? ''))) {
    await decideAndSay(ctx, { id, user: ctx.user, decision: 'reject', planHash: planHash ?? '', groupMembers: ctx.groupMembers, via: 'button' });
    return;
  }
  const rec = await approvalStore(ctx.deps).get(id);
  if (!rec) {
    await ctx.refuse(refusal(unknownRequestSentence(id)));
    return;
  }
  await ctx.openModal({
    type: 'modal',
    callback_id: REJECT_VIEW,
    title: { type: 'plain_text', text: `Reject request ${id}`.slice(0, 24) },
    submit: { type: 'plain_text', text: 'Reject' },
    close: { type: 'plain_text', text: 'Back' },
    private_metadata: JSON.stringify({ channel: ctx.conv.channel, threadTs: ctx.conv.threadTs, value: ctx.value }),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${rec.request.summary}*\n${rec.request.action === 'remove-ports' ? 'Nothing is removed' : 'Nothing happens'} if you reject; the requester can ask again.` } },
      {
        type: 'input',
        block_id: 'reason',
        optional: true,
        label: { type: 'plain_text', text: 'Reason (optional)' },
        element: { type: 'plain_text_input', action_id: 'reason', multiline: true, max_length: 500 },
      },
    ],
  });
});

const rejectForm = submitView('reject', (value) => ({ name: 'reject', id: requestOf(value) }), async (ctx, _cmd, values) => {
  const { id, planHash } = parseButtonValue(ctx.value);
  await decideAndSay(ctx, { id, user: ctx.user, decision: 'reject', reason: values.reason?.trim() || undefined, planHash: planHash ?? '', groupMembers: ctx.groupMembers, via: 'modal' });
});

export const approvalsChat: ChatWorkflow = {
  name: 'approvals',
  commands: { approve: approveCommand, reject: rejectCommand },
  actions: { [APPROVE_ACTION]: approveClick, [REJECT_ACTION]: rejectClick },
  views: { [REJECT_VIEW]: rejectForm },
};
