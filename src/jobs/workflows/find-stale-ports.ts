/**
 * find stale ports (seed 000), as a runbook:
 *   1. fan out: child jobs of a batch of hosts each (core/batches.ts), at a global bounded
 *      concurrency: the sweep still ends at the ideal rounds, and a 10,000-host sweep enqueues
 *      a few hundred jobs, not 10,000;
 *   2. per host: read the NPIV picture, subtract ports in use and physical ports, record;
 *      an unreachable host is a result, not a failure, and the others go on;
 *   3. summary: every stale port by host (WWPN in hex as the seed prints it), its fabric, the
 *      unreachable hosts with their error, and a button that opens the removal flow.
 */
import type { Job } from 'bullmq';
import { hostFailureSentence } from '../../adapters/types.js';
import { findStalePorts, type StalePort } from '../../core/stale-ports.js';
import { compressNames } from '../../core/selectors.js';
import { batches } from '../../core/batches.js';
import { formatDuration } from '../../core/duration.js';
import { context, message, plural, section, who, type Block, type Message, type TableFile } from '../../chat/messages.js';
import { TableFileWriter } from '../table-file.js';
import type { CardRenderer, Workflow } from '../wiring.js';
import { postCardBeside, refreshCard, withCard } from '../cards.js';
import { withDeadline, withRetry } from '../retry.js';
import type { Deps } from '../context.js';
import { FINISHED, paramsOf, type Operation } from '../operations.js';
import type { Conversation } from '../../chat/conversation.js';

/** The sweep summary's "Remove N stale ports…" button (also on a drain's NPIV note). */
export const REMOVE_PORTS_ACTION = 'ferry:remove-stale-ports';

export const KIND = 'find-stale-ports';

/** A sweep's params: what it swept, for its card; a drain's lingering-port note names its drain. */
export interface SweepParams {
  /** "3 hosts: hyp01-03" (a typed sweep). */
  selection?: string;
  /** The drain whose move left the ports (a one-host sweep recorded by drain/steps.ts). */
  parent?: number;
  durationMs?: number;
}

export function sweepParams(op: Pick<Operation, 'id' | 'kind' | 'params'>): SweepParams {
  return paramsOf<SweepParams>(op, [KIND]);
}
const HOST_DEADLINE_MS = 90_000;

export type HostSweepResult = { ok: true; stale: StalePort[]; virtualPorts: number } | { ok: false; error: string };

/** Hosts per batch job at most: small enough that lanes finish together, large enough that a big sweep is a few hundred jobs. */
export const MAX_BATCH = 25;

/**
 * Start the sweep at once; the card (the command's one top-level answer) is posted beside it.
 * Each batch job carries only its hosts: nothing per host reads the whole operation record.
 */
export async function startSweep(deps: Deps, req: { conv: Conversation; requester: string; title: string; hosts: string[] }): Promise<Operation> {
  const selection = `${plural(req.hosts.length, 'host')}: ${compressNames(req.hosts)}`;
  const op = await deps.ops.create({ kind: KIND, title: req.title, requester: req.requester, conv: req.conv, hosts: req.hosts, params: { selection } satisfies SweepParams });
  const total = req.hosts.length;
  const work = deps.queues.flow.add({
    name: 'sweep',
    queueName: 'ops',
    data: { opId: op.id },
    opts: { jobId: `op-${op.id}`, attempts: 3, backoff: { type: 'exponential', delay: 1000 } },
    children: batches(req.hosts, deps.rt.config.limits.sweepConcurrency, MAX_BATCH).map((hosts, i) => ({
      name: 'sweep-host',
      queueName: 'hosts',
      data: { opId: op.id, hosts, total },
      // Infrastructure faults (Redis, a killed worker) retry; host faults are results.
      opts: { jobId: `op-${op.id}-b${i}`, attempts: 3, backoff: { type: 'exponential', delay: 1000 }, ignoreDependencyOnFailure: true, removeOnComplete: true },
    })),
  });
  postCardBeside(deps, op.id);
  await work;
  return op;
}

/** A batch of hosts, one after another (the global concurrency counts batches, so hosts in flight stay at sweepConcurrency). */
async function sweepBatch(deps: Deps, job: Job): Promise<void> {
  const data = job.data as { opId: number; hosts?: string[]; host?: string; total?: number };
  // `host`: a one-host job enqueued before batches.
  for (const host of data.hosts ?? (data.host ? [data.host] : [])) {
    if (await deps.ops.cancelRequested(data.opId)) return;
    await sweepHost(deps, data.opId, host, data.total);
  }
}

