/**
 * The worker half of Ferry: runs every job of the process's wiring (src/ferry.ts). Any number of workers on any
 * number of machines share one Redis; the per-host fan-out is bounded globally. Shutdown
 * waits for running steps to finish (BullMQ's close), so no step is abandoned half-done.
 */
import { DelayedError, QueueEvents, Worker, type Job, type Queue } from 'bullmq';
import type { Deps } from './context.js';
import { QUEUE_NAMES, type QueueName } from './queues.js';
import { giveUp, isLastAttempt } from './give-up.js';
import { withLogContext } from '../log-context.js';
import { isFencedOut, withFence } from './fence.js';
import { checkEpoch, lostSentence } from './epoch.js';
import type { Operation } from './operations.js';
import { message } from '../chat/messages.js';

const MAX_STALLED = 2;
/** BullMQ's reason for a job failed past maxStalledCount. */
const STALLED_OUT = /stalled more than allowable limit/;

/** A job BullMQ failed because its workers kept dying: one process reports it (giveUp). */
async function stalledOut(deps: Deps, queue: Queue, jobId: string): Promise<void> {
  const job = await queue.getJob(jobId);
  if (!job) return;
  const first = await deps.rt.redis.set(deps.rt.key('job', queue.name, jobId, 'stalled-out'), '1', 'EX', 7 * 86_400, 'NX');
  if (!first) return;
  await giveUp(deps, job, new Error(`its worker stopped (killed or crashed) while running it, more than ${MAX_STALLED} times`));
}

export interface WorkerSet {
  workers: Worker[];
  close(): Promise<void>;
  /**
   * SIGTERM: stop taking jobs and let running steps finish within graceMs. Each operation whose
   * step is still running then hears in its thread that Ferry is restarting and the operation
   * will resume (its job is picked up by another worker once this process has gone).
   * Returns the operations handed over.
   */
  shutdown(graceMs: number): Promise<Operation[]>;
}

/**
 * Redis answered again after an outage: each running operation's thread hears at once that it
 * goes on (instead of silence until the step is picked up again). One process says it per
 * operation (a short claim in Redis), whichever worker noticed first.
 */
export async function tellResumed(deps: Deps, downMs: number): Promise<void> {
  const { rt } = deps;
  const ops = await deps.ops.active();
  const secs = Math.max(1, Math.round(downMs / 1000));
  await Promise.all(
    ops
      .filter((op) => op.status === 'running')
      .map(async (op) => {
        if (!(await rt.redis.set(rt.key('redis-back', op.id), '1', 'PX', 60_000, 'NX'))) return;
        await deps.outbox.post(op.conv, message(`Ferry could not reach its Redis for ${secs} s; ${op.title} (job ${op.id}) is resuming now from where it stopped. Nothing done so far is repeated.`));
      }),
  ).catch((e: unknown) => rt.log.error({ err: e instanceof Error ? e.message : String(e) }, 'could not tell running operations that Redis is back'));
}

