/**
 * From a line of text to work: parse (grammar), check permission and the kill switch, then the
 * command's handler. Shared by Slack (slash command, mention, DM) and the console, so both
 * behave the same; a button or form (src/bot/actions.ts) stands for a command and goes through
 * the same authorize(). Handlers answer fast: anything that touches a hypervisor becomes a job.
 */
import { userRate, USER_COMMANDS_MAX, USER_COMMANDS_WINDOW_MS, type RateRefusal } from './rate-limit.js';
import { selectHosts, type Selection } from './handlers/selection.js';
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
  /** The command's selector, already resolved to inventory hosts when the line was checked. */
  selection?: Selection;
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

/** Permission (user, group, channel incl. channels.allowed): decided from the config alone, no Redis. */
function permissionRefusal(deps: ChatDeps, caller: Caller, cmd: Command): Refusal | null {
  return checkPermission({ command: cmd.name, dryRun: dryRunOf(cmd), user: caller.user, channel: caller.channel, config: deps.rt.config, groupMembers: caller.groupMembers });
}

/** Every gate (the kill switch), asked at once. */
async function gateRefusal(deps: ChatDeps, cmd: Command): Promise<Refusal | null> {
  const verdicts = await Promise.all(deps.router.gates.map((gate) => gate(deps, cmd)));
  return verdicts.find((v) => v !== null) ?? null;
}

/**
 * The one authorization path: permission (user, group, channel incl. channels.allowed), then
 * every gate (the kill switch). Returns the sentence for the caller when refused, and logs and
 * audits the refusal; null when the command may run. (A typed line takes the same two steps in
 * handleLine, split around its answer.)
 */
export async function authorize(deps: ChatDeps, caller: Caller, cmd: Command, text: string): Promise<Refusal | null> {
  const log = deps.rt.log.child({ user: caller.user, surface: caller.surface });
  const refused = permissionRefusal(deps, caller, cmd) ?? (await gateRefusal(deps, cmd));
  if (refused) {
    log.info({ command: cmd.name, refused: refused.sentence }, 'command refused');
    await auditCommand(deps, caller.user, text, cmd, 'refused', refused.sentence);
  }
  return refused;
}

/** Redis did not answer the checks a command must pass before it runs (duplicate, rate, gates): nothing ran. */
export class AdmissionUnavailable extends Error {
  constructor(cause: unknown) {
    super(`the checks before a command runs could not reach Redis (${cause instanceof Error ? cause.message : String(cause)})`);
    this.name = 'AdmissionUnavailable';
  }
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
  /** False when this delivery was seen before (a retried one): it is dropped. Asked with the rate and the gates, in one round trip. */
  fresh?(): Promise<boolean>;
}

function dryRunOf(cmd: Command): boolean {
  return (cmd.name === 'drain' || cmd.name === 'migrate') && cmd.dryRun;
}

/**
 * Handle one line. Returns the parsed command (or null for bad input) for logging and tests.
 *
 * Refusals that the line and the config decide (grammar, selector, permission) are answered
 * first, with no Redis round trip (for a slash command that answer is the ack); the bookkeeping
 * (the per-user count, the audit entry) follows the answer. A line that passes them makes one
 * round trip for everything else that decides the answer: the duplicate check, the per-user
 * rate and the gates (the kill switch), asked at once. The command's audit entry is appended
 * beside the handler, not in front of it: appends from one process keep their order
 * (audit/audit.ts), so it still precedes anything the handler audits.
 */
export async function handleLine(deps: ChatDeps, input: Incoming): Promise<Command | null> {
  const log = deps.rt.log.child({ user: input.user, surface: input.conv.surface });
  const groupMembers = input.groupMembers ?? {};
  const caller: Caller = { user: input.user, channel: input.channel, groupMembers, surface: input.conv.surface };
  const text = input.text.trim();
  const parsed = parseCommand(input.text);
  const cmd = parsed.ok ? parsed.command : null;
  let early: Refusal | null = null;
  let audited = false;
  let selection: Selection | undefined;
  if (!parsed.ok) {
    log.info({ text: input.text.slice(0, 200), refused: parsed.error }, 'command refused: bad input');
    early = refusal(parsed.error);
  } else if ((early = permissionRefusal(deps, caller, parsed.command))) {
    log.info({ command: parsed.command.name, refused: early.sentence }, 'command refused: permission');
    audited = true;
  } else if ('selector' in parsed.command) {
    const sel = selectHosts(deps.rt, parsed.command.selector);
    if (!sel.refused) selection = { selector: parsed.command.selector, hosts: sel.hosts };
    else {
      log.info({ command: parsed.command.name, refused: sel.sentence }, 'command refused: selector');
      early = sel;
    }
  }
  if (early) {
    await input.refuse(early);
    // Counted like any command (a flood of them is not audited); a retried delivery is not audited twice.
    if (audited && cmd) {
      const [fresh, rate] = await Promise.all([input.fresh?.() ?? true, userRate(deps.rt.redis, deps.rt.prefix, input.user)]).catch(() => [false, null] as const);
      if (fresh && !rate) await auditCommand(deps, input.user, text, cmd, 'refused', early.sentence);
    }
    return cmd;
  }
  const command = cmd!;
  let checks: [boolean, RateRefusal | null, Refusal | null];
  try {
    checks = await Promise.all([input.fresh?.() ?? true, userRate(deps.rt.redis, deps.rt.prefix, input.user), gateRefusal(deps, command)]);
  } catch (e) {
    throw e instanceof AdmissionUnavailable ? e : new AdmissionUnavailable(e);
  }
  const [fresh, rate, gated] = checks;
  if (!fresh) {
    log.info({ command: command.name }, 'duplicate delivery of a command ignored');
    return null;
  }
  // One person's flood must not silence a channel: over the rate, one sentence, then nothing.
  if (rate) {
    if (!rate.quiet) {
      log.warn({ limit: USER_COMMANDS_MAX, windowMs: USER_COMMANDS_WINDOW_MS }, 'commands refused: over the per-user rate');
      await input.refuse(rate);
    }
    return null;
  }
  if (gated) {
    log.info({ command: command.name, refused: gated.sentence }, 'command refused');
    await input.refuse(gated);
    await auditCommand(deps, input.user, text, command, 'refused', gated.sentence);
    return command;
  }
  const ctx: CommandContext = {
    deps,
    user: input.user,
    conv: input.conv,
    channel: input.channel,
    text,
    groupMembers,
    selection,
    refuse: input.refuse,
    answer: input.answer,
    reply: input.reply ?? (async (msg) => void (await input.answer(msg))),
    accepted: input.accepted ?? (async () => undefined),
  };
  const handler = deps.router.commands.get(command.name);
  if (!handler) {
    await input.refuse(refusal(`${command.name} is not available in this Ferry build.`));
    return command;
  }
  log.info({ command: command.name, text: text.slice(0, 300) }, 'command');
  const started = auditCommand(deps, input.user, text, command, 'started');
  try {
    await handler(ctx, command);
  } catch (e) {
    log.error({ command: command.name, err: e instanceof Error ? e.stack : String(e) }, 'command handler failed');
    await input.refuse(refusal(`Ferry could not run that: ${e instanceof Error ? e.message : String(e)}. Nothing was started.`));
  } finally {
    await started;
  }
  return command;
}

/** Convenience for handlers: a one-line answer. */
export function line(text: string): Message {
  return message(text);
}
