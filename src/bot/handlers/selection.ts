/** Selector text -> inventory hosts, or one clear refusal. */
import { compressNames, parseSelector, expandSelector, unknownHostsSentence } from '../../core/selectors.js';
import type { CommandContext } from '../commands.js';
import { refusal, type Refusal } from '../../core/refusal.js';
import type { Runtime } from '../../runtime.js';

/** A selector and the hosts it resolved to. */
export interface Selection {
  selector: string;
  hosts: string[];
}

/** From the inventory in memory alone (no Redis): a typed line's bad selector is refused before anything else is asked. */
export function selectHosts(rt: Pick<Runtime, 'inventory' | 'config'>, selector: string): { ok: true; hosts: string[] } | { ok: false; refusal: Refusal } {
  const { inventory, config } = rt;
  const max = config.limits.selectorMax;
  const ast = parseSelector(selector, { max });
  if (!ast.ok) return { ok: false, refusal: refusal(ast.error) };
  const exp = expandSelector(ast.value, inventory, { max });
  if (!exp.ok) return { ok: false, refusal: refusal(exp.error) };
  if (exp.value.unknown.length) return { ok: false, refusal: refusal(`${unknownHostsSentence(exp.value.unknown, inventory)} Nothing was started.`) };
  if (!exp.value.hosts.length) return { ok: false, refusal: refusal(`"${selector}" leaves no hosts once the exclusions are applied.`) };
  return { ok: true, hosts: exp.value.hosts };
}

export async function resolveHosts(ctx: CommandContext, selector: string): Promise<string[] | null> {
  if (ctx.selection?.selector === selector) return ctx.selection.hosts;
  const sel = selectHosts(ctx.deps.rt, selector);
  if (sel.ok) return sel.hosts;
  await ctx.refuse(sel.refusal);
  return null;
}

/** "12 hosts: hyp01…hyp12" */
export function selectionLine(hosts: string[]): string {
  return `${hosts.length} host${hosts.length === 1 ? '' : 's'}: ${compressNames(hosts)}`;
}
