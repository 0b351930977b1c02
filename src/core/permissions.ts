/**
 * Who may run which command, and where (pure). Principals, as written in ferry.yml:
 *   "*"               everyone
 *   "group:operators" a Ferry group from `groups` (its entries are any of the forms below)
 *   "U0123ABCD"       a Slack user ID (also W… for Enterprise Grid)
 *   "S0123ABCD"       a Slack user group; its members are resolved elsewhere (Web API,
 *                     cached) and passed in as groupMembers; unresolved means no members
 *   "alice", "@alice" a console identity (case-insensitive)
 * The same resolver serves approvals (src/approvals/policy.ts): one notion of membership.
 *
 * Defaults: read-only commands are open; mutating ones need group:operators; pause all /
 * resume all need whoever may approve a pause (group:approvers unless approvals.pause says
 * otherwise). `permissions.<command>` in ferry.yml replaces the default for that command.
 * Unknown command names fail closed (operators), so a new command is never open by accident.
 *
 * Channels: with `channels.allowed` empty, commands work anywhere the app is. Otherwise
 * commands run only in those channels; direct messages (and group DMs) still answer read-only
 * commands, because a DM is private and nothing done there changes a host, but mutating
 * commands must be run where the team sees them and their threads. The console is a local
 * terminal with no channel and is never channel-restricted.
 */
import type { FerryConfig } from '../config/schema.js';
import { refusal, type Refusal } from './refusal.js';

export const READ_ONLY_COMMANDS = [
  'help',
  'hosts',
  'status',
  'find-stale-ports',
  'jobs',
  'job',
  'audit',
  'precheck',
  'patch-windows',
  // Dry runs stop at the plan card: nothing moves. Checked as separate names so they can be
  // opened or closed on their own (checkPermission maps drain + dryRun to drain-dry-run).
  'drain-dry-run',
  'migrate-dry-run',
] as const;

export const MUTATING_COMMANDS = [
  'remove-stale-ports',
  'drain',
  'restore',
  'migrate',
  'cancel',
  'start',
  'retry',
  'skip',
  'rollback',
  'patch-window',
  'cancel-patch-window',
  'approve',
  'reject',
  'pause-all',
  'resume-all',
  'approve-run',
  'pause-run',
  'resume-run',
  'abort-run',
  'patch-done',
] as const;

export type CommandName = (typeof READ_ONLY_COMMANDS)[number] | (typeof MUTATING_COMMANDS)[number];
export const ALL_COMMANDS: readonly CommandName[] = [...READ_ONLY_COMMANDS, ...MUTATING_COMMANDS];

/** Everything that changes a host, a job or Ferry's state: refused while paused, audited. */
export function isMutating(command: string): boolean {
  const name = normalizeCommand(command);
  return !(READ_ONLY_COMMANDS as readonly string[]).includes(name);
}

/** "remove stale ports", "Remove-Stale-Ports" -> "remove-stale-ports" (config keys too). */
export function normalizeCommand(command: string): string {
  return command.trim().toLowerCase().replace(/[\s_]+/g, '-');
}

// ---------------------------------------------------------------------------------------
// Membership

export type GroupMembers = Readonly<Record<string, readonly string[]>>;

export interface Membership {
  isMember(user: string, principal: string): boolean;
}

const USER_ID = /^[UW][A-Z0-9]{2,}$/;
const USER_GROUP_ID = /^S[A-Z0-9]{2,}$/;

function consoleName(s: string): string {
  return s.trim().replace(/^@/, '').toLowerCase();
}

/** Membership over the configured Ferry groups and pre-resolved Slack user groups. */
export function membership(config: Pick<FerryConfig, 'groups'>, groupMembers: GroupMembers = {}): Membership {
  const check = (user: string, principal: string, visiting: Set<string>): boolean => {
    const p = principal.trim();
    if (p === '*') return true;
    if (p.startsWith('group:')) {
      const name = p.slice('group:'.length);
      // The schema keeps ":" out of group entries, but permissions may name groups freely;
      // the guard makes a (mis)configured cycle a non-member rather than a stack overflow.
      if (visiting.has(name)) return false;
      const entries = config.groups[name] ?? [];
      visiting.add(name);
      try {
        return entries.some((e) => check(user, e, visiting));
      } finally {
        visiting.delete(name);
      }
    }
    if (USER_GROUP_ID.test(p)) return groupMembers[p]?.includes(user) ?? false;
    if (USER_ID.test(p)) return user === p;
    return consoleName(user) === consoleName(p) && consoleName(p) !== '';
  };
  return { isMember: (user, principal) => check(user, principal, new Set()) };
}

