/**
 * find stale ports (seed 000), as a runbook:
 *   1. fan out: one child job per host, at a global bounded concurrency;
 *   2. per host: read the NPIV picture, subtract ports in use and physical ports, record;
 *      an unreachable host is a result, not a failure, and the others go on;
 *   3. summary: every stale port by host (WWPN in hex as the seed prints it), its fabric, the
 *      unreachable hosts with their error, and a button that opens the removal flow.
 */
import type { Job } from 'bullmq';
import { findStalePorts, type StalePort } from '../../core/stale-ports.js';
import { compressNames } from '../../core/selectors.js';
import { formatDuration } from '../../core/duration.js';
import { context, message, plural, section, who, type Block, type Message } from '../../chat/messages.js';
import type { CardRenderer, Workflow } from '../wiring.js';
import { postCardBeside, refreshCard, withCard } from '../cards.js';
import { errorText, withDeadline, withRetry } from '../retry.js';
import type { Deps } from '../context.js';
import { FINISHED, type Operation } from '../operations.js';
import type { Conversation } from '../../chat/conversation.js';

/** The sweep summary's "Remove N stale ports…" button (also on a drain's NPIV note). */
export const REMOVE_PORTS_ACTION = 'ferry:remove-stale-ports';

export const KIND = 'find-stale-ports';
const HOST_DEADLINE_MS = 90_000;

export type HostSweepResult = { ok: true; stale: StalePort[]; virtualPorts: number } | { ok: false; error: string };

/**
 * Start the sweep at once; the card (the command's one top-level answer) is posted beside it.
 * Each host job carries only its host: nothing per host reads the whole operation record.
 */
export async function startSweep(deps: Deps, req: { conv: Conversation; requester: string; title: string; hosts: string[] }): Promise<Operation> {
  const selection = `${plural(req.hosts.length, 'host')}: ${compressNames(req.hosts)}`;
  const op = await deps.ops.create({ kind: KIND, title: req.title, requester: req.requester, conv: req.conv, hosts: req.hosts, params: { selection } });
  const work = deps.queues.flow.add({
    name: 'sweep',
    queueName: 'ops',
    data: { opId: op.id },
    opts: { jobId: `op-${op.id}`, attempts: 3, backoff: { type: 'exponential', delay: 1000 } },
    children: req.hosts.map((host) => ({
      name: 'sweep-host',
      queueName: 'hosts',
      data: { opId: op.id, host, total: req.hosts.length },
      // Infrastructure faults (Redis, a killed worker) retry; host faults are results.
      opts: { jobId: `op-${op.id}-${host}`, attempts: 3, backoff: { type: 'exponential', delay: 1000 }, ignoreDependencyOnFailure: true, removeOnComplete: true },
    })),
  });
  postCardBeside(deps, op.id);
  await work;
  return op;
}

async function sweepHost(deps: Deps, job: Job): Promise<void> {
  const { opId, host, total } = job.data as { opId: number; host: string; total?: number };
  if (await deps.ops.cancelRequested(opId)) return;
  // The first host to start marks the operation running (one read of the record per sweep).
  if (await deps.rt.redis.set(deps.rt.key('op', opId, 'started'), String(Date.now()), 'EX', 7 * 86_400, 'NX')) {
    await deps.ops.patch(opId, { status: 'running', startedAt: Date.now() });
  }
  // Idempotent: a retried child does not count its host twice.
  const already = await deps.rt.redis.hexists(deps.rt.key('op', opId, 'results'), host);
  if (already) return;
  let result: HostSweepResult;
  try {
    const adapter = deps.rt.adapters.forHost(host);
    const inv = await withDeadline(HOST_DEADLINE_MS, `sweep of ${host}`, (signal) =>
      withRetry(() => adapter.npivInventory(host, { signal }), { attempts: 2, backoffMs: 500 }),
    );
    result = { ok: true, stale: findStalePorts(inv), virtualPorts: inv.virtualPorts.length };
  } catch (e) {
    result = { ok: false, error: errorText(e) };
    deps.rt.log.warn({ opId, host, err: errorText(e) }, 'host could not be swept');
  }
  const fresh = await deps.rt.redis.hsetnx(deps.rt.key('op', opId, 'results'), host, JSON.stringify(result));
  if (!fresh) return;
  const { done } = await deps.ops.incrMany(opId, result.ok ? { done: 1, stale: result.stale.length } : { done: 1, unreachable: 1 });
  // The card moves in tenths (and at most once a second): Slack calls per sweep do not grow
  // with the fleet or with its duration. The summary's forced refresh shows the end.
  const step = (n: number) => Math.floor((n * 10) / (total ?? 1));
  if (!total || done === 1 || step(done!) !== step(done! - 1)) await refreshCard(deps, opId);
}

export function summarize(op: Operation, results: Record<string, HostSweepResult>): { stale: StalePort[]; failed: { host: string; error: string }[]; missing: string[] } {
  const stale: StalePort[] = [];
  const failed: { host: string; error: string }[] = [];
  const missing: string[] = [];
  for (const host of op.hosts) {
    const r = results[host];
    if (!r) missing.push(host);
    else if (r.ok) stale.push(...r.stale);
    else failed.push({ host, error: r.error });
  }
  return { stale, failed, missing };
}

