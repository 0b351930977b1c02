/**
 * `hosts <selector>` and `status <host|vm>`: read-only views, answered from the adapters by a
 * worker (the web process never talks to hypervisors).
 */
import type { Job } from 'bullmq';
import { pSettle } from '../../core/pmap.js';
import { errorText } from '../retry.js';
import type { Workflow } from '../wiring.js';
import { context, message, plural, section, type Block } from '../../chat/messages.js';
import type { Deps } from '../context.js';
import type { Conversation } from '../../chat/conversation.js';
import { hostFailureSentence, type HostFacts, type VmFacts } from '../../adapters/types.js';
import { formatMiB } from '../../core/prechecks.js';
import { ledgerHome } from '../drain/ledger.js';

// formatMiB, not whole GiB: a 64 MiB VM must not read "0 GiB".
const gib = (mib: number): string => formatMiB(mib);

export function vmRow(vm: VmFacts): string[] {
  const flags = [
    vm.ha ? 'HA' : 'non-HA',
    vm.vfc.length ? `vFC×${vm.vfc.length}` : '',
    vm.devices.some((d) => d.connected) ? 'device' : '',
    vm.affinity.cpu || vm.affinity.memory ? 'affinity' : '',
  ].filter(Boolean);
  return [vm.name, vm.power, gib(vm.memoryMiB), String(vm.cpus), vm.disks.map((d) => d.datastore).join(','), flags.join(' ')];
}

async function hostsView(deps: Deps, conv: Conversation, hosts: string[]): Promise<void> {
  const results = await pSettle(hosts, deps.rt.config.limits.sweepConcurrency, async (host) => {
    const adapter = deps.rt.adapters.forHost(host);
    const [facts, vms] = await Promise.all([adapter.describeHost(host), adapter.listVms(host)]);
    return { facts, vms };
  });
  const rows = results.map((r, i) => {
    const host = hosts[i]!;
    if (!r.ok) return [host, deps.rt.inventory.clusterOf[host] ?? '', '', 'unreachable', '', '', hostFailureSentence(host, r.error)];
    const { facts, vms } = r.value;
    const running = vms.filter((v) => v.power === 'running').length;
    return [
      host,
      facts.cluster,
      facts.adapter,
      facts.maintenance ? 'maintenance' : facts.cordoned ? 'cordoned' : 'ok',
      `${running}/${vms.length}`,
      `${gib(facts.memoryUsedMiB)}/${gib(facts.memoryMiB)}`,
      `${facts.cpu.vendor} ${facts.cpu.family}${facts.cpu.baseline ? ` (${facts.cpu.baseline})` : ''}`,
    ];
  });
  const down = results.filter((r) => !r.ok).length;
  const maint = results.filter((r) => r.ok && r.value.facts.maintenance).length;
  const head = `${plural(hosts.length, 'host')}${maint ? ` · ${maint} in maintenance` : ''}${down ? ` · ${down} unreachable` : ''}`;
  await deps.outbox.post(conv, message(head, section(`*${head}*`), { type: 'table', columns: ['Host', 'Cluster', 'Adapter', 'State', 'VMs running', 'Memory', 'CPU'], rows }));
}

function hostDetail(facts: HostFacts, vms: VmFacts[]): Block[] {
  return [
    section(`*${facts.name}* · cluster ${facts.cluster} · ${facts.adapter}${facts.version ? ` (${facts.version})` : ''} · ${facts.maintenance ? '*in maintenance*' : 'in service'}`),
    {
      type: 'fields',
      fields: [
        `*CPU*\n${facts.cpu.vendor} ${facts.cpu.family}${facts.cpu.baseline ? `, baseline ${facts.cpu.baseline}` : ''}`,
        `*Memory*\n${gib(facts.memoryUsedMiB)} of ${gib(facts.memoryMiB)} committed`,
        `*Datastores*\n${facts.datastores.map((d) => `${d.name}${d.shared ? '' : ' (local)'}`).join(', ') || 'none'}`,
        `*Networks*\n${facts.portGroups.map((p) => `${p.name}${p.vlan ? `/${p.vlan}` : ''}${p.internalOnly ? ' (internal)' : ''}`).join(', ') || 'none'}`,
        `*Migration network*\n${facts.migrationNetwork ? 'yes' : 'no'}`,
        `*FC HBAs*\n${facts.hbas.map((h) => h.wwpn).join(', ') || 'none'}`,
      ],
    },
    ...(facts.notes?.length ? [context(facts.notes.join(' · '))] : []),
    { type: 'table', title: `*${plural(vms.length, 'VM')}*`, columns: ['VM', 'Power', 'Memory', 'vCPU', 'Datastores', 'Flags'], rows: vms.map(vmRow) },
  ];
}

