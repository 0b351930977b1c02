/**
 * Ferry's command grammar (pure). One grammar for the slash command, mentions, DMs and the
 * console. Bad input gets one clear sentence and, where it helps, a suggestion; nothing from
 * a message reaches a shell, so anything shell-like is refused here, before any lookup.
 */
import { suggest } from '../core/suggest.js';
import { parseDuration } from '../core/duration.js';

export type Command =
  | { name: 'help'; topic?: string }
  | { name: 'hosts'; selector: string }
  | { name: 'status'; target: string }
  | { name: 'find-stale-ports'; selector: string }
  | { name: 'remove-stale-ports'; selector: string; wwpns: string[] }
  | { name: 'drain'; host: string; dryRun: boolean; rollback: 'auto' | 'hold'; parallel?: number; saveNonHa: boolean; coldMigrate: boolean }
  | { name: 'restore'; host: string }
  | { name: 'migrate'; vm: string; target: string; datastore?: string; dryRun: boolean }
  | { name: 'precheck'; vm: string; target: string }
  | { name: 'patch-window'; selector: string; at: string; duration?: string; note?: string; rolling: boolean }
  | { name: 'patch-windows' }
  | { name: 'cancel-patch-window'; id: string }
  | { name: 'jobs' }
  | { name: 'job'; id: string }
  | { name: 'cancel'; id: string }
  | { name: 'pause-all' }
  | { name: 'resume-all' }
  | { name: 'audit'; target: string }
  | { name: 'approve'; id: string }
  | { name: 'start'; id: string }
  | { name: 'retry'; id: string }
  | { name: 'skip'; id: string; vm: string }
  | { name: 'rollback'; id: string }
  | { name: 'reject'; id: string; reason?: string }
  // Rolling runs of patch windows (the buttons on the run's card do the same).
  | { name: 'approve-run'; id: string }
  | { name: 'pause-run'; id: string }
  | { name: 'resume-run'; id: string }
  | { name: 'abort-run'; id: string }
  | { name: 'patch-done'; id: string };

export type CommandName = Command['name'];

export interface CommandDoc {
  name: CommandName;
  /** Words that start the command, as typed. */
  words: string[];
  syntax: string;
  summary: string;
  example: string;
  aliases?: string[][];
}

