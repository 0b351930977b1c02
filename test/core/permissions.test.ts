import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { isRefusal } from '../../src/core/refusal.js';
import {
  ALL_COMMANDS,
  MUTATING_COMMANDS,
  READ_ONLY_COMMANDS,
  describePrincipals,
  displayCommand,
  isMutating,
  checkPermission,
  membership,
  principalsFor,
  referencedUserGroups,
  visibleCommands,
  type ChannelRef,
} from '../../src/core/permissions.js';

const groups = {
  operators: ['UOP1', 'SOPSTEAM', 'alice'],
  approvers: ['UAPP1', 'bob'],
};
const groupMembers = { SOPSTEAM: ['UOP2'] };
const open = configSchema.parse({ groups });
const restricted = configSchema.parse({ groups, channels: { allowed: ['C0OPS', '#ferry'], announcements: 'C0OPS' } });

describe('command lists', () => {
  it('are disjoint and cover the grammar', () => {
    const ro = new Set<string>(READ_ONLY_COMMANDS);
    expect(MUTATING_COMMANDS.filter((c) => ro.has(c))).toEqual([]);
    expect(new Set(ALL_COMMANDS).size).toBe(ALL_COMMANDS.length);
    for (const c of READ_ONLY_COMMANDS) expect(isMutating(c)).toBe(false);
    for (const c of MUTATING_COMMANDS) expect(isMutating(c)).toBe(true);
    expect(isMutating('frobnicate')).toBe(true);
  });
  it.each([
    ['remove-stale-ports', 'remove stale ports'],
    ['Pause All', 'pause all'],
    ['drain-dry-run', 'drain dry-run'],
  ])('%s is shown as "%s"', (name, shown) => expect(displayCommand(name)).toBe(shown));
});

describe('membership', () => {
  const m = membership({ groups: { ...groups, leads: ['group:approvers', 'UL1'], loop: ['group:loop'] } }, groupMembers);
  it.each([
    ['UOP1', 'group:operators', true],
    ['UOP2', 'group:operators', true], // through the Slack user group
    ['UOP3', 'group:operators', false],
    ['alice', 'group:operators', true], // console name
    ['@Alice', 'group:operators', true],
    ['alicia', 'group:operators', false],
    ['UOP1', 'group:nope', false], // unknown group: nobody
    ['UOP2', 'SOPSTEAM', true],
    ['UOP1', 'SOPSTEAM', false],
    ['UX', 'SUNRESOLVED', false], // not resolved by the caller: fail closed
    ['UAPP1', 'UAPP1', true],
    ['UAPP2', 'UAPP1', false],
    ['anyone', '*', true],
    ['bob', 'group:leads', true], // nested group reference (permissions may name groups freely)
    ['UL1', 'group:leads', true],
    ['UOP1', 'group:loop', false], // a cycle is nobody, not a stack overflow
  ])('%s in %s: %s', (user, principal, expected) => expect(m.isMember(user, principal)).toBe(expected));

  it('lists the Slack user groups to resolve', () => {
    const cfg = configSchema.parse({
      groups: { ops: ['SOPS', 'UA'] },
      permissions: { drain: ['SDRAIN', 'group:ops'] },
      approvals: { drain: { approvers: ['SAPP', 'SOPS'] } },
    });
    expect(referencedUserGroups(cfg)).toEqual(['SAPP', 'SDRAIN', 'SOPS']);
  });

  it('describes principals for sentences', () => {
    expect(describePrincipals(['group:operators'])).toBe('the operators group');
    expect(describePrincipals(['group:operators', 'SOPS', 'UA1', 'carol'])).toBe('the operators group, <!subteam^SOPS>, <@UA1> or @carol');
    expect(describePrincipals([])).toBe('nobody');
  });
});

