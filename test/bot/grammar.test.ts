import { describe, expect, it } from 'vitest';
import { parseCommand, COMMANDS } from '../../src/bot/grammar.js';

describe('grammar: commands', () => {
  it.each([
    ['help', { name: 'help', topic: undefined }],
    ['help drain', { name: 'help', topic: 'drain' }],
    ['hosts cluster:prod-a', { name: 'hosts', selector: 'cluster:prod-a' }],
    ['status hyp03', { name: 'status', target: 'hyp03' }],
    ['find stale ports hyp01..hyp99', { name: 'find-stale-ports', selector: 'hyp01..hyp99' }],
    ['Find Stale Ports hyp[01-12] !hyp07', { name: 'find-stale-ports', selector: 'hyp[01-12] !hyp07' }],
    ['<@U0FERRY> find stale ports hyp01', { name: 'find-stale-ports', selector: 'hyp01' }],
    ['@ferry find stale ports hyp01', { name: 'find-stale-ports', selector: 'hyp01' }],
    ['remove stale ports hyp03', { name: 'remove-stale-ports', selector: 'hyp03', wwpns: [] }],
    ['remove stale ports hyp03 C003FF6EDB4A0004 c0:03:ff:6e:db:4a:00:06', { name: 'remove-stale-ports', selector: 'hyp03', wwpns: ['C003FF6EDB4A0004', 'C003FF6EDB4A0006'] }],
    ['drain hyp03', { name: 'drain', host: 'hyp03', dryRun: false, rollback: 'auto', saveNonHa: false, coldMigrate: false }],
    ['drain hyp03 dry-run rollback hold parallel 4', { name: 'drain', host: 'hyp03', dryRun: true, rollback: 'hold', parallel: 4, saveNonHa: false, coldMigrate: false }],
    ['restore hyp03', { name: 'restore', host: 'hyp03' }],
    ['undrain hyp03', { name: 'restore', host: 'hyp03' }],
    ['migrate web01 to hyp05', { name: 'migrate', vm: 'web01', target: 'hyp05', datastore: undefined, dryRun: false }],
    ['migrate web01 to hyp05 datastore ds2 dry-run', { name: 'migrate', vm: 'web01', target: 'hyp05', datastore: 'ds2', dryRun: true }],
    ['precheck web01 to hyp05', { name: 'precheck', vm: 'web01', target: 'hyp05' }],
    [
      'patch window hyp01..hyp04 at 2026-12-05 22:00 Europe/Amsterdam for 4h note "KB5031234"',
      { name: 'patch-window', selector: 'hyp01..hyp04', at: '2026-12-05 22:00 Europe/Amsterdam', duration: '4h', note: 'KB5031234', rolling: false },
    ],
    ['patch window cluster:prod-a at 22:00 rolling', { name: 'patch-window', selector: 'cluster:prod-a', at: '22:00', duration: undefined, note: undefined, rolling: true }],
    ['patch windows', { name: 'patch-windows' }],
    ['cancel patch window 7', { name: 'cancel-patch-window', id: '7' }],
    ['jobs', { name: 'jobs' }],
    ['job 41', { name: 'job', id: '41' }],
    ['job #41', { name: 'job', id: '41' }],
    ['cancel 41', { name: 'cancel', id: '41' }],
    ['pause all', { name: 'pause-all' }],
    ['resume all', { name: 'resume-all' }],
    ['audit hyp03', { name: 'audit', target: 'hyp03' }],
    ['audit 41', { name: 'audit', target: '41' }],
    ['approve 12', { name: 'approve', id: '12' }],
    ['reject 12 wrong host', { name: 'reject', id: '12', reason: 'wrong host' }],
    ['find stale ports hyp01 &amp;&amp; ls', null],
  ])('%j', (line, want) => {
    const r = parseCommand(line);
    if (want === null) expect(r.ok).toBe(false);
    else expect(r).toEqual({ ok: true, command: want });
  });

  it('every documented example parses to its own command', () => {
    for (const c of COMMANDS) {
      const r = parseCommand(c.example);
      expect(r.ok && r.command.name, c.example).toBe(c.name);
    }
  });
});