export async function startWorkers(
  deps: Deps,
  // lockDurationMs / stalledIntervalMs: how soon a job of a dead worker is re-run (tests shorten them).
  opts: { queues?: readonly QueueName[]; lockDurationMs?: number; stalledIntervalMs?: number; maxStalledCount?: number } = {},
): Promise<WorkerSet> {
  const { rt } = deps;
  await checkEpoch(rt);
  // Operations with a step running in this process, for the thread to hear of a Redis that lost its data.
  const running = new Map<string, Operation>();
  // The same steps' jobs with their lock tokens, for a shutdown to hand them back to the queue.
  const held = new Map<string, { job: Job; token: string }>();
  const told = new Set<number>();
  const tellLost = async (op: Operation): Promise<void> => {
    if (told.has(op.id)) return;
    told.add(op.id);
    await deps.outbox.post(op.conv, message(lostSentence(op.id, op.title, op.hosts))).catch((e: unknown) => rt.log.error({ opId: op.id, err: e }, 'could not tell a thread its operation was lost'));
  };
  const epochTimer = setInterval(() => {
    void checkEpoch(rt)
      .then(async ({ lost }) => {
        if (!lost) return;
        for (const op of running.values()) await tellLost(op);
      })
      .catch(() => undefined);
  }, Number(process.env.FERRY_EPOCH_CHECK_MS ?? 5000));
  epochTimer.unref();
  const concurrency: Record<QueueName, number> = {
    // Operations mostly wait on adapters; many can be in flight.
    ops: 16,
    hosts: rt.config.limits.sweepConcurrency,
    cards: 4,
    timers: 4,
  };
  // One bound for the whole fleet of workers, however many processes run.
  await deps.queues.hosts.setGlobalConcurrency(rt.config.limits.sweepConcurrency);
  // Where each queue's event stream stands before this process's workers can fail anything:
  // the event readers below start there, not at whatever is last when they first read.
  const eventsFrom = new Map<QueueName, string>();
  for (const name of opts.queues ?? QUEUE_NAMES) {
    const last = await rt.redis.xrevrange(`${rt.prefix}:bull:${name}:events`, '+', '-', 'COUNT', 1);
    eventsFrom.set(name, last[0]?.[0] ?? '0-0');
  }
  // Both the worker that failed the job and every process's event reader report it; the first wins (stalledOut).
  const reportStalledOut = (name: QueueName, jobId: string): void =>
    void stalledOut(deps, deps.queues.byName(name), jobId).catch((e: unknown) => rt.log.error({ queue: name, jobId, err: e }, 'could not report a job that stalled out'));
  const workers: Worker[] = [];
  for (const name of opts.queues ?? QUEUE_NAMES) {
    const worker = new Worker(
      name,
      async (job: Job, token?: string) => {
        const reg = deps.wiring.jobs.get(job.name);
        if (!reg) throw new Error(`no handler for job ${job.name}`);
        const log = rt.log.child({ job: job.name, jobId: job.id });
        const started = Date.now();
        const opId = (job.data as { opId?: unknown }).opId;
        const op = name === 'ops' && typeof opId === 'number' ? await deps.ops.get(opId) : null;
        if (op && job.id) running.set(job.id, op);
        if (op && job.id && token) held.set(job.id, { job, token });
        try {
          const run = () => withLogContext({ jobId: job.id, job: job.name, opId: typeof opId === 'number' ? opId : undefined }, () => reg.handler(deps, job));
          // Operation steps act only while this run holds the job's lock (see fence.ts).
          const out = name === 'ops' && token && job.id ? await withFence({ lockKey: `${rt.prefix}:bull:${name}:${job.id}:lock`, token, jobId: job.id }, run) : await run();
          if (op && !(await deps.ops.get(op.id).catch(() => op))) {
            await checkEpoch(rt).catch(() => undefined);
            await tellLost(op);
          }
          log.info({ ms: Date.now() - started }, 'job done');
          rt.metrics.jobSeconds.labels(job.name, 'done').observe((Date.now() - started) / 1000);
          return out;
        } catch (e) {
          // A job that moved itself to delayed (the removal held by pause all) has not failed.
          rt.metrics.jobSeconds.labels(job.name, e instanceof DelayedError ? 'delayed' : 'failed').observe((Date.now() - started) / 1000);
          if (e instanceof DelayedError) throw e;
          // Its record vanished under it (a Redis that lost its data): the thread hears it once; nothing to retry.
          if (op && !(await deps.ops.get(op.id).catch(() => op))) {
            log.error({ opId: op.id, err: e }, 'the operation vanished from Redis while its step ran');
            await checkEpoch(rt).catch(() => undefined);
            await tellLost(op);
            return undefined;
          }
          // Another run has this job now (its lock expired while Redis was away): it carries on; this one says nothing.
          if (isFencedOut(e)) {
            log.warn({ ms: Date.now() - started }, 'this run lost the job to another run and stopped before acting');
            throw e;
          }
          log.error({ err: e, ms: Date.now() - started, attempt: job.attemptsMade + 1 }, 'job failed');
          if (isLastAttempt(job)) await giveUp(deps, job, e).catch((g: unknown) => log.error({ err: g }, 'could not report a job that gave up'));
          throw e;
        } finally {
          if (job.id) {
            running.delete(job.id);
            held.delete(job.id);
          }
        }
      },
      {
        connection: rt.newConnection(),
        prefix: `${rt.prefix}:bull`,
        concurrency: concurrency[name],
        lockDuration: opts.lockDurationMs ?? 60_000,
        stalledInterval: opts.stalledIntervalMs ?? 15_000,
        // A job whose worker died is re-run this many times (each drain step is resumable).
        maxStalledCount: opts.maxStalledCount ?? MAX_STALLED,
      },
    );
    // BullMQ fails a job past the stall limit in whichever worker next picks it up, before the
    // processor runs: that process reports it at once. (The queue events below alone missed it
    // when a worker that had just started picked the job up before its event reader listened.)
    worker.on('failed', (job, err) => {
      if (!job?.id || !STALLED_OUT.test(err.message)) return;
      reportStalledOut(name, job.id);
    });
    // Redis unreachable is one outage (logged once by rt.redisOutage), not one line per retry.
    worker.on('error', (err) => (rt.redisOutage.isConnectionError(err) ? rt.redisOutage.failed(err) : rt.log.error({ queue: name, err: err.message }, 'worker error')));
    workers.push(worker);
  }
  // Past the stall limit BullMQ fails the job itself: the processor above never sees it, so
  // its operation would stay "running" with nobody told. Besides the worker's own event above,
  // every process listens, for a worker that died between failing the job and reporting it.
  const events: QueueEvents[] = [];
  for (const name of opts.queues ?? QUEUE_NAMES) {
    const qe = new QueueEvents(name, { connection: rt.newConnection(), prefix: `${rt.prefix}:bull`, lastEventId: eventsFrom.get(name) });
    qe.on('failed', ({ jobId, failedReason }) => {
      if (!STALLED_OUT.test(failedReason)) return;
      reportStalledOut(name, jobId);
    });
    qe.on('error', (err) => (rt.redisOutage.isConnectionError(err) ? rt.redisOutage.failed(err) : rt.log.error({ queue: name, err: err.message }, 'queue events error')));
    events.push(qe);
  }
  await Promise.all([...workers.map((w) => w.waitUntilReady()), ...events.map((e) => e.waitUntilReady())]);
  for (const task of deps.wiring.startup) await task(deps);
  const offBack = rt.redisOutage.onBack((ms) => void tellResumed(deps, ms));
  return {
    workers,
    async close() {
      offBack();
      clearInterval(epochTimer);
      await Promise.allSettled([...workers.map((w) => w.close()), ...events.map((e) => e.close())]);
    },
    async shutdown(graceMs) {
      offBack();
      clearInterval(epochTimer);
      let timer: NodeJS.Timeout | undefined;
      const finished = await Promise.race([
        Promise.allSettled([...workers.map((w) => w.close()), ...events.map((e) => e.close())]).then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (finished) return [];
      const left = [...new Map([...running.values()].map((o) => [o.id, o])).values()];
      // Hand over: each job goes back to the queue with its lock given up (moved to delayed, due
      // now), so its fenced steps stop here before acting again and another worker takes it. Not
      // left to the stalled-job check: that counts as a worker that died, and a third deploy
      // during one long drain would make it give up. A job whose lock is gone already is left to it.
      await Promise.allSettled(
        [...running.keys()].map(async (jobId) => {
          const h = held.get(jobId);
          if (h) await h.job.moveToDelayed(Date.now(), h.token).catch(() => rt.redis.del(`${rt.prefix}:bull:ops:${jobId}:lock`));
          else await rt.redis.del(`${rt.prefix}:bull:ops:${jobId}:lock`);
        }),
      );
      rt.log.warn({ graceMs, ops: left.map((o) => o.id) }, 'shutdown: steps still running after the grace period; handing them over');
      const notices = Promise.allSettled(
        left.map((op) => deps.outbox.post(op.conv, message(`Ferry is restarting: the worker running ${op.title} (operation ${op.id}) is stopping. The operation will resume on another worker from where it stopped; nothing done so far is repeated.`))),
      );
      // Slack being slow must not hold the exit past the orchestrator's kill.
      await Promise.race([notices, new Promise((r) => setTimeout(r, 3000).unref())]);
      return left;
    },
  };
}
