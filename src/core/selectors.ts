/**
 * Host selectors (pure). Forms, combinable:
 *   hyp03                 one host
 *   hyp01..hyp99          range, zero padding kept
 *   hyp[01-99]            the same range, bracket form
 *   hyp01,hyp05           lists (commas and/or spaces)
 *   cluster:prod-a        every host of a cluster
 *   !hyp42 / except hyp42 exclusions (any of the forms above)
 * Expansion is against the inventory: unknown names are reported by name, never dropped.
 */
import { suggest } from './suggest.js';

export type Term =
  | { kind: 'host'; name: string; text: string }
  | { kind: 'range'; prefix: string; from: number; to: number; width: number; text: string }
  | { kind: 'cluster'; name: string; text: string };

export interface SelectorAst {
  include: Term[];
  exclude: Term[];
  text: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

export interface SelectorInventory {
  /** Every host name, in inventory order. */
  hosts: readonly string[];
  clusters: Readonly<Record<string, readonly string[]>>;
}

export interface Expansion {
  hosts: string[];
  /** Included names the inventory does not know. */
  unknown: string[];
  /** Excluded names the inventory does not know (reported, harmless). */
  unknownExcluded: string[];
}

const NAME = /^[A-Za-z][A-Za-z0-9._-]*$/;
const NUMBERED = /^([A-Za-z][A-Za-z._-]*?)(\d+)$/;
const BRACKET = /^([A-Za-z][A-Za-z0-9._-]*?)\[(\d+)-(\d+)\]$/;
const CLUSTER = /^cluster:([A-Za-z0-9._-]+)$/;

function rangeTerm(prefix: string, fromText: string, toText: string, text: string, max: number): Result<Term> {
  const from = Number(fromText);
  const to = Number(toText);
  // Padding: a leading zero (or equal widths) fixes the width; "hyp1..hyp10" is unpadded.
  const width = fromText.length === toText.length || fromText.startsWith('0') ? fromText.length : 1;
  if (from > to) {
    const fixed = text.includes('[') ? `${prefix}[${toText}-${fromText}]` : `${prefix}${toText}..${prefix}${fromText}`;
    return { ok: false, error: `The range ${text} runs backwards; did you mean ${fixed}?` };
  }
  const count = to - from + 1;
  if (count > max) {
    return { ok: false, error: `The range ${text} names ${count} hosts, over the limit of ${max}; split it into smaller ranges.` };
  }
  return { ok: true, value: { kind: 'range', prefix, from, to, width, text } };
}

function parseAtom(raw: string, max: number): Result<Term> {
  const cluster = CLUSTER.exec(raw);
  if (cluster) return { ok: true, value: { kind: 'cluster', name: cluster[1]!, text: raw } };
  if (raw.startsWith('cluster:')) return { ok: false, error: `"${raw}" needs a cluster name after "cluster:", e.g. cluster:prod-a.` };
  const dots = raw.indexOf('..');
  if (dots >= 0) {
    const left = raw.slice(0, dots);
    const right = raw.slice(dots + 2);
    const a = NUMBERED.exec(left);
    const b = NUMBERED.exec(right);
    if (!a || !b) {
      return { ok: false, error: `"${raw}" is not a range; a range is two numbered names of one prefix, e.g. hyp01..hyp12.` };
    }
    if (a[1]!.toLowerCase() !== b[1]!.toLowerCase()) {
      return {
        ok: false,
        error: `The range ${raw} mixes the prefixes "${a[1]}" and "${b[1]}"; a range stays within one prefix, e.g. ${a[1]}${a[2]}..${a[1]}${b[2]}.`,
      };
    }
    return rangeTerm(a[1]!, a[2]!, b[2]!, raw, max);
  }
  const br = BRACKET.exec(raw);
  if (br) return rangeTerm(br[1]!, br[2]!, br[3]!, raw, max);
  if (raw.includes('[') || raw.includes(']')) {
    return { ok: false, error: `"${raw}" is not a range; the bracket form is prefix[first-last], e.g. hyp[01-12].` };
  }
  if (!NAME.test(raw)) return { ok: false, error: `"${raw}" is not a host name; names are letters, digits, ".", "_" and "-", starting with a letter.` };
  return { ok: true, value: { kind: 'host', name: raw, text: raw } };
}

/** Parse selector text (already free of shell characters; the grammar checks that first). */
export function parseSelector(text: string, opts: { max: number }): Result<SelectorAst> {
  const trimmed = text.trim();
  if (!trimmed) return { ok: false, error: 'Which hosts? Give a selector such as hyp03, hyp01..hyp12, hyp[01-12] or cluster:prod-a.' };
  const tokens = trimmed.split(/[\s,]+/).filter(Boolean);
  const include: Term[] = [];
  const exclude: Term[] = [];
  let excepting = false;
  for (const token of tokens) {
    if (token.toLowerCase() === 'except') {
      if (excepting) return { ok: false, error: '"except" appears twice; list every exclusion after one "except".' };
      excepting = true;
      continue;
    }
    const negated = token.startsWith('!');
    const raw = negated ? token.slice(1) : token;
    if (!raw) return { ok: false, error: '"!" needs a host after it, e.g. !hyp42.' };
    const atom = parseAtom(raw, opts.max);
    if (!atom.ok) return atom;
    (negated || excepting ? exclude : include).push(atom.value);
  }
  if (excepting && exclude.length === 0) return { ok: false, error: '"except" needs the hosts to leave out, e.g. except hyp42.' };
  if (include.length === 0) return { ok: false, error: 'That selector only excludes hosts; say which hosts to include first, e.g. cluster:prod-a !hyp42.' };
  return { ok: true, value: { include, exclude, text: trimmed } };
}

function termNames(term: Term, inv: SelectorInventory): Result<string[]> {
  switch (term.kind) {
    case 'host':
      return { ok: true, value: [term.name] };
    case 'range': {
      const names: string[] = [];
      for (let i = term.from; i <= term.to; i++) names.push(term.prefix + String(i).padStart(term.width, '0'));
      return { ok: true, value: names };
    }
    case 'cluster': {
      const members = inv.clusters[term.name];
      if (!members) {
        const hint = suggest(term.name, Object.keys(inv.clusters));
        const known = Object.keys(inv.clusters).join(', ');
        return { ok: false, error: `There is no cluster "${term.name}"${hint ? `; did you mean cluster:${hint}?` : `; the clusters are ${known}.`}` };
      }
      return { ok: true, value: [...members] };
    }
  }
}

/** Expand against the inventory; result hosts keep inventory order; max bounds the total. */
export function expandSelector(ast: SelectorAst, inv: SelectorInventory, opts: { max: number }): Result<Expansion> {
  const known = new Map(inv.hosts.map((h) => [h.toLowerCase(), h]));
  const wanted = new Set<string>();
  const unknown: string[] = [];
  const unknownExcluded: string[] = [];
  for (const term of ast.include) {
    const names = termNames(term, inv);
    if (!names.ok) return names;
    for (const n of names.value) {
      const canonical = known.get(n.toLowerCase());
      if (canonical) wanted.add(canonical);
      else if (!unknown.includes(n)) unknown.push(n);
    }
  }
  for (const term of ast.exclude) {
    const names = termNames(term, inv);
    if (!names.ok) return names;
    for (const n of names.value) {
      const canonical = known.get(n.toLowerCase());
      if (canonical) wanted.delete(canonical);
      else {
        const i = unknown.indexOf(n);
        if (i >= 0) unknown.splice(i, 1);
        else unknownExcluded.push(n);
      }
    }
  }
  const hosts = inv.hosts.filter((h) => wanted.has(h));
  if (hosts.length > opts.max) {
    return { ok: false, error: `That selector names ${hosts.length} hosts, over the limit of ${opts.max}; narrow it down.` };
  }
  return { ok: true, value: { hosts, unknown, unknownExcluded } };
}

/** One sentence naming the unknown hosts, with a suggestion for a lone near miss. */
export function unknownHostsSentence(unknown: string[], inv: SelectorInventory): string {
  if (unknown.length === 1) {
    const hint = suggest(unknown[0]!, inv.hosts);
    return `${unknown[0]} is not in the inventory${hint ? `; did you mean ${hint}?` : '.'}`;
  }
  return `${unknown.length} names are not in the inventory: ${compressNames(unknown)}.`;
}

/** ["hyp01","hyp02","hyp03","hyp07"] -> "hyp01…hyp03, hyp07" */
export function compressNames(names: readonly string[], maxParts = 12): string {
  const parts: string[] = [];
  let i = 0;
  while (i < names.length) {
    const m = NUMBERED.exec(names[i]!);
    let j = i;
    if (m) {
      while (j + 1 < names.length) {
        const n = NUMBERED.exec(names[j + 1]!);
        const prev = NUMBERED.exec(names[j]!)!;
        if (!n || n[1] !== m[1] || n[2]!.length !== prev[2]!.length || Number(n[2]) !== Number(prev[2]) + 1) break;
        j++;
      }
    }
    parts.push(j > i + 1 ? `${names[i]}…${names[j]}` : j === i + 1 ? `${names[i]}, ${names[j]}` : names[i]!);
    i = j + 1;
  }
  if (parts.length > maxParts) return `${parts.slice(0, maxParts).join(', ')} and ${parts.length - maxParts} more`;
  return parts.join(', ');
}

/** Convenience: parse + expand, used by configuration (hosts: ["hyp[01-24]"]) and commands. */
export function resolveSelector(text: string, inv: SelectorInventory, opts: { max: number }): Result<Expansion> {
  const ast = parseSelector(text, opts);
  if (!ast.ok) return ast;
  return expandSelector(ast.value, inv, opts);
}

/** Expand range forms without an inventory (configuration host lists). */
export function expandNames(text: string, max = 10_000): Result<string[]> {
  const ast = parseSelector(text, { max });
  if (!ast.ok) return ast;
  if (ast.value.exclude.length) return { ok: false, error: `"${text}": exclusions are not allowed in a host list.` };
  const out: string[] = [];
  for (const t of ast.value.include) {
    if (t.kind === 'cluster') return { ok: false, error: `"${text}": a cluster cannot name hosts of another cluster.` };
    const names = termNames(t, { hosts: [], clusters: {} });
    if (!names.ok) return names;
    out.push(...names.value);
  }
  return { ok: true, value: out };
}
