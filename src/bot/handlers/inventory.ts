/** hosts, status, find stale ports: read-only, each answered in the channel and worked by a job. */
import type { HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { message } from '../../chat/messages.js';
import { resolveHosts, selectionLine } from './selection.js';
import { startView } from '../../jobs/workflows/inventory-view.js';
import { startSweep } from '../../jobs/workflows/find-stale-ports.js';
import { suggest } from '../../core/suggest.js';
import { refusal } from '../../core/refusal.js';

const hostsCommand: HandlerOf<'hosts'> = async (ctx, cmd) => {
  const hosts = await resolveHosts(ctx, cmd.selector);
  if (!hosts) return;
  const conv = await ctx.answer(message(selectionLine(hosts)));
  await startView(ctx.deps, { conv, requester: ctx.user, title: `hosts ${cmd.selector}`, hosts });
};

const statusCommand: HandlerOf<'status'> = async (ctx, cmd) => {
  const { inventory } = ctx.deps.rt;
  const lower = cmd.target.toLowerCase();
  const host = inventory.hosts.find((h) => h.toLowerCase() === lower);
  // A near miss of a host name is more likely a typo than a VM name.
  if (!host && /^[a-z]+\d+$/i.test(cmd.target)) {
    const hint = suggest(cmd.target, inventory.hosts, 1);
    if (hint && !cmd.target.match(/^(web|app|db|cache|mq|api|build|ldap|mail|log)/i)) {
      await ctx.refuse(refusal(`${cmd.target} is not in the inventory; did you mean ${hint}?`));
      return;
    }
  }
  const conv = await ctx.answer(message(`status of ${host ?? cmd.target}`));
  await startView(ctx.deps, { conv, requester: ctx.user, title: `status ${host ?? cmd.target}`, status: host ?? cmd.target });
};

const findStalePortsCommand: HandlerOf<'find-stale-ports'> = async (ctx, cmd) => {
  const hosts = await resolveHosts(ctx, cmd.selector);
  if (!hosts) return;
  // The card is the answer, posted beside the work; nothing is posted before the sweep starts.
  await ctx.accepted();
  await startSweep(ctx.deps, { conv: ctx.conv, requester: ctx.user, title: `find stale ports ${cmd.selector}`, hosts });
};

export const inventoryChat: ChatWorkflow = { name: 'inventory', commands: { hosts: hostsCommand, status: statusCommand, 'find-stale-ports': findStalePortsCommand } };