export function isMemberOfAny(m: Membership, user: string, principals: readonly string[]): boolean {
  return principals.some((p) => m.isMember(user, p));
}

/**
 * Every Slack user group (S…) the configuration refers to, directly or through a Ferry group:
 * the caller resolves exactly these (usergroups.users.list) and passes them as groupMembers.
 */
export function referencedUserGroups(config: Pick<FerryConfig, 'groups' | 'permissions' | 'approvals'>): string[] {
  const all = [
    ...Object.values(config.groups).flat(),
    ...Object.values(config.permissions).flat(),
    ...Object.values(config.approvals).flatMap((a) => a.approvers),
  ];
  return [...new Set(all.map((p) => p.trim()).filter((p) => USER_GROUP_ID.test(p)))].sort();
}

// ---------------------------------------------------------------------------------------
// Wording. Sentences use Slack mrkdwn mentions (<@U…>, <!subteam^S…>, <#C…>); the console
// renderer turns those into text like the rest of Slack formatting.

/** A user for a sentence: <@U…> for Slack IDs, @name for console identities. */
export function mention(user: string): string {
  if (USER_ID.test(user)) return `<@${user}>`;
  return `@${user.replace(/^@/, '')}`;
}

export function describePrincipal(principal: string): string {
  const p = principal.trim();
  if (p === '*') return 'anyone';
  if (p.startsWith('group:')) return `the ${p.slice('group:'.length)} group`;
  if (USER_GROUP_ID.test(p)) return `<!subteam^${p}>`;
  return mention(p);
}

/** ["group:approvers", "U1"] -> "the approvers group or <@U1>"; [] -> "nobody". */
export function describePrincipals(principals: readonly string[], joiner = 'or'): string {
  const parts = [...new Set(principals.map(describePrincipal))];
  if (parts.length === 0) return 'nobody';
  if (parts.length === 1) return parts[0]!;
  return `${parts.slice(0, -1).join(', ')} ${joiner} ${parts[parts.length - 1]}`;
}

export function describeChannel(channel: string): string {
  const c = channel.trim();
  if (/^[CG][A-Z0-9]{2,}$/.test(c)) return `<#${c}>`;
  return `#${c.replace(/^#/, '')}`;
}

/** "remove-stale-ports" -> "remove stale ports"; "drain-dry-run" -> "drain dry-run". */
export function displayCommand(command: string): string {
  const name = normalizeCommand(command);
  const dry = name.endsWith('-dry-run');
  const base = (dry ? name.slice(0, -'-dry-run'.length) : name).replace(/-/g, ' ');
  return dry ? `${base} dry-run` : base;
}

// ---------------------------------------------------------------------------------------
// Command permissions

/** Who may run a command when ferry.yml does not say. */
export function defaultPrincipals(command: string, config: Pick<FerryConfig, 'approvals'>): string[] {
  const name = normalizeCommand(command);
  if ((READ_ONLY_COMMANDS as readonly string[]).includes(name)) return ['*'];
  // approve/reject as typed commands (console, "approve 12"): open here because the approval
  // policy decides who may approve which request (decide() in src/approvals/policy.ts) and
  // names them in its refusal; gating them on operators too would let a configured approver
  // approve by button in Slack yet be refused at the console: two policies for one act.
  if (name === 'approve' || name === 'reject') return ['*'];
  if (name === 'pause-all' || name === 'resume-all') {
    // One source of truth for who may pull the kill switch: the pause approval policy.
    const pause = config.approvals['pause'] ?? config.approvals['pause-all'];
    return pause ? [...pause.approvers] : ['group:approvers'];
  }
  return ['group:operators'];
}

/** The effective principals: `permissions.<command>` when configured, else the default. */
export function principalsFor(command: string, config: Pick<FerryConfig, 'permissions' | 'approvals'>): string[] {
  const name = normalizeCommand(command);
  for (const [key, principals] of Object.entries(config.permissions)) {
    if (normalizeCommand(key) === name) return [...principals];
  }
  return defaultPrincipals(name, config);
}

