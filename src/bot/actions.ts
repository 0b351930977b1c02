/**
 * Button clicks and form (modal) submissions. Each one stands for a command: its spec turns
 * the button's value into that command (the parse), then the click goes through the same
 * authorize() as a typed line (permission by user, group and channel, then the kill switch)
 * before its handler runs. The console has no buttons: every button names the command that
 * does the same, and that command reaches the same code.
 */
import type { Deps } from '../jobs/context.js';
import type { ChannelRef, GroupMembers } from '../core/permissions.js';
import type { Command, CommandName } from './grammar.js';
import type { Conversation, MessageRef } from '../chat/conversation.js';
import { authorize } from './commands.js';
import type { ChatDeps } from './router.js';
import { isRefusal, refusal, type Refusal } from '../core/refusal.js';

export interface ActionContext {
  deps: Deps;
  user: string;
  /** The conversation of the clicked message (its thread). */
  conv: Conversation;
  /** The clicked message itself. */
  message?: MessageRef;
  value: string;
  groupMembers: GroupMembers;
  /** Only the clicking user sees this. */
  refuse(r: Refusal): Promise<void>;
  /** Slack modal for input (reject reason); absent on surfaces without modals. */
  openModal?(view: Record<string, unknown>): Promise<void>;
}

type CommandOf<N extends CommandName> = Extract<Command, { name: N }>;

/** A button: the command it stands for (or a refusal when its value is not one), and what the click does. */
export interface ActionSpec {
  command(value: string): Command | Refusal;
  run(ctx: ActionContext, cmd: Command): Promise<void>;
}

/** A modal submission: like a button, with the submitted fields. */
export interface ViewSpec {
  command(value: string, values: Record<string, string>): Command | Refusal;
  run(ctx: Omit<ActionContext, 'openModal'>, cmd: Command, values: Record<string, string>): Promise<void>;
}

/** Typed constructor: the handler sees the command the click stands for. */
export function clickAction<N extends CommandName>(
  _name: N,
  command: (value: string) => CommandOf<N> | Refusal,
  run: (ctx: ActionContext, cmd: CommandOf<N>) => Promise<void>,
): ActionSpec {
  return { command, run: (ctx, cmd) => run(ctx, cmd as CommandOf<N>) };
}

export function submitView<N extends CommandName>(
  _name: N,
  command: (value: string, values: Record<string, string>) => CommandOf<N> | Refusal,
  run: (ctx: Omit<ActionContext, 'openModal'>, cmd: CommandOf<N>, values: Record<string, string>) => Promise<void>,
): ViewSpec {
  return { command, run: (ctx, cmd, values) => run(ctx, cmd as CommandOf<N>, values) };
}

/** A button value that names a job: "<id>" or "<id><sep><rest>". */
export function jobIdOf(value: string, sep = ' '): string | null {
  const id = value.split(sep)[0] ?? '';
  return /^\d{1,12}$/.test(id) ? id : null;
}

export const UNKNOWN_BUTTON = 'That button belongs to something Ferry no longer knows; nothing was done.';

export interface ClickInput extends Omit<ActionContext, 'deps'> {
  channel: ChannelRef;
}

/** One click: parse its value to a command, authorize like a typed line, then run. */
export async function handleClick(deps: ChatDeps, actionId: string, input: ClickInput): Promise<void> {
  const spec = deps.router.actions.get(actionId);
  if (!spec) return input.refuse(refusal(UNKNOWN_BUTTON));
  const cmd = spec.command(input.value);
  if (isRefusal(cmd)) return input.refuse(cmd);
  const refused = await authorize(deps, { user: input.user, channel: input.channel, groupMembers: input.groupMembers, surface: input.conv.surface }, cmd, `button ${actionId} ${input.value}`.slice(0, 300));
  if (refused) return input.refuse(refused);
  await spec.run({ ...input, deps }, cmd);
}

/** One modal submission, the same way. */
export async function handleSubmit(deps: ChatDeps, callbackId: string, input: Omit<ClickInput, 'openModal'>, values: Record<string, string>): Promise<void> {
  const spec = deps.router.views.get(callbackId);
  if (!spec) return input.refuse(refusal(UNKNOWN_BUTTON));
  const cmd = spec.command(input.value, values);
  if (isRefusal(cmd)) return input.refuse(cmd);
  const refused = await authorize(deps, { user: input.user, channel: input.channel, groupMembers: input.groupMembers, surface: input.conv.surface }, cmd, `form ${callbackId} ${input.value}`.slice(0, 300));
  if (refused) return input.refuse(refused);
  await spec.run({ ...input, deps }, cmd, values);
}
