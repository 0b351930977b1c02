/**
 * The worker half of Ferry: runs every registered job handler. Any number of workers on any
 * number of machines share one Redis; the per-host fan-out is bounded globally. Shutdown
 * waits for running steps to finish (BullMQ's close), so no step is abandoned half-done.
 */
import { DelayedError, Worker, type Job } from 'bullmq';
import type { Deps } from './context.js';
import { handlerFor, startupTasks } from './registry.js';
import { QUEUE_NAMES, type QueueName } from './queues.js';
import { cardJob } from './cards.js';
import { giveUp, isLastAttempt } from './give-up.js';
import { withLogContext } from '../log-context.js';
import { registerJob } from './registry.js';
import './workflows/index.js';

registerJob('card', 'cards', (deps, job) => cardJob(deps, (job.data as { opId: number }).opId));

export interface WorkerSet {
  workers: Worker[];
  close(): Promise<void>;
}

export async function startWorkers(
  deps: Deps,
  // lockDurationMs / stalledIntervalMs: how soon a job of a dead worker is re-run (tests shorten them).
  opts: { queues?: readonly QueueName[]; lockDurationMs?: number; stalledIntervalMs?: number } = {},
): Promise<WorkerSet> {
  const { rt } = deps;
  const concurrency: Record<QueueName, number> = {
    // Operations mostly wait on adapters; many can be in flight.
    ops: 16,
    hosts: rt.config.limits.sweepConcurrency,
    cards: 4,
    timers: 4,
  };
  // One bound for the whole fleet of workers, however many processes run.
  await deps.queues.hosts.setGlobalConcurrency(rt.config.limits.sweepConcurrency);
  const workers: Worker[] = [];
  for (const name of opts.queues ?? QUEUE_NAMES) {
    const worker = new Worker(
      name,
      async (job: Job) => {
        const reg = handlerFor(job.name);
        if (!reg) throw new Error(`no handler for job ${job.name}`);
        const log = rt.log.child({ job: job.name, jobId: job.id });
        const started = Date.now();
        try {
          const opId = (job.data as { opId?: unknown }).opId;
          const out = await withLogContext({ jobId: job.id, job: job.name, opId: typeof opId === 'number' ? opId : undefined }, () => reg.handler(deps, job));
          log.info({ ms: Date.now() - started }, 'job done');
          return out;
        } catch (e) {
          // A job that moved itself to delayed (the removal held by pause all) has not failed.
          if (e instanceof DelayedError) throw e;
          log.error({ err: e instanceof Error ? e.message : String(e), ms: Date.now() - started, attempt: job.attemptsMade + 1 }, 'job failed');
          if (isLastAttempt(job)) await giveUp(deps, job, e).catch((g: unknown) => log.error({ err: String(g) }, 'could not report a job that gave up'));
          throw e;
        }
      },
      { connection: rt.newConnection(), prefix: `${rt.prefix}:bull`, concurrency: concurrency[name], lockDuration: opts.lockDurationMs ?? 60_000, stalledInterval: opts.stalledIntervalMs ?? 15_000 },
    );
    worker.on('error', (err) => rt.log.error({ queue: name, err: err.message }, 'worker error'));
    workers.push(worker);
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  for (const task of startupTasks()) await task(deps);
  return {
    workers,
    async close() {
      await Promise.allSettled(workers.map((w) => w.close()));
    },
  };
}
