/**
 * remove stale ports <selector> [<wwpn>…], and the "Remove N stale ports…" button on a sweep
 * summary: both build a frozen plan and post the approval card in the thread. Nothing is
 * removed here; the plan waits for a second person (src/approvals/service.ts).
 *
 * The command reads the hosts again (seed 000: always run the get first) at bounded
 * concurrency; named WWPNs must be stale on those hosts or the whole command is refused,
 * naming them. The button reuses the sweep's recorded results: the removal job re-checks
 * every port just before removing it anyway.
 */
import type { CommandContext, HandlerOf } from '../commands.js';
import { clickAction } from '../actions.js';
import type { ChatWorkflow } from '../router.js';
import { message, plural, section, who } from '../../chat/messages.js';
import { resolveHosts, selectionLine } from './selection.js';
import { findStalePorts } from '../../core/stale-ports.js';
import { pSettle } from '../../core/pmap.js';
import { compressNames } from '../../core/selectors.js';
import { withDeadline } from '../../jobs/retry.js';
import { REMOVE_PORTS_ACTION, KIND as SWEEP_KIND, summarize, type HostSweepResult } from '../../jobs/workflows/find-stale-ports.js';
import { FINISHED } from '../../jobs/operations.js';
import { audit } from '../../audit/audit.js';
import { approvalStore } from '../../approvals/service.js';
import { requestRemoval } from '../../jobs/workflows/remove-stale-ports.js';
import { removalHeadline, type PlannedPort } from '../../approvals/cards.js';
import { hostFailureSentence, type NpivInventory } from '../../adapters/types.js';
import { refusal } from '../../core/refusal.js';

const HOST_DEADLINE_MS = 60_000;

/** Why a named WWPN is not removable on these hosts, in words. */
function notStaleReason(wwpn: string, invs: NpivInventory[]): string {
  for (const inv of invs) {
    if (inv.hbas.some((h) => h.wwpn === wwpn)) return `${wwpn} is a physical HBA port of ${inv.host}`;
    if (inv.virtualPorts.some((p) => p.wwpn === wwpn)) {
      const owner = inv.endpointOwners?.[wwpn];
      return `${wwpn} is in use on ${inv.host}${owner ? ` by VM ${owner}` : ''}`;
    }
  }
  return `${wwpn} is not a virtual port on ${compressNames(invs.map((i) => i.host))}`;
}

function toPlan(ports: { host: string; wwpn: string; fabric: string; hbaWwpn: string }[]): PlannedPort[] {
  return ports.map((p) => ({ host: p.host, wwpn: p.wwpn, fabric: p.fabric, hba: p.hbaWwpn }));
}

const removeStalePortsCommand: HandlerOf<'remove-stale-ports'> = async (ctx: CommandContext, cmd) => {
  const hosts = await resolveHosts(ctx, cmd.selector);
  if (!hosts) return;
  const { rt } = ctx.deps;
  const reads = await pSettle(hosts, rt.config.limits.sweepConcurrency, (host) =>
    withDeadline(HOST_DEADLINE_MS, `read of ${host}`, (signal) => rt.adapters.forHost(host).npivInventory(host, { signal })),
  );
  const invs: NpivInventory[] = [];
  const unreachable: string[] = [];
  reads.forEach((r, i) => {
    if (r.ok) invs.push(r.value);
    else unreachable.push(hostFailureSentence(hosts[i]!, r.error));
  });
  const stale = invs.flatMap((inv) => findStalePorts(inv));
  let ports = stale;
  if (cmd.wwpns.length) {
    const wanted = [...new Set(cmd.wwpns)];
    const refused = wanted.filter((w) => !stale.some((p) => p.wwpn === w));
    if (refused.length) {
      const why = refused.map((w) => notStaleReason(w, invs)).join('; ');
      const also = unreachable.length ? ` (not reached: ${unreachable.join(', ')})` : '';
      await ctx.refuse(refusal(`Not stale, so not removable: ${why}${also}. Nothing was planned.`));
      return;
    }
    ports = stale.filter((p) => wanted.includes(p.wwpn));
  }
  if (!ports.length) {
    const not = unreachable.length ? `; not reached: ${unreachable.join(', ')}` : '';
    await ctx.answer(message(`No stale ports on ${selectionLine(hosts)}${not}. Nothing to remove.`));
    return;
  }
  const plan = toPlan(ports);
  const lines = [`${who(ctx.user)} remove stale ports *${cmd.selector}* → read ${plural(invs.length, 'host')} just now: ${removalHeadline(plan)}. Approval needed before anything is removed.`];
  if (unreachable.length) lines.push(`Not reached, so not in the plan: ${unreachable.join(', ')}.`);
  const conv = await ctx.answer(message(lines[0]!, ...lines.map(section)));
  await requestRemoval(ctx.deps, { conv, requester: ctx.user, ports: plan, title: ctx.text });
};

/** The sweep summary's button stands for "remove stale ports" on the sweep's hosts (value: the sweep's job id). */
const removeClick = clickAction('remove-stale-ports', (value) => ({ name: 'remove-stale-ports', selector: `sweep ${value}`, wwpns: [] }), async (ctx) => {
  const { deps } = ctx;
  const sweepId = Number(ctx.value);
  const op = Number.isInteger(sweepId) && sweepId > 0 ? await deps.ops.get(sweepId) : null;
  const action = `button: remove stale ports from sweep ${ctx.value}`.slice(0, 300);
  if (!op || op.kind !== SWEEP_KIND || !FINISHED.includes(op.status)) {
    await audit(deps.rt, { actor: ctx.user, kind: 'command', action, targets: [], outcome: 'refused', detail: 'unknown or unfinished sweep' });
    await ctx.refuse(refusal(`There is no finished sweep ${ctx.value}; run find stale ports again. Nothing was planned.`));
    return;
  }
  const { stale } = summarize(op, await deps.ops.results<HostSweepResult>(op.id));
  if (!stale.length) {
    await ctx.refuse(refusal(`Sweep ${op.id} found no stale ports; nothing to remove.`));
    return;
  }
  // One request per sweep at a time: a second click points at the first (the lock covers two at once).
  const guard = deps.ops.keyOf(op.id, 'removal-request');
  if (!(await deps.rt.redis.set(`${guard}:lock`, ctx.user, 'PX', 15_000, 'NX'))) {
    await ctx.refuse(refusal(`A removal request for sweep ${op.id} is being prepared; see this thread.`));
    return;
  }
  try {
    const existing = await deps.rt.redis.get(guard);
    const rec = existing ? await approvalStore(deps).get(existing) : null;
    if (rec && (rec.request.status === 'pending' || rec.request.status === 'approved')) {
      await ctx.refuse(refusal(`Request ${existing} for this sweep is already ${rec.request.status === 'pending' ? 'waiting for approval' : 'approved'}; see its card in this thread.`));
      return;
    }
    await audit(deps.rt, { actor: ctx.user, kind: 'command', action, targets: op.hosts, opId: op.id, outcome: 'started' });
    const record = await requestRemoval(deps, { conv: ctx.conv, requester: ctx.user, ports: toPlan(stale), title: `remove stale ports (from sweep job ${op.id})` });
    await deps.rt.redis.set(guard, record.request.id, 'EX', 7 * 86_400);
  } finally {
    await deps.rt.redis.del(`${guard}:lock`);
  }
});

export const removeStalePortsChat: ChatWorkflow = {
  name: 'remove-stale-ports',
  commands: { 'remove-stale-ports': removeStalePortsCommand },
  actions: { [REMOVE_PORTS_ACTION]: removeClick },
};