async function statusView(deps: Deps, conv: Conversation, target: string): Promise<void> {
  const { rt } = deps;
  if (rt.inventory.clusterOf[target]) {
    const adapter = rt.adapters.forHost(target);
    try {
      const [facts, vms] = await Promise.all([adapter.describeHost(target), adapter.listVms(target)]);
      await deps.outbox.post(conv, message(`${target}: ${facts.maintenance ? 'in maintenance' : 'in service'}, ${plural(vms.length, 'VM')}`, ...hostDetail(facts, vms)));
    } catch (e) {
      await deps.outbox.post(conv, message(`${hostFailureSentence(target, e)}.`));
    }
    return;
  }
  const found = await pSettle(Object.keys(rt.inventory.clusters), 4, (c) => rt.adapters.forCluster(c).findVm(target));
  const vm = found.find((f) => f.ok && f.value)?.ok ? (found.find((f) => f.ok && f.value) as { ok: true; value: VmFacts }).value : null;
  if (!vm) {
    const errors = found.filter((f) => !f.ok).length;
    await deps.outbox.post(conv, message(`${target} is neither a host in the inventory nor a VM Ferry can find${errors ? ` (${plural(errors, 'cluster')} did not answer)` : ''}.`));
    return;
  }
  // An open drain ledger says where it belongs while its home host is drained.
  const home = await ledgerHome(rt, rt.inventory.clusters[rt.inventory.clusterOf[vm.host] ?? ''] ?? [], vm.id);
  await deps.outbox.post(
    conv,
    message(
      `${vm.name} is ${vm.power} on ${vm.host}`,
      section(`*${vm.name}* is ${vm.power} on *${vm.host}*${home && home.home !== vm.host ? ` (home: ${home.home}, drained by job ${home.opId}; restore ${home.home} brings it back)` : ''}`),
      { type: 'table', columns: ['VM', 'Power', 'Memory', 'vCPU', 'Datastores', 'Flags'], rows: [vmRow(vm)] },
      context(
        [
          `networks: ${vm.networks.map((n) => n.portGroup).join(', ') || 'none'}`,
          vm.vfc.length ? `virtual FC: ${vm.vfc.map((a) => `${a.name} ${a.wwpns.join('/')}`).join('; ')}` : '',
          vm.devices.length ? `devices: ${vm.devices.map((d) => `${d.kind}${d.connected ? ' (connected)' : ''}${d.backing ? ` ${d.backing}` : ''}`).join(', ')}` : '',
        ]
          .filter(Boolean)
          .join(' · '),
      ),
    ),
  );
}

export const VIEW_KIND = 'view';

/** A view keeps no params: what it shows travels in its one job's data. */
export type ViewParams = Record<string, never>;

/** Start a view: an operation record (so `jobs` and the console see it) and its job. */
export async function startView(deps: Deps, req: { conv: Conversation; requester: string; title: string; hosts?: string[]; status?: string }): Promise<void> {
  const op = await deps.ops.create({ kind: VIEW_KIND, title: req.title, requester: req.requester, conv: req.conv, hosts: req.hosts ?? [], params: {} satisfies ViewParams });
  await deps.queues.ops.add('inventory-view', { opId: op.id, conv: req.conv, hosts: req.hosts, status: req.status }, { jobId: `op-${op.id}`, removeOnComplete: 100, removeOnFail: 100 });
}

async function viewJob(deps: Deps, job: Job): Promise<void> {
  const data = job.data as { opId: number; conv: Conversation; hosts?: string[]; status?: string };
  await deps.ops.patch(data.opId, { status: 'running', startedAt: Date.now() });
  try {
    if (data.hosts) await hostsView(deps, data.conv, data.hosts);
    else if (data.status) await statusView(deps, data.conv, data.status);
    await deps.ops.patch(data.opId, { status: 'succeeded', finishedAt: Date.now() });
  } catch (e) {
    await deps.ops.patch(data.opId, { status: 'failed', finishedAt: Date.now(), summary: errorText(e) });
    await deps.outbox.post(data.conv, message(`Could not read the inventory: ${errorText(e)}`));
  }
}

export const inventoryViewWorkflow: Workflow = { name: 'inventory-view', jobs: { 'inventory-view': { queue: 'ops', handler: viewJob } } };