/** Every command, in the order `help` lists them. */
export const COMMANDS: CommandDoc[] = [
  { name: 'help', words: ['help'], syntax: 'help [command]', summary: 'what Ferry can do, or one command in detail', example: 'help drain' },
  { name: 'hosts', words: ['hosts'], syntax: 'hosts <selector>', summary: 'inventory view: state, VMs, maintenance, adapter', example: 'hosts cluster:prod-a' },
  { name: 'status', words: ['status'], syntax: 'status <host|vm>', summary: 'one host or VM: where it is and what it runs', example: 'status hyp03' },
  { name: 'find-stale-ports', words: ['find', 'stale', 'ports'], syntax: 'find stale ports <selector>', summary: 'read-only sweep for NPIV ports left behind by migrations', example: 'find stale ports hyp01..hyp12' },
  {
    name: 'remove-stale-ports',
    words: ['remove', 'stale', 'ports'],
    syntax: 'remove stale ports <selector> [<wwpn>…]',
    summary: 'plan → approval → removal, reported port by port',
    example: 'remove stale ports hyp03 C003FF6EDB4A0004',
  },
  {
    name: 'drain',
    words: ['drain'],
    syntax: 'drain <host> [dry-run] [rollback auto|hold] [parallel <n>] [save-non-ha] [cold-migrate]',
    summary: 'live-migrate a host’s VMs away and put it in maintenance',
    example: 'drain hyp03 dry-run',
  },
  { name: 'restore', words: ['restore'], aliases: [['undrain']], syntax: 'restore <host>', summary: 'leave maintenance and move the VMs back home', example: 'restore hyp03' },
  { name: 'migrate', words: ['migrate'], syntax: 'migrate <vm> to <host> [datastore <ds>] [dry-run]', summary: 'move one VM, with the same prechecks', example: 'migrate web01 to hyp05' },
  { name: 'precheck', words: ['precheck'], syntax: 'precheck <vm> to <host>', summary: 'would this VM move there? every check, no move', example: 'precheck web01 to hyp05' },
  {
    name: 'patch-window',
    words: ['patch', 'window'],
    syntax: 'patch window <selector> at <time> [for <duration>] [note "<text>"] [rolling]',
    summary: 'schedule a patch window, announced in the channel',
    example: 'patch window hyp01..hyp04 at 2026-12-05 22:00 Europe/Amsterdam for 4h note "KB5031234"',
  },
  { name: 'patch-windows', words: ['patch', 'windows'], syntax: 'patch windows', summary: 'upcoming patch windows', example: 'patch windows' },
  { name: 'cancel-patch-window', words: ['cancel', 'patch', 'window'], syntax: 'cancel patch window <id>', summary: 'cancel a patch window and say so', example: 'cancel patch window 7' },
  { name: 'jobs', words: ['jobs'], syntax: 'jobs', summary: 'running and recent operations', example: 'jobs' },
  { name: 'job', words: ['job'], syntax: 'job <id>', summary: 'one operation in detail', example: 'job 41' },
  { name: 'cancel', words: ['cancel'], syntax: 'cancel <id>', summary: 'stop an operation cleanly', example: 'cancel 41' },
  { name: 'start', words: ['start'], syntax: 'start <id>', summary: 'start a planned drain or migration (its Start button)', example: 'start 41' },
  { name: 'rollback', words: ['rollback'], syntax: 'rollback <id>', summary: 'a drain on hold: move back what moved, leave maintenance', example: 'rollback 41' },
  { name: 'retry', words: ['retry'], syntax: 'retry <id>', summary: 'a drain on hold: try the failed VMs again', example: 'retry 41' },
  { name: 'skip', words: ['skip'], syntax: 'skip <id> <vm>', summary: 'a drain on hold: leave a failed VM and carry on', example: 'skip 41 web07' },
  { name: 'pause-all', words: ['pause', 'all'], syntax: 'pause all', summary: 'kill switch: hold every queue (approvers only)', example: 'pause all' },
  { name: 'resume-all', words: ['resume', 'all'], syntax: 'resume all', summary: 'lift the kill switch (approvers only)', example: 'resume all' },
  { name: 'audit', words: ['audit'], syntax: 'audit <host|vm|job>', summary: 'who did what, where, approved by whom', example: 'audit hyp03' },
  { name: 'approve', words: ['approve'], syntax: 'approve <request>', summary: 'approve a pending request (the buttons do the same)', example: 'approve 12' },
  { name: 'reject', words: ['reject'], syntax: 'reject <request> [reason]', summary: 'reject a pending request', example: 'reject 12 wrong host' },
  { name: 'approve-run', words: ['approve', 'run'], syntax: 'approve run <job>', summary: 'approve a patch window’s rolling run', example: 'approve run 41' },
  { name: 'pause-run', words: ['pause', 'run'], syntax: 'pause run <job>', summary: 'hold a rolling run after the host in progress', example: 'pause run 41' },
  { name: 'resume-run', words: ['resume', 'run'], syntax: 'resume run <job>', summary: 'continue a paused rolling run', example: 'resume run 41' },
  { name: 'abort-run', words: ['abort', 'run'], syntax: 'abort run <job>', summary: 'stop a rolling run after the host in progress', example: 'abort run 41' },
  { name: 'patch-done', words: ['done'], syntax: 'done <job>', summary: 'the drained host of a rolling run is patched: restore it', example: 'done 41' },
];

export const MAX_LINE = 1000;

export type Parsed = { ok: true; command: Command } | { ok: false; error: string };

