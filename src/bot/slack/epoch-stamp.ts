/**
 * Buttons carry the epoch of the Redis they were made from (src/jobs/epoch.ts). Ids that a
 * Redis which lost its data hands out again must never let an old card's button act on a new
 * operation: every button value Ferry sends to Slack ends in "~e<tag>", and a click whose tag is
 * not the current epoch's is refused before it is parsed. Values without a tag (cards sent before
 * this stamp existed) are taken as they are.
 */
import { refusal, type Refusal } from '../../core/refusal.js';

const SEP = '~e';

export interface Epoch {
  id: string;
  at?: number;
  afterLoss?: boolean;
}

export function parseEpoch(raw: string | null | undefined): Epoch | undefined {
  if (!raw) return undefined;
  try {
    const e = JSON.parse(raw) as Partial<Epoch>;
    return typeof e.id === 'string' ? { id: e.id, at: e.at, afterLoss: e.afterLoss } : undefined;
  } catch {
    return undefined;
  }
}

/** The short form stamped into button values (Slack allows 2,000 characters per value). */
export function epochTag(e: Epoch): string {
  return e.id.replace(/[^0-9a-f]/gi, '').slice(0, 8);
}

type Block = { type?: string; elements?: { type?: string; value?: string }[] };

/** Blocks with every button value stamped with the tag (a copy; the rest is untouched). */
export function stampButtons<T>(blocks: T, tag: string): T {
  if (!tag || !Array.isArray(blocks)) return blocks;
  return (blocks as Block[]).map((b) =>
    b?.type === 'actions' && Array.isArray(b.elements) ? { ...b, elements: b.elements.map((el) => (el.type === 'button' && typeof el.value === 'string' ? { ...el, value: `${el.value}${SEP}${tag}` } : el)) } : b,
  ) as T;
}

/** A clicked value without its stamp, and the stamp (undefined when it had none). */
export function splitStamp(value: string): { value: string; tag?: string } {
  const i = value.lastIndexOf(SEP);
  if (i < 0 || !/^[0-9a-f]{8}$/i.test(value.slice(i + SEP.length))) return { value };
  return { value: value.slice(0, i), tag: value.slice(i + SEP.length) };
}

function utc(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

/** The refusal for a click stamped with another epoch than the current one, or null when it may go on. */
export function staleClick(tag: string | undefined, current: Epoch | undefined): Refusal | null {
  if (!tag || !current || tag === epochTag(current)) return null;
  const when = current.afterLoss && current.at ? ` (found at ${utc(current.at)})` : '';
  return refusal(`This button is from before Ferry's Redis lost its data${when}; nothing was done. Its job is no longer known: check the hosts it named with status, and type the command again if it is still needed.`, 'stale-click');
}