async function sweepHost(deps: Deps, opId: number, host: string, total: number | undefined): Promise<void> {
  // The first host to start marks the operation running (one read of the record per sweep).
  if (await deps.rt.redis.set(deps.ops.keyOf(opId, 'started'), String(Date.now()), 'EX', 7 * 86_400, 'NX')) {
    const running = await deps.ops.patch(opId, { status: 'running', startedAt: Date.now() });
    // The card says it is sweeping. Not posted yet: ensureCard sees the change once it is, and
    // refreshes it itself (one edit either way).
    if (running.cardRef) await refreshCard(deps, opId, { as: running });
  }
  // Idempotent: a retried batch does not count its hosts twice.
  const already = await deps.rt.redis.hexists(deps.ops.keyOf(opId, 'results'), host);
  if (already) return;
  let result: HostSweepResult;
  try {
    const adapter = deps.rt.adapters.forHost(host);
    const inv = await withDeadline(HOST_DEADLINE_MS, `sweep of ${host}`, (signal) =>
      withRetry(() => adapter.npivInventory(host, { signal }), { attempts: 2, backoffMs: 500 }),
    );
    result = { ok: true, stale: findStalePorts(inv), virtualPorts: inv.virtualPorts.length };
  } catch (e) {
    result = { ok: false, error: hostFailureSentence(host, e) };
    deps.rt.log.warn({ opId, host, err: e }, 'host could not be swept');
  }
  const fresh = await deps.rt.redis.hsetnx(deps.ops.keyOf(opId, 'results'), host, JSON.stringify(result));
  if (!fresh) return;
  const { done } = await deps.ops.incrMany(opId, result.ok ? { done: 1, stale: result.stale.length } : { done: 1, unreachable: 1 });
  // The card moves when the sweep starts (above) and at half way, then the summary's forced
  // refresh shows the end: at most three edits, so Slack calls per sweep are the same for 99
  // hosts and for 10,000 (tenths made 12 at 10,000); the half-way edit comes at about half the
  // sweep's time, so it also tells when to expect the end.
  if (!total || (2 * done! >= total && 2 * (done! - 1) < total)) await refreshCard(deps, opId);
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

/** What the summary says: counts, the first rows of each table, and the full tables as files when longer. */
export interface SweepReport {
  hosts: number;
  stale: number;
  /** Hosts with stale ports, in selector order (the removal button's selector). */
  staleHosts: string[];
  staleRows: string[][];
  staleFile: TableFile | null;
  failed: number;
  failedRows: string[][];
  failedFile: TableFile | null;
  /** Hosts without a result (their batch failed for good). */
  missing: string[];
}

/** Rows of a table the summary carries inline; past them the full table is a streamed file. */
export const SHOWN_ROWS = 60;
const STALE_COLUMNS = ['Host', 'WWPN', 'Fabric', 'HBA'];
const FAILED_COLUMNS = ['Host', 'Error'];
const staleRow = (p: StalePort) => [p.host, p.wwpn, p.fabric, p.hbaWwpn];

/** The report of results held in memory (small sweeps, tests): every row inline; the renderer attaches what is long. */
export function reportOf(op: Operation, results: Record<string, HostSweepResult>): SweepReport {
  const { stale, failed, missing } = summarize(op, results);
  return {
    hosts: op.hosts.length,
    stale: stale.length,
    staleHosts: [...new Set(stale.map((p) => p.host))],
    staleRows: stale.map(staleRow),
    staleFile: null,
    failed: failed.length,
    failedRows: failed.map((f) => [f.host, f.error]),
    failedFile: null,
    missing,
  };
}

/** Rows kept inline up to SHOWN_ROWS; past that, every row goes to a Redis CSV file a page at a time. */
class ReportTable {
  readonly shown: string[][] = [];
  private file: TableFileWriter | null = null;
  count = 0;

  constructor(private readonly open: () => TableFileWriter) {}

  async add(row: string[]): Promise<void> {
    this.count++;
    if (this.shown.length < SHOWN_ROWS) {
      this.shown.push(row);
      return;
    }
    if (!this.file) {
      this.file = this.open();
      for (const r of this.shown) await this.file.add(r);
    }
    await this.file.add(row);
  }

  close(): Promise<TableFile | null> {
    return this.file ? this.file.close() : Promise.resolve(null);
  }
}

/**
 * The report of a sweep from its results in Redis, a page of hosts at a time: memory holds a
 * page, the first rows and the names of hosts with stale ports, whatever the fleet size.
 */
export async function collectReport(deps: Deps, op: Operation, page = 500): Promise<SweepReport> {
  const { redis } = deps.rt;
  const stale = new ReportTable(() => new TableFileWriter(redis, deps.ops.keyOf(op.id, 'csv', 'stale'), STALE_COLUMNS));
  const failed = new ReportTable(() => new TableFileWriter(redis, deps.ops.keyOf(op.id, 'csv', 'failed'), FAILED_COLUMNS));
  const staleHosts: string[] = [];
  const missing: string[] = [];
  const key = deps.ops.keyOf(op.id, 'results');
  for (let i = 0; i < op.hosts.length; i += page) {
    const hosts = op.hosts.slice(i, i + page);
    const raws = await redis.hmget(key, ...hosts);
    for (const [j, raw] of raws.entries()) {
      const host = hosts[j]!;
      if (!raw) {
        missing.push(host);
        continue;
      }
      const r = JSON.parse(raw) as HostSweepResult;
      if (!r.ok) {
        await failed.add([host, r.error]);
        continue;
      }
      if (r.stale.length) staleHosts.push(host);
      for (const p of r.stale) await stale.add(staleRow(p));
    }
  }
  return {
    hosts: op.hosts.length,
    stale: stale.count,
    staleHosts,
    staleRows: stale.shown,
    staleFile: await stale.close(),
    failed: failed.count,
    failedRows: failed.shown,
    failedFile: await failed.close(),
    missing,
  };
}

export function summaryMessage(op: Operation, results: Record<string, HostSweepResult>, durationMs: number): Message {
  return reportMessage(op, reportOf(op, results), durationMs);
}

export function reportMessage(op: Operation, r: SweepReport, durationMs: number): Message {
  const swept = r.hosts - r.failed - r.missing.length;
  const headline =
    r.stale === 0
      ? `No stale ports on ${plural(swept, 'host')}${r.failed ? `; ${plural(r.failed, 'host')} could not be swept` : ''}.`
      : `${plural(r.stale, 'stale port')} on ${plural(r.staleHosts.length, 'host')} (of ${swept} swept)${r.failed ? `; ${plural(r.failed, 'host')} could not be swept` : ''}.`;
  const blocks: Block[] = [section(`*${headline}*`)];
  if (r.stale) {
    blocks.push({
      type: 'table',
      title: '*Stale ports* (virtual ports on the HBAs that no running VM uses)',
      name: 'stale-ports',
      columns: STALE_COLUMNS,
      rows: r.staleRows,
      ...(r.staleFile ? { full: r.staleFile } : {}),
    });
  }
  if (r.failed) {
    blocks.push({ type: 'table', title: '*Could not be swept* (their ports are unknown, not clean)', name: 'not-swept', columns: FAILED_COLUMNS, rows: r.failedRows, ...(r.failedFile ? { full: r.failedFile } : {}) });
  }
  if (r.missing.length) blocks.push(section(`*Not swept* (worker error, see logs): ${compressNames(r.missing)}`));
  blocks.push(context(`job ${op.id} · ${r.hosts} hosts in ${formatDuration(durationMs)} · read-only: nothing was changed`));
  if (r.stale) {
    blocks.push({
      type: 'actions',
      buttons: [
        {
          action: REMOVE_PORTS_ACTION,
          label: `Remove ${plural(r.stale, 'stale port')}…`,
          value: String(op.id),
          style: 'danger',
          command: `remove stale ports ${compressNames(r.staleHosts, 1000).replace(/…/g, '..').replace(/, /g, ',')}`,
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
  const durationMs = Date.now() - (op.startedAt ?? op.createdAt);
  const report = await collectReport(deps, op);
  // The final card counts what the results hold, as the summary does (Operations.setCounters).
  await deps.ops.setCounters(opId, { done: report.hosts - report.missing.length, stale: report.stale, unreachable: report.failed });
  const cancelled = op.status === 'cancelled' || (await deps.ops.cancelRequested(opId)) !== null;
  const status = cancelled ? 'cancelled' : report.failed || report.missing.length ? 'partial' : 'succeeded';
  const line = `${plural(report.stale, 'stale port')} on ${op.hosts.length} hosts${report.failed ? `, ${report.failed} unreachable` : ''}`;
  // Record the outcome first: the result is kept even if Slack cannot show it.
  const done = await deps.ops.patch(opId, { status, finishedAt: Date.now(), summary: line, params: { ...sweepParams(op), durationMs } satisfies SweepParams });
  // The summary goes in the card's thread; the card may still be on its way.
  const threaded = (await withCard(deps, opId)) ?? done;
  await deps.outbox.post(threaded.conv, reportMessage(done, report, durationMs));
  await refreshCard(deps, opId, { force: true });
}

const sweepCard: CardRenderer = async (deps, op) => {
  const c = await deps.ops.counters(op.id);
  const done = c.done ?? 0;
  const stale = c.stale ?? 0;
  const unreachable = c.unreachable ?? 0;
  const finished = FINISHED.includes(op.status);
  const label = `${done}/${op.hosts.length} hosts · ${plural(stale, 'stale port')}${finished ? '' : ' so far'}${unreachable ? ` · ${unreachable} unreachable` : ''}`;
  const p = sweepParams(op);
  const state = finished ? (op.status === 'cancelled' ? 'cancelled' : `done in ${formatDuration(p.durationMs ?? 0)}`) : op.status === 'queued' ? 'queued' : 'sweeping';
  const selection = p.selection ?? plural(op.hosts.length, 'host');
  return message(
    `${op.title}: ${label}`,
    section(`*Find stale ports* · job ${op.id} · ${state}\n${who(op.requester)} ${op.title} → ${selection}`),
    { type: 'progress', done, total: op.hosts.length, label },
    context(`read-only · the summary follows in this thread`),
  );
};

export const findStalePortsWorkflow: Workflow = {
  name: 'find-stale-ports',
  jobs: { 'sweep-host': { queue: 'hosts', handler: sweepBatch }, sweep: { queue: 'ops', handler: sweepParent } },
  cards: { [KIND]: sweepCard },
};