/** Characters that mean someone is typing shell, or that Slack would never send in a command. */
const SHELL_CHARS = /[;&|`$<>\\(){}*?~]|#(?!\d+$)/;

function fail(error: string): Parsed {
  return { ok: false, error };
}

/** Tokenize: whitespace-separated words; "double quotes" keep a note together (only notes). */
function tokenize(line: string): { tokens: string[]; quoted: Set<number> } | { error: string } {
  const tokens: string[] = [];
  const quoted = new Set<number>();
  let i = 0;
  while (i < line.length) {
    const ch = line[i]!;
    if (ch === ' ') {
      i++;
      continue;
    }
    if (ch === '"' || ch === '“' || ch === '”') {
      const close = line.slice(i + 1).search(/["“”]/);
      if (close < 0) return { error: 'A quote is not closed; put the note between two double quotes.' };
      quoted.add(tokens.length);
      tokens.push(line.slice(i + 1, i + 1 + close));
      i += close + 2;
      continue;
    }
    let j = i;
    while (j < line.length && line[j] !== ' ' && line[j] !== '"') j++;
    tokens.push(line.slice(i, j));
    i = j;
  }
  return { tokens, quoted };
}

/** Slack wraps mentions, channels and links in <…>; strip our own mention and mailto/links. */
export function normalizeInput(raw: string): string {
  return raw
    .replace(/^\s*<@[A-Z0-9]+(\|[^>]*)?>\s*/, '')
    .replace(/^\s*@?ferry\b[:,]?\s*/i, '')
    .replace(/^\/ferry\s+/, '')
    .replace(/\u00a0/g, ' ')
    // Slack escapes these three in message text; show users what they typed.
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .trim();
}

function describeChar(ch: string): string {
  const cp = ch.codePointAt(0)!;
  return `"${ch}" (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
}

function commandPhrases(): string[] {
  const out: string[] = [];
  for (const c of COMMANDS) {
    out.push(c.words.join(' '));
    for (const a of c.aliases ?? []) out.push(a.join(' '));
  }
  return out;
}

function matchCommand(tokens: string[]): { doc: CommandDoc; rest: string[] } | undefined {
  const lower = tokens.map((t) => t.toLowerCase());
  let best: { doc: CommandDoc; len: number } | undefined;
  for (const doc of COMMANDS) {
    for (const words of [doc.words, ...(doc.aliases ?? [])]) {
      if (words.length <= lower.length && words.every((w, i) => lower[i] === w) && (!best || words.length > best.len)) {
        best = { doc, len: words.length };
      }
    }
  }
  return best ? { doc: best.doc, rest: tokens.slice(best.len) } : undefined;
}

const NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
const ID = /^#?[A-Za-z0-9-]{1,40}$/;

function nameArg(value: string | undefined, what: string, doc: CommandDoc): string | Parsed {
  if (!value) return fail(`${doc.words.join(' ')} needs ${what}: ${doc.syntax}, e.g. "${doc.example}".`);
  // `what` carries its article for "needs a host"; here it is "not a valid host name".
  if (!NAME.test(value)) return fail(`"${value}" is not a valid ${what.replace(/^an? /, '')} name; names are letters, digits, ".", "_" and "-".`);
  return value;
}

function idArg(value: string | undefined, doc: CommandDoc): string | Parsed {
  if (!value) return fail(`${doc.words.join(' ')} needs an id: ${doc.syntax}, e.g. "${doc.example}".`);
  if (!ID.test(value)) return fail(`"${value}" is not an id; ids look like 41.`);
  return value.replace(/^#/, '');
}

function extra(rest: string[], doc: CommandDoc): Parsed {
  return fail(`I don't understand "${rest.join(' ')}" after ${doc.words.join(' ')}; the form is: ${doc.syntax}.`);
}

function parseArgs(doc: CommandDoc, rest: string[], quoted: Set<number>, offset: number): Parsed {
  const isFail = (v: unknown): v is Parsed => typeof v === 'object' && v !== null && 'ok' in v;
  switch (doc.name) {
    case 'help':
      if (rest.length > 3) return extra(rest.slice(3), doc);
      return { ok: true, command: { name: 'help', topic: rest.length ? rest.join(' ').toLowerCase() : undefined } };
    case 'hosts':
    case 'find-stale-ports': {
      if (!rest.length) return fail(`${doc.words.join(' ')} needs hosts: e.g. "${doc.example}".`);
      return { ok: true, command: { name: doc.name, selector: rest.join(' ') } };
    }
    case 'remove-stale-ports': {
      if (!rest.length) return fail(`remove stale ports needs hosts: e.g. "${doc.example}".`);
      const wwpns: string[] = [];
      const sel: string[] = [];
      for (const t of rest) {
        const w = t.replace(/[:-]/g, '').toUpperCase();
        if (/^[0-9A-F]{16}$/.test(w)) wwpns.push(w);
        else if (wwpns.length) return fail(`"${t}" is not a WWPN; WWPNs are 16 hex digits such as C003FF6EDB4A0004.`);
        else sel.push(t);
      }
      if (!sel.length) return fail('remove stale ports needs hosts before the WWPNs: e.g. "remove stale ports hyp03 C003FF6EDB4A0004".');
      return { ok: true, command: { name: 'remove-stale-ports', selector: sel.join(' '), wwpns } };
    }
    case 'status':
    case 'audit': {
      const target = doc.name === 'audit' && rest[0] && /^#?\d+$/.test(rest[0]) ? rest[0].replace('#', '') : nameArg(rest[0], 'a host, VM or job', doc);
      if (isFail(target)) return target;
      if (rest.length > 1) return extra(rest.slice(1), doc);
      return { ok: true, command: { name: doc.name, target } };
    }
    case 'drain': {
      const host = nameArg(rest[0], 'a host', doc);
      if (isFail(host)) return host;
      const cmd: Extract<Command, { name: 'drain' }> = { name: 'drain', host, dryRun: false, rollback: 'auto', saveNonHa: false, coldMigrate: false };
      for (let i = 1; i < rest.length; i++) {
        const t = rest[i]!.toLowerCase();
        if (t === 'dry-run' || t === 'dryrun') cmd.dryRun = true;
        else if (t === 'save-non-ha') cmd.saveNonHa = true;
        else if (t === 'cold-migrate') cmd.coldMigrate = true;
        else if (t === 'rollback') {
          const mode = rest[++i]?.toLowerCase();
          if (mode !== 'auto' && mode !== 'hold') return fail('rollback takes "auto" (move back what moved and leave maintenance) or "hold" (stop and ask).');
          cmd.rollback = mode;
        } else if (t === 'parallel') {
          const n = Number(rest[++i]);
          if (!Number.isInteger(n) || n < 1 || n > 16) return fail('parallel takes a whole number of migrations at once, from 1 to 16.');
          cmd.parallel = n;
        } else return extra(rest.slice(i), doc);
      }
      return { ok: true, command: cmd };
    }
    case 'restore': {
      const host = nameArg(rest[0], 'a host', doc);
      if (isFail(host)) return host;
      if (rest.length > 1) return extra(rest.slice(1), doc);
      return { ok: true, command: { name: 'restore', host } };
    }
    case 'migrate':
    case 'precheck': {
      const vm = nameArg(rest[0], 'a VM', doc);
      if (isFail(vm)) return vm;
      if (rest[1]?.toLowerCase() !== 'to') return fail(`${doc.words[0]} needs a target: ${doc.syntax}, e.g. "${doc.example}".`);
      const target = nameArg(rest[2], 'a target host', doc);
      if (isFail(target)) return target;
      let datastore: string | undefined;
      let dryRun = false;
      for (let i = 3; i < rest.length; i++) {
        const t = rest[i]!.toLowerCase();
        if (doc.name === 'migrate' && t === 'datastore') {
          const ds = nameArg(rest[++i], 'a datastore', doc);
          if (isFail(ds)) return ds;
          datastore = ds;
        } else if (doc.name === 'migrate' && (t === 'dry-run' || t === 'dryrun')) dryRun = true;
        else return extra(rest.slice(i), doc);
      }
      if (doc.name === 'precheck') return { ok: true, command: { name: 'precheck', vm, target } };
      return { ok: true, command: { name: 'migrate', vm, target, datastore, dryRun } };
    }
    case 'patch-window': {
      const at = rest.findIndex((t, i) => t.toLowerCase() === 'at' && !quoted.has(i + offset));
      if (at <= 0) return fail(`patch window needs hosts and a time: e.g. "${doc.example}".`);
      const selector = rest.slice(0, at).join(' ');
      const timeParts: string[] = [];
      let duration: string | undefined;
      let note: string | undefined;
      let rolling = false;
      let i = at + 1;
      for (; i < rest.length; i++) {
        const t = rest[i]!.toLowerCase();
        if (!quoted.has(i + offset) && (t === 'for' || t === 'note' || t === 'rolling')) break;
        timeParts.push(rest[i]!);
      }
      if (!timeParts.length) return fail(`patch window needs a time after "at": e.g. "at 2026-12-05 22:00 Europe/Amsterdam".`);
      for (; i < rest.length; i++) {
        const t = rest[i]!.toLowerCase();
        if (t === 'for') {
          duration = rest[++i];
          if (!duration || parseDuration(duration) === null) return fail('"for" takes a duration such as 4h, 90m or 1h30m.');
        } else if (t === 'note') {
          if (!quoted.has(i + 1 + offset)) return fail('The note goes in double quotes: note "KB5031234".');
          note = rest[++i];
        } else if (t === 'rolling') rolling = true;
        else return extra(rest.slice(i), doc);
      }
      return { ok: true, command: { name: 'patch-window', selector, at: timeParts.join(' '), duration, note, rolling } };
    }
    case 'cancel-patch-window':
    case 'approve-run':
    case 'pause-run':
    case 'resume-run':
    case 'abort-run':
    case 'patch-done':
    case 'job':
    case 'cancel':
    case 'start':
    case 'retry':
    case 'rollback':
    case 'approve': {
      const id = idArg(rest[0], doc);
      if (isFail(id)) return id;
      if (rest.length > 1) return extra(rest.slice(1), doc);
      return { ok: true, command: { name: doc.name, id } };
    }
    case 'skip': {
      const id = idArg(rest[0], doc);
      if (isFail(id)) return id;
      const vm = nameArg(rest[1], 'a VM', doc);
      if (isFail(vm)) return vm;
      if (rest.length > 2) return extra(rest.slice(2), doc);
      return { ok: true, command: { name: 'skip', id, vm } };
    }
    case 'reject': {
      const id = idArg(rest[0], doc);
      if (isFail(id)) return id;
      const reason = rest.slice(1).join(' ') || undefined;
      return { ok: true, command: { name: 'reject', id, reason } };
    }
    case 'patch-windows':
    case 'jobs':
    case 'pause-all':
    case 'resume-all':
      if (rest.length) return extra(rest, doc);
      return { ok: true, command: { name: doc.name } };
  }
}

export function parseCommand(raw: string): Parsed {
  if (raw.length > MAX_LINE) return fail(`That command is ${raw.length} characters long; Ferry takes at most ${MAX_LINE}.`);
  const line = normalizeInput(raw);
  if (!line) return fail('Say what to do, e.g. "find stale ports hyp01..hyp12", or "help" for the list.');
  if (/[\r\n\t\v\f\u0000-\u001f\u007f]/.test(line)) return fail('Commands are one line; Ferry does not take line breaks or control characters.');

  // Quoted notes may hold free text; everything else is checked character by character.
  const tok = tokenize(line);
  if ('error' in tok) return fail(tok.error);
  const { tokens, quoted } = tok;
  for (const [i, t] of tokens.entries()) {
    if (quoted.has(i)) {
      if (/[`$\\]/.test(t)) return fail('Notes cannot hold backticks, "$" or backslashes.');
      continue;
    }
    const nonAscii = [...t].find((ch) => ch.codePointAt(0)! > 0x7e);
    if (nonAscii) {
      // Suggest only when every character has a true ASCII compatibility form (fullwidth, accents).
      const plain = t.normalize('NFKD').replace(/[\u0300-\u036f]/g, '');
      const hint = /^[\x21-\x7e]+$/.test(plain) && plain.length === [...t].length ? ` (did you mean ${plain}?)` : '';
      return fail(`"${t}" contains ${describeChar(nonAscii)}, which is not a plain ASCII character; type names in plain ASCII${hint}.`);
    }
    const shell = SHELL_CHARS.exec(t);
    if (shell) return fail(`Ferry does not take shell characters: "${shell[0]}" in "${t}". Give host names, ranges or lists, e.g. hyp01..hyp12.`);
    if (t.includes("'")) return fail(`Ferry does not take quotes in names: "${t}".`);
  }

  const match = matchCommand(tokens);
  if (!match) {
    const phrases = commandPhrases();
    const first = tokens.slice(0, 3).join(' ').toLowerCase();
    let hint: string | undefined;
    for (let n = Math.min(3, tokens.length); n >= 1 && !hint; n--) hint = suggest(tokens.slice(0, n).join(' ').toLowerCase(), phrases);
    return fail(`I don't know "${first}"${hint ? `; did you mean "${hint}"?` : '.'} Try "help" for the list.`);
  }
  const offset = tokens.length - match.rest.length;
  return parseArgs(match.doc, match.rest, quoted, offset);
}

export function docFor(name: CommandName): CommandDoc {
  return COMMANDS.find((c) => c.name === name)!;
}
