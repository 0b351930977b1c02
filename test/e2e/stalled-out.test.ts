/**
 * A job BullMQ fails past the stall limit (its workers kept dying) is failed by whichever worker
 * next picks it up, before the processor runs: a worker that has just started, the only one
 * left, picks it up at once. Its operation must still end failed and reported, not stay
 * "running" with its host locked. (Found in CI: the report hung on the process's queue-event
 * reader, which started listening after the new worker had already failed the job.)
 *
 * The job is put in the state BullMQ's stalled-job check leaves it in (moved back to wait with
 * a deferred failure, its stall count past the limit) before the workers start.
 */
import { afterEach, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { startWorkers, type WorkerSet } from '../../src/jobs/worker.js';
import { readLock } from '../../src/jobs/drain/locks.js';

let h: Harness | undefined;
let fresh: WorkerSet | undefined;
afterEach(async () => {
  await fresh?.close();
  await h?.close();
});

it('a job failed past the stall limit by a worker that has just started is reported, and its host unlocked', async () => {
  h = await makeHarness({ yaml: drainLabYaml() });
  await setHostVms(h.deps, 'hyp03', 4);
  const op = await h.planned('drain hyp03');
  // Every worker gone: the Start queues the drain's job and nobody runs it yet.
  await h.workers!.close();
  await h.run(`start ${op.id}`);
  const queue = h.deps.queues.byName('ops');
  const waiting = await h.waitFor(async () => (await queue.getWaiting()).find((j) => (j.data as { opId?: number }).opId === op.id), 'the drain job waiting');
  const jobKey = `${h.rt.prefix}:bull:ops:${waiting.id}`;
  await h.rt.redis.hset(jobKey, 'stc', '3', 'defa', 'job stalled more than allowable limit');

  fresh = await startWorkers(h.deps, { lockDurationMs: 1500, stalledIntervalMs: 500 });
  const done = await h.waitForOp(op.id, 30_000);
  expect(done.status).toBe('failed');
  await h.waitForText(new RegExp(`job ${op.id} stopped after \\d attempts? at "[\\w-]+": its worker stopped \\(killed or crashed\\) while running it, more than 2 times\\. Nothing more will run for it`));
  expect(await readLock(h.rt, 'hyp03')).toBeNull();
  // Nothing of it ran: every VM is still on hyp03.
  expect((await h.rt.adapters.forHost('hyp03').listVms('hyp03')).length).toBe(4);
});
