/**
 * The kill switch. `pause all` holds the ops and hosts queues (BullMQ Queue.pause(): jobs
 * already running finish their current step; the removal job stops between ports) and a gate
 * refuses every new mutating command with who paused and when. `resume all` lifts both.
 * Who may pull it is the pause approval policy (permissions.ts); both are announced in the
 * announcements channel when configured and reachable, else in the conversation.
 */
import type { CommandContext, Gate, HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { message, section } from '../../chat/messages.js';
import { isMutating, permissionName } from '../../core/permissions.js';
import { clearPause, pauseState, pausedBy, pausedRefusal, setPause } from '../../approvals/kill-switch.js';
import { formatUtcTime } from '../../approvals/policy.js';
import { audit } from '../../audit/audit.js';
import type { Conversation } from '../../chat/conversation.js';
import type { Command } from '../grammar.js';
import { who } from '../../chat/messages.js';
import { refusal } from '../../core/refusal.js';

/** Still allowed while paused: they lift the pause or only stop things. */
const EXEMPT = new Set<string>(['pause-all', 'resume-all', 'cancel', 'reject', 'cancel-patch-window', 'pause-run', 'abort-run']);

/** Every command, typed or clicked, passes this after its permission check. */
const killSwitch: Gate = async (deps, cmd: Command) => {
  const dry = (cmd.name === 'drain' || cmd.name === 'migrate') && cmd.dryRun;
  const name = permissionName(cmd.name, dry);
  if (!isMutating(name) || EXEMPT.has(name)) return null;
  const state = await pauseState(deps.rt);
  return state ? pausedRefusal(state) : null;
};

async function announce(ctx: CommandContext, text: string): Promise<void> {
  const channel = ctx.deps.rt.config.channels.announcements;
  const hasSlack = 'slack' in ctx.deps && Boolean((ctx.deps as { slack?: unknown }).slack);
  const here = ctx.conv.surface === 'slack' && ctx.conv.channel === channel;
  if (channel && hasSlack && !here) {
    const conv: Conversation = { surface: 'slack', channel, user: ctx.user };
    await ctx.deps.outbox.post(conv, message(text, section(text)));
  }
  await ctx.answer(message(text, section(text)));
}

const pauseAllCommand: HandlerOf<'pause-all'> = async (ctx) => {
  const { rt, queues } = ctx.deps;
  const { state, fresh } = await setPause(rt, ctx.user);
  // Pause the queues even when the flag was already set: a crash between the two must not leave them running.
  await Promise.all([queues.ops.pause(), queues.hosts.pause()]);
  if (!fresh) {
    await ctx.refuse(refusal(`Already paused: ${pausedBy(state)}.`));
    return;
  }
  await audit(rt, { actor: ctx.user, kind: 'workflow', action: 'pause all', targets: [], outcome: 'ok', detail: 'ops and hosts queues paused' });
  await announce(ctx, `:octagonal_sign: *Ferry is paused* by ${who(ctx.user)} at ${formatUtcTime(state.at)}. Running steps finish; nothing new that changes a host starts until resume all.`);
};

const resumeAllCommand: HandlerOf<'resume-all'> = async (ctx) => {
  const { rt, queues } = ctx.deps;
  const prev = await clearPause(rt);
  await Promise.all([queues.ops.resume(), queues.hosts.resume()]);
  if (!prev) {
    await ctx.refuse(refusal('Ferry is not paused; nothing to resume.'));
    return;
  }
  await audit(rt, { actor: ctx.user, kind: 'workflow', action: 'resume all', targets: [], outcome: 'ok', detail: `paused since ${formatUtcTime(prev.at)} by ${prev.by}` });
  await announce(ctx, `:arrow_forward: *Ferry is running again*: ${who(ctx.user)} resumed at ${formatUtcTime(rt.clock.now())} (${pausedBy(prev)}).`);
};

export const pauseChat: ChatWorkflow = { name: 'pause', commands: { 'pause-all': pauseAllCommand, 'resume-all': resumeAllCommand }, gates: [killSwitch] };
