/**
 * From a line of text to work: parse (grammar), check permission and the kill switch, then the
 * command's handler. Shared by Slack (slash command, mention, DM) and the console, so both
 * behave the same; a button or form (src/bot/actions.ts) stands for a command and goes through
 * the same authorize(). Handlers answer fast: anything that touches a hypervisor becomes a job.
 */
import { userRate, USER_COMMANDS_MAX, USER_COMMANDS_WINDOW_MS } from './rate-limit.js';
import { parseCommand, type Command, type CommandName } from './grammar.js';
import { checkPermission, type ChannelRef, type GroupMembers } from '../core/permissions.js';
import type { Message } from '../chat/messages.js';
import { message } from '../chat/messages.js';
import type { Conversation } from '../chat/conversation.js';
import type { Deps } from '../jobs/context.js';
import { audit } from '../audit/audit.js';
import type { ChatDeps } from './router.js';
import { refusal, type Refusal } from '../core/refusal.js';

/** Hosts and VMs a command names, for the audit index (selectors are recorded as typed). */
function commandTargets(cmd: Command): string[] {
  const c = cmd as Record<string, unknown>;
  return ['host', 'vm', 'target', 'selector', 'id'].flatMap((k) => (typeof c[k] === 'string' ? String(c[k]).split(/[\s,]+/) : [])).filter(Boolean);
}

async function auditCommand(deps: Deps, user: string, text: string, cmd: Command, outcome: 'started' | 'refused', detail?: string): Promise<void> {
  await audit(deps.rt, { actor: user, kind: 'command', action: text.slice(0, 300), targets: commandTargets(cmd), outcome, detail }).catch(() => undefined);
}

export interface CommandContext {
  deps: Deps;
  user: string;
  /** Where the command was typed; threadTs set when typed inside a thread. */
  conv: Conversation;
  channel: ChannelRef;
  /** The command as typed, normalised. */
  text: string;
  groupMembers: GroupMembers;
  /** One sentence to the user only (ephemeral in Slack). Nothing else happens. */
  refuse(r: Refusal): Promise<void>;
  /** Answer in the conversation; returns the conversation threaded under the answer. */
  answer(msg: Message): Promise<Conversation>;
  /**
   * A complete answer with nothing to follow (help, listings): for a slash command it goes in
   * the ack body, only the user sees it, and no Web API call is made.
   */
  reply(msg: Message): Promise<void>;
  /** The command is valid and starts now; nothing more will be refused (a slash command is acked). */
  accepted(): Promise<void>;
}

export type CommandHandler<C extends Command = Command> = (ctx: CommandContext, cmd: C) => Promise<void>;

export type HandlerOf<N extends CommandName> = CommandHandler<Extract<Command, { name: N }>>;

/** Each command's handler, by name; a workflow lists the ones it owns. */
export type CommandTable = { [N in CommandName]?: CommandHandler<Extract<Command, { name: N }>> };

/** Checks run after permission for every command, typed or clicked (the kill switch is one). A string refuses. */
export type Gate = (deps: Deps, cmd: Command) => Promise<Refusal | null>;

/** Who asks, and where: the same for a typed line and a click. */
export interface Caller {
  user: string;
  channel: ChannelRef;
  groupMembers: GroupMembers;
  surface: Conversation['surface'];
}

/**
 * The one authorization path: permission (user, group, channel incl. channels.allowed), then
 * every gate (the kill switch). Returns the sentence for the caller when refused, and logs and
 * audits the refusal; null when the command may run.
 */
export async function authorize(deps: ChatDeps, caller: Caller, cmd: Command, text: string): Promise<Refusal | null> {
  const log = deps.rt.log.child({ user: caller.user, surface: caller.surface });
  const notPermitted = checkPermission({ command: cmd.name, dryRun: dryRunOf(cmd), user: caller.user, channel: caller.channel, config: deps.rt.config, groupMembers: caller.groupMembers });
  if (notPermitted) {
    log.info({ command: cmd.name, refused: notPermitted.sentence }, 'command refused: permission');
    await auditCommand(deps, caller.user, text, cmd, 'refused', notPermitted.sentence);
    return notPermitted;
  }
  for (const gate of deps.router.gates) {
    const refused = await gate(deps, cmd);
    if (refused) {
      log.info({ command: cmd.name, refused: refused.sentence }, 'command refused');
      await auditCommand(deps, caller.user, text, cmd, 'refused', refused.sentence);
      return refused;
    }
  }
  return null;
}

export interface Incoming {
  text: string;
  user: string;
  conv: Conversation;
  channel: ChannelRef;
  groupMembers?: GroupMembers;
  refuse(r: Refusal): Promise<void>;
  answer(msg: Message): Promise<Conversation>;
  /** Defaults to answer(). */
  reply?(msg: Message): Promise<void>;
  accepted?(): Promise<void>;
}

function dryRunOf(cmd: Command): boolean {
  return (cmd.name === 'drain' || cmd.name === 'migrate') && cmd.dryRun;
}

/** Handle one line. Returns the parsed command (or null for bad input) for logging and tests. */
export async function handleLine(deps: ChatDeps, input: Incoming): Promise<Command | null> {
  const log = deps.rt.log.child({ user: input.user, surface: input.conv.surface });
  // One person's flood must not silence a channel: over the rate, one sentence, then nothing.
  const rate = await userRate(deps.rt.redis, deps.rt.prefix, input.user);
  if (!rate.ok) {
    if (rate.say) {
      log.warn({ limit: USER_COMMANDS_MAX, windowMs: USER_COMMANDS_WINDOW_MS }, 'commands refused: over the per-user rate');
      await input.refuse(refusal(rate.say));
    }
    return null;
  }
  const parsed = parseCommand(input.text);
  if (!parsed.ok) {
    log.info({ text: input.text.slice(0, 200), refused: parsed.error }, 'command refused: bad input');
    await input.refuse(refusal(parsed.error));
    return null;
  }
  const cmd = parsed.command;
  const ctx: CommandContext = {
    deps,
    user: input.user,
    conv: input.conv,
    channel: input.channel,
    text: input.text.trim(),
    groupMembers: input.groupMembers ?? {},
    refuse: input.refuse,
    answer: input.answer,
    reply: input.reply ?? (async (msg) => void (await input.answer(msg))),
    accepted: input.accepted ?? (async () => undefined),
  };
  const refused = await authorize(deps, { user: input.user, channel: input.channel, groupMembers: ctx.groupMembers, surface: input.conv.surface }, cmd, ctx.text);
  if (refused) {
    await input.refuse(refused);
    return cmd;
  }
  const handler = deps.router.commands.get(cmd.name);
  if (!handler) {
    await input.refuse(refusal(`${cmd.name} is not available in this Ferry build.`));
    return cmd;
  }
  log.info({ command: cmd.name, text: ctx.text.slice(0, 300) }, 'command');
  await auditCommand(deps, input.user, ctx.text, cmd, 'started');
  try {
    await handler(ctx, cmd);
  } catch (e) {
    log.error({ command: cmd.name, err: e instanceof Error ? e.stack : String(e) }, 'command handler failed');
    await input.refuse(refusal(`Ferry could not run that: ${e instanceof Error ? e.message : String(e)}. Nothing was started.`));
  }
  return cmd;
}

/** Convenience for handlers: a one-line answer. */
export function line(text: string): Message {
  return message(text);
}
