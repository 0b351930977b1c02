/** Selector text -> inventory hosts, or one clear refusal. */
import { compressNames, parseSelector, expandSelector, unknownHostsSentence } from '../../core/selectors.js';
import type { CommandContext } from '../commands.js';
import { refusal } from '../../core/refusal.js';

export async function resolveHosts(ctx: CommandContext, selector: string): Promise<string[] | null> {
  const { inventory, config } = ctx.deps.rt;
  const max = config.limits.selectorMax;
  const ast = parseSelector(selector, { max });
  if (!ast.ok) {
    await ctx.refuse(refusal(ast.error));
    return null;
  }
  const exp = expandSelector(ast.value, inventory, { max });
  if (!exp.ok) {
    await ctx.refuse(refusal(exp.error));
    return null;
  }
  if (exp.value.unknown.length) {
    await ctx.refuse(refusal(`${unknownHostsSentence(exp.value.unknown, inventory)} Nothing was started.`));
    return null;
  }
  if (!exp.value.hosts.length) {
    await ctx.refuse(refusal(`"${selector}" leaves no hosts once the exclusions are applied.`));
    return null;
  }
  return exp.value.hosts;
}

/** "12 hosts: hyp01…hyp12" */
export function selectionLine(hosts: string[]): string {
  return `${hosts.length} host${hosts.length === 1 ? '' : 's'}: ${compressNames(hosts)}`;
}