describe('grammar: bad and hostile input gets one clear sentence', () => {
  it.each([
    ['', 'Say what to do, e.g. "find stale ports hyp01..hyp12", or "help" for the list.'],
    ['   ', 'Say what to do, e.g. "find stale ports hyp01..hyp12", or "help" for the list.'],
    ['dran hyp03', 'I don\'t know "dran hyp03"; did you mean "drain"? Try "help" for the list.'],
    ['find stal ports hyp01', 'I don\'t know "find stal ports"; did you mean "find stale ports"? Try "help" for the list.'],
    ['reboot hyp03', 'I don\'t know "reboot hyp03". Try "help" for the list.'],
    ['find stale ports hyp03; rm -rf /', 'Ferry does not take shell characters: ";" in "hyp03;". Give host names, ranges or lists, e.g. hyp01..hyp12.'],
    ['find stale ports `reboot`', 'Ferry does not take shell characters: "`" in "`reboot`". Give host names, ranges or lists, e.g. hyp01..hyp12.'],
    ['find stale ports $(reboot)', 'Ferry does not take shell characters: "$" in "$(reboot)". Give host names, ranges or lists, e.g. hyp01..hyp12.'],
    ['drain hyp03 | tee', 'Ferry does not take shell characters: "|" in "|". Give host names, ranges or lists, e.g. hyp01..hyp12.'],
    ["drain 'hyp03'", 'Ferry does not take quotes in names: "\'hyp03\'".'],
    ['drain "hyp03', 'A quote is not closed; put the note between two double quotes.'],
    ['drain hyp03\nrestore hyp04', 'Commands are one line; Ferry does not take line breaks or control characters.'],
    ['drain hyp03\u0000', 'Commands are one line; Ferry does not take line breaks or control characters.'],
    ['drain һyp03', '"һyp03" contains "һ" (U+04BB), which is not a plain ASCII character; type names in plain ASCII.'],
    ['drain ｈyp03', '"ｈyp03" contains "ｈ" (U+FF48), which is not a plain ASCII character; type names in plain ASCII (did you mean hyp03?).'],
    ['drain hyp03 rollback maybe', 'rollback takes "auto" (move back what moved and leave maintenance) or "hold" (stop and ask).'],
    ['drain hyp03 parallel 99', 'parallel takes a whole number of migrations at once, from 1 to 16.'],
    ['drain', 'drain needs a host: drain <host> [dry-run] [rollback auto|hold] [parallel <n>] [save-non-ha] [cold-migrate], e.g. "drain hyp03 dry-run".'],
    ['migrate web01 hyp05', 'migrate needs a target: migrate <vm> to <host> [datastore <ds>] [dry-run], e.g. "migrate web01 to hyp05".'],
    ['remove stale ports hyp03 C003FF6EDB4A0004 junk', '"junk" is not a WWPN; WWPNs are 16 hex digits such as C003FF6EDB4A0004.'],
    ['patch window hyp01 at 22:00 note KB1', 'The note goes in double quotes: note "KB5031234".'],
    ['patch window hyp01 at 22:00 for soon', '"for" takes a duration such as 4h, 90m or 1h30m.'],
    ['patch window hyp01 at 22:00 note "$(x)"', 'Notes cannot hold backticks, "$" or backslashes.'],
    ['jobs now', 'I don\'t understand "now" after jobs; the form is: jobs.'],
    ['drain -hyp03', '"-hyp03" is not a valid host name; names are letters, digits, ".", "_" and "-".'],
    ['migrate 9web to hyp05', '"9web" is not a valid VM name; names are letters, digits, ".", "_" and "-".'],
  ])('%j', (line, sentence) => {
    expect(parseCommand(line)).toEqual({ ok: false, error: sentence });
  });

  it('refuses a 10,000-character line without scanning it', () => {
    const r = parseCommand(`find stale ports ${'hyp01,'.repeat(1700)}`);
    expect(r).toEqual({ ok: false, error: `That command is ${17 + 6 * 1700} characters long; Ferry takes at most 1000.` });
  });

  it('every refusal is one sentence on one line', () => {
    for (const bad of ['x', 'drain', 'find stale ports hyp01;', '\u202edrain hyp03', 'drain hyp03 %s%n']) {
      const r = parseCommand(bad);
      if (!r.ok) expect(r.error).not.toMatch(/\n/);
    }
  });
});