describe('checkPermission', () => {
  type Case = [name: string, command: string, user: string, channel: ChannelRef, config: typeof open, expected: true | RegExp, dryRun?: boolean];
  const overridden = configSchema.parse({
    groups,
    permissions: { drain: ['*'], 'find stale ports': ['group:operators'], 'remove-stale-ports': ['UAPP1'], migrate: [] },
  });
  const pauseByCarol = configSchema.parse({ groups, approvals: { pause: { approvals: 0, approvers: ['UCAROL'] } } });
  const cases: Case[] = [
    // Defaults, open channels.
    ['read-only open to everyone', 'find-stale-ports', 'UNOBODY', 'C1', open, true],
    ...READ_ONLY_COMMANDS.map((c): Case => [`default: ${c} is open`, c, 'UNOBODY', 'C1', open, true]),
    ['mutating needs operators', 'drain', 'UNOBODY', 'C1', open, /^drain needs the operators group; ask an admin to add you\.$/],
    ['operator by user ID', 'drain', 'UOP1', 'C1', open, true],
    ['operator by Slack user group', 'remove-stale-ports', 'UOP2', 'C1', open, true],
    ['operator by console name', 'restore', 'alice', 'console', open, true],
    ['approver is not an operator', 'migrate', 'UAPP1', 'C1', open, /^migrate needs the operators group/],
    ['spelled with spaces', 'remove stale ports', 'UNOBODY', 'C1', open, /^remove stale ports needs the operators group/],
    ['drain dry-run is read-only', 'drain', 'UNOBODY', 'C1', open, true, true],
    ['migrate dry-run is read-only', 'migrate', 'UNOBODY', 'C1', open, true, true],
    ['dry-run does not open other commands', 'restore', 'UNOBODY', 'C1', open, /^restore needs/, true],
    ['pause all needs approvers', 'pause-all', 'UOP1', 'C1', open, /^pause all needs the approvers group/],
    ['pause all by an approver', 'pause all', 'bob', 'console', open, true],
    ['resume all by an approver', 'resume-all', 'UAPP1', 'C1', open, true],
    ['pause follows approvals.pause', 'pause-all', 'UCAROL', 'C1', pauseByCarol, true],
    ['pause follows approvals.pause (refusal)', 'pause-all', 'UAPP1', 'C1', pauseByCarol, /^pause all needs <@UCAROL>/],
    ['approve is gated by the approval policy, not here', 'approve', 'UNOBODY', 'console', open, true],
    ['unknown command fails closed', 'frobnicate', 'UNOBODY', 'C1', open, /^frobnicate needs the operators group/],
    // Overrides.
    ['override opens drain', 'drain', 'UNOBODY', 'C1', overridden, true],
    ['override closes a read-only command', 'find-stale-ports', 'UNOBODY', 'C1', overridden, /^find stale ports needs the operators group/],
    ['override names a user', 'remove-stale-ports', 'UAPP1', 'C1', overridden, true],
    ['override replaces the default', 'remove-stale-ports', 'UOP1', 'C1', overridden, /^remove stale ports needs <@UAPP1>/],
    ['empty list switches a command off', 'migrate', 'UOP1', 'C1', overridden, /^migrate is switched off in this Ferry's configuration\.$/],
    ['other commands keep defaults', 'restore', 'UOP1', 'C1', overridden, true],
    // Channels.
    ['allowed channel by ID', 'drain', 'UOP1', 'C0OPS', restricted, true],
    ['allowed channel by name', 'drain', 'UOP1', { id: 'C0FERRY', name: 'ferry' }, restricted, true],
    ['other channel refused, even read-only', 'hosts', 'UOP1', 'C0RANDOM', restricted, /^Ferry takes commands in <#C0OPS> and #ferry only; run hosts there\.$/],
    ['refusal names where to ask', 'drain', 'UNOBODY', 'C0OPS', restricted, /^drain needs the operators group; ask in <#C0OPS> or an admin to add you\.$/],
    ['DM: read-only answered', 'status', 'UNOBODY', 'D0123', restricted, true],
    ['DM by type: read-only answered', 'jobs', 'UNOBODY', { id: 'X1', type: 'im' }, restricted, true],
    ['DM: mutating refused', 'drain', 'UOP1', 'D0123', restricted, /^In a direct message Ferry only answers read-only commands; run drain in <#C0OPS> and #ferry\.$/],
    ['group DM: mutating refused', 'drain', 'UOP1', { id: 'G0MP', type: 'mpim' }, restricted, /^In a direct message/],
    ['slash command from a DM', 'drain', 'UOP1', { id: 'D0X', name: 'directmessage' }, restricted, /^In a direct message/],
    ['DM without restriction: anything', 'drain', 'UOP1', 'D0123', open, true],
    ['console is never channel-restricted', 'drain', 'alice', 'console', restricted, true],
    ['console still checks permission', 'drain', 'mallory', { id: 'console', type: 'console' }, restricted, /^drain needs the operators group/],
  ];

  it.each(cases)('%s', (_name, command, user, channel, config, expected, dryRun) => {
    const r = checkPermission({ command, user, channel, config, groupMembers, dryRun });
    if (expected === true) expect(r).toBeNull();
    else {
      // The one refusal shape (core/refusal.ts), with the reason as its code.
      expect(isRefusal(r)).toBe(true);
      expect(r?.sentence).toMatch(expected);
      expect(['not-permitted', 'channel', 'disabled']).toContain(r?.code);
    }
  });

  it('principalsFor matches config keys however they are spelled', () => {
    const cfg = configSchema.parse({ permissions: { 'Remove Stale Ports': ['UA'], pause_all: ['UB'] } });
    expect(principalsFor('remove-stale-ports', cfg)).toEqual(['UA']);
    expect(principalsFor('pause all', cfg)).toEqual(['UB']);
    expect(principalsFor('drain', cfg)).toEqual(['group:operators']);
  });
});

describe('visibleCommands', () => {
  it.each([
    ['nobody sees the read-only commands and approve/reject', 'UNOBODY', undefined, [...READ_ONLY_COMMANDS, 'approve', 'reject']],
    [
      'an operator sees everything but the kill switch',
      'UOP1',
      undefined,
      ALL_COMMANDS.filter((c) => c !== 'pause-all' && c !== 'resume-all'),
    ],
    ['an approver adds the kill switch', 'bob', undefined, [...READ_ONLY_COMMANDS, 'approve', 'reject', 'pause-all', 'resume-all']],
  ] as const)('%s', (_name, user, channel, expected) => {
    expect(visibleCommands({ user, channel, config: open, groupMembers })).toEqual(expected);
  });

  it('in a DM of a restricted Ferry, an operator sees only read-only commands', () => {
    expect(visibleCommands({ user: 'UOP1', channel: 'D0123', config: restricted, groupMembers })).toEqual([...READ_ONLY_COMMANDS]);
  });

  it('in a channel Ferry does not take commands in, nothing is visible', () => {
    expect(visibleCommands({ user: 'UOP1', channel: 'C0RANDOM', config: restricted, groupMembers })).toEqual([]);
  });
});
