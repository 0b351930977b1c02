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
export function selectHosts(rt: Pick<Runtime, 'inventory' | 'config'>, selector: string): { refused: false; hosts: string[] } | Refusal {
  const { inventory, config } = rt;
  const max = config.limits.selectorMax;
  const ast = parseSelector(selector, { max });
  if (!ast.ok) return refusal(ast.error, 'bad-selector');
  const exp = expandSelector(ast.value, inventory, { max });
  if (!exp.ok) return refusal(exp.error, 'bad-selector');
  if (exp.value.unknown.length) return refusal(`${unknownHostsSentence(exp.value.unknown, inventory)} Nothing was started.`, 'unknown-hosts');
  if (!exp.value.hosts.length) return refusal(`"${selector}" leaves no hosts once the exclusions are applied.`, 'no-hosts');
  return { refused: false, hosts: exp.value.hosts };
}

export async function resolveHosts(ctx: CommandContext, selector: string): Promise<string[] | null> {
  if (ctx.selection?.selector === selector) return ctx.selection.hosts;
  const sel = selectHosts(ctx.deps.rt, selector);
  if (!sel.refused) return sel.hosts;
  await ctx.refuse(sel);
  return null;
}

/** "12 hosts: hyp01…hyp12" */
export function selectionLine(hosts: string[]): string {
  return `${hosts.length} host${hosts.length === 1 ? '' : 's'}: ${compressNames(hosts)}`;
}