/**
 * Where a command arrived from. A bare string is a channel ID (C…, G…, D… for DMs) or
 * "console". `type` is Slack's channel_type when known ("im"/"mpim" are direct messages).
 */
export type ChannelRef = string | { id: string; name?: string; type?: 'channel' | 'group' | 'im' | 'mpim' | 'console' };

interface ChannelInfo {
  id: string;
  name?: string;
  kind: 'console' | 'dm' | 'channel';
}

function channelInfo(channel: ChannelRef): ChannelInfo {
  const c = typeof channel === 'string' ? { id: channel } : channel;
  const type = 'type' in c ? c.type : undefined;
  const name = 'name' in c ? c.name : undefined;
  let kind: ChannelInfo['kind'] = 'channel';
  if (type === 'console' || c.id === 'console') kind = 'console';
  // Slack DM IDs start with D; slash commands report channel_name "directmessage"/"mpdm-…".
  else if (type === 'im' || type === 'mpim' || /^D[A-Z0-9]{2,}$/.test(c.id) || name === 'directmessage' || name?.startsWith('mpdm-')) {
    kind = 'dm';
  }
  return { id: c.id, name, kind };
}

function channelAllowed(info: ChannelInfo, allowed: readonly string[]): boolean {
  return allowed.some((a) => {
    const entry = a.trim();
    if (entry === info.id) return true;
    const bare = entry.replace(/^#/, '').toLowerCase();
    return info.name !== undefined && info.name.replace(/^#/, '').toLowerCase() === bare;
  });
}

export interface PermissionInput {
  /** Command name as the grammar knows it ("drain", "find-stale-ports", "pause all"). */
  command: string;
  /** Drain/migrate with dry-run: checked as "drain-dry-run" / "migrate-dry-run". */
  dryRun?: boolean;
  /** Slack user ID, or the console identity. */
  user: string;
  channel: ChannelRef;
  config: Pick<FerryConfig, 'groups' | 'permissions' | 'approvals' | 'channels'>;
  groupMembers?: GroupMembers;
}

/** Why a command may not run here (core/refusal.ts); null from checkPermission when it may. */
export interface PermissionRefusal extends Refusal {
  readonly code: 'not-permitted' | 'channel' | 'disabled';
}

function refused(code: PermissionRefusal['code'], sentence: string): PermissionRefusal {
  return { ...refusal(sentence), code };
}

/** The name a command is checked under: drain + dryRun -> drain-dry-run. */
export function permissionName(command: string, dryRun = false): string {
  const name = normalizeCommand(command);
  return dryRun && (name === 'drain' || name === 'migrate') ? `${name}-dry-run` : name;
}

export function checkPermission(input: PermissionInput): PermissionRefusal | null {
  const { config, user } = input;
  const name = permissionName(input.command, input.dryRun);
  const shown = displayCommand(name);
  const info = channelInfo(input.channel);
  const allowed = config.channels.allowed;

  if (info.kind !== 'console' && allowed.length > 0) {
    const where = allowed.map(describeChannel).join(allowed.length === 2 ? ' and ' : ', ');
    if (info.kind === 'dm') {
      if (isMutating(name)) {
        return refused('channel', `In a direct message Ferry only answers read-only commands; run ${shown} in ${where}.`);
      }
    } else if (!channelAllowed(info, allowed)) {
      return refused('channel', `Ferry takes commands in ${where} only; run ${shown} there.`);
    }
  }

  const principals = principalsFor(name, config);
  if (principals.length === 0) {
    return refused('disabled', `${shown} is switched off in this Ferry's configuration.`);
  }
  if (isMemberOfAny(membership(config, input.groupMembers), user, principals)) return null;
  const askIn = config.channels.announcements ?? allowed[0];
  const ask = askIn ? `ask in ${describeChannel(askIn)} or an admin to add you` : 'ask an admin to add you';
  return refused('not-permitted', `${shown} needs ${describePrincipals(principals)}; ${ask}.`);
}

/** The commands `help` should list for this caller (and channel, when given), in help order. */
export function visibleCommands(input: Omit<PermissionInput, 'command' | 'dryRun' | 'channel'> & { channel?: ChannelRef }): CommandName[] {
  const channel = input.channel ?? 'console';
  return ALL_COMMANDS.filter((command) => checkPermission({ ...input, channel, command }) === null);
}