export function summaryMessage(op: Operation, results: Record<string, HostSweepResult>, durationMs: number): Message {
  const { stale, failed, missing } = summarize(op, results);
  const staleHosts = [...new Set(stale.map((p) => p.host))];
  const swept = op.hosts.length - failed.length - missing.length;
  const headline =
    stale.length === 0
      ? `No stale ports on ${plural(swept, 'host')}${failed.length ? `; ${plural(failed.length, 'host')} could not be swept` : ''}.`
      : `${plural(stale.length, 'stale port')} on ${plural(staleHosts.length, 'host')} (of ${swept} swept)${failed.length ? `; ${plural(failed.length, 'host')} could not be swept` : ''}.`;
  const blocks: Block[] = [section(`*${headline}*`)];
  if (stale.length) {
    blocks.push({
      type: 'table',
      title: '*Stale ports* (virtual ports on the HBAs that no running VM uses)',
      columns: ['Host', 'WWPN', 'Fabric', 'HBA'],
      rows: stale.map((p) => [p.host, p.wwpn, p.fabric, p.hbaWwpn]),
    });
  }
  if (failed.length) {
    blocks.push({ type: 'table', title: '*Could not be swept* (their ports are unknown, not clean)', columns: ['Host', 'Error'], rows: failed.map((f) => [f.host, f.error]) });
  }
  if (missing.length) blocks.push(section(`*Not swept* (worker error, see logs): ${compressNames(missing)}`));
  blocks.push(context(`job ${op.id} · ${op.hosts.length} hosts in ${formatDuration(durationMs)} · read-only: nothing was changed`));
  if (stale.length) {
    blocks.push({
      type: 'actions',
      buttons: [
        {
          action: REMOVE_PORTS_ACTION,
          label: `Remove ${plural(stale.length, 'stale port')}…`,
          value: String(op.id),
          style: 'danger',
          command: `remove stale ports ${compressNames(staleHosts, 1000).replace(/…/g, '..').replace(/, /g, ',')}`,
        },
      ],
    });
  }
  return message(headline, ...blocks);
}

async function sweepParent(deps: Deps, job: Job): Promise<void> {
  const { opId } = job.data as { opId: number };
  const op = await deps.ops.get(opId);
  if (!op) return;
  if (op.status === 'succeeded' || op.status === 'partial') return; // already reported
  const results = await deps.ops.results<HostSweepResult>(opId);
  const durationMs = Date.now() - (op.startedAt ?? op.createdAt);
  const { stale, failed, missing } = summarize(op, results);
  const cancelled = op.status === 'cancelled' || (await deps.ops.cancelRequested(opId)) !== null;
  const status = cancelled ? 'cancelled' : failed.length || missing.length ? 'partial' : 'succeeded';
  const line = `${plural(stale.length, 'stale port')} on ${op.hosts.length} hosts${failed.length ? `, ${failed.length} unreachable` : ''}`;
  // Record the outcome first: the result is kept even if Slack cannot show it.
  const done = await deps.ops.patch(opId, { status, finishedAt: Date.now(), summary: line, params: { ...op.params, durationMs } });
  // The summary goes in the card's thread; the card may still be on its way.
  const threaded = (await withCard(deps, opId)) ?? done;
  await deps.outbox.post(threaded.conv, summaryMessage(done, results, durationMs));
  await refreshCard(deps, opId, { force: true });
}

const sweepCard: CardRenderer = async (deps, op) => {
  const c = await deps.ops.counters(op.id);
  const done = c.done ?? 0;
  const stale = c.stale ?? 0;
  const unreachable = c.unreachable ?? 0;
  const finished = FINISHED.includes(op.status);
  const label = `${done}/${op.hosts.length} hosts · ${plural(stale, 'stale port')}${finished ? '' : ' so far'}${unreachable ? ` · ${unreachable} unreachable` : ''}`;
  const state = finished ? (op.status === 'cancelled' ? 'cancelled' : `done in ${formatDuration(Number(op.params.durationMs ?? 0))}`) : op.status === 'queued' ? 'queued' : 'sweeping';
  const selection = typeof op.params.selection === 'string' ? op.params.selection : plural(op.hosts.length, 'host');
  return message(
    `${op.title}: ${label}`,
    section(`*Find stale ports* · job ${op.id} · ${state}\n${who(op.requester)} ${op.title} → ${selection}`),
    { type: 'progress', done, total: op.hosts.length, label },
    context(`read-only · the summary follows in this thread`),
  );
};

export const findStalePortsWorkflow: Workflow = {
  name: 'find-stale-ports',
  jobs: { 'sweep-host': { queue: 'hosts', handler: sweepHost }, sweep: { queue: 'ops', handler: sweepParent } },
  cards: { [KIND]: sweepCard },
};
