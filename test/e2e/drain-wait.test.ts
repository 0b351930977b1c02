/**
 * A plan waiting for Start costs one delayed timer job, run at its expiry (not a 1 Hz re-queue,
 * ~86,400 jobs a day per held drain); a typed cancel ends the wait at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import type { Job } from 'bullmq';
import { readLock } from '../../src/jobs/drain/locks.js';
import { decide } from '../../src/jobs/drain/control.js';
import { OP_KEY_PARTS, type Operation } from '../../src/jobs/operations.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function planned(h: Harness, line: string): Promise<Operation> {
  await h.run(line);
  const first = await h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'an operation');
  return h.waitFor(async () => {
    const op = await h.deps.ops.get(first.id);
    return op && op.params.stage === 'awaiting-start' && op.status === 'waiting' ? op : undefined;
  }, `job ${first.id} to wait for Start`);
}

async function watches(h: Harness, opId: number): Promise<{ runsAt: number }[]> {
  const jobs = await h.deps.queues.timers.getJobs(['delayed', 'wait', 'active', 'completed']);
  return jobs.filter((j) => j.name === 'op-watch' && (j.data as { opId: number }).opId === opId).map((j) => ({ runsAt: j.timestamp + (j.opts.delay ?? 0) }));
}

const withExpiry = (expiry: string): string => `${drainLabYaml()}approvals:\n  drain:\n    approvals: 0\n    expiry: ${expiry}\n`;

describe('a plan waiting for Start', () => {
  it('arms one watch, delayed to the plan expiry; a typed cancel ends the wait without it', async () => {
    h = await makeHarness({ yaml: withExpiry('30m') });
    await setHostVms(h.deps, 'hyp03', 2);
    const op = await planned(h, 'drain hyp03');
    const w = await h.waitFor(async () => ((await watches(h!, op.id)).length ? watches(h!, op.id) : undefined), 'the watch job');
    expect(w).toHaveLength(1);
    const expiresAt = Number(op.params.waitingSince) + 30 * 60_000;
    expect(Math.abs(w[0]!.runsAt - expiresAt)).toBeLessThan(60_000);

    await h.run(`cancel ${op.id}`);
    expect((await h.waitForOp(op.id)).status).toBe('cancelled');
    await h.waitForText('Nothing was moved');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    // Still the one watch: nothing re-queued while it waited.
    expect(await watches(h, op.id)).toHaveLength(1);
  });

  it('a typed cancel racing the watch and the catch-up scan is said once in the thread', async () => {
    h = await makeHarness({ yaml: withExpiry('30m') });
    await setHostVms(h.deps, 'hyp03', 2);
    const op = await planned(h, 'drain hyp03');
    const watch = h.deps.wiring.jobs.get('op-watch')!.handler;
    // A cancel whose process stopped after raising the flag leaves it for the watch and the
    // scan to finish; a second cancel typed meanwhile, and both of those, run at once.
    await h.deps.ops.requestCancel(op.id, 'alice');
    const refusals = await Promise.all([
      decide(h.deps, op.id, 'alice', 'cancel', undefined),
      decide(h.deps, op.id, 'alice', 'cancel', undefined),
      watch(h.deps, { data: { opId: op.id } } as Job),
      ...h.deps.wiring.scan.map((scan) => scan(h!.deps)),
    ]);
    expect(refusals.slice(0, 2)).toEqual([null, null]);
    expect((await h.waitForOp(op.id)).status).toBe('cancelled');
    await h.waitForText('Nothing was moved');
    // Everything said about the job has arrived once its card shows the end.
    await h.waitFor(async () => (/cancelled/.test(h!.transcript()) ? true : undefined), 'the card to end');
    expect(h.transcript().match(/cancelled by @alice\. Nothing was moved/g)).toHaveLength(1);
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });

  it('ends at its expiry through that one delayed job', async () => {
    h = await makeHarness({ yaml: withExpiry('2s') });
    await setHostVms(h.deps, 'hyp03', 2);
    const op = await planned(h, 'drain hyp03');
    const ended = await h.waitForOp(op.id);
    expect(ended.status).toBe('cancelled');
    await h.waitForText('the plan expired before anyone started it');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });
});

describe('the operation store', () => {
  it('owns every key a drain leaves under its operation', async () => {
    h = await makeHarness({ yaml: withExpiry('30m') });
    await setHostVms(h.deps, 'hyp03', 2);
    const op = await planned(h, 'drain hyp03');
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id)).status).toBe('succeeded');
    const keys = await h.rt.redis.keys(`${h.rt.prefix}:op:${op.id}:*`);
    expect(keys.length).toBeGreaterThan(0);
    const parts = keys.map((k) => k.slice(`${h!.rt.prefix}:op:${op.id}:`.length).split(':')[0]!);
    expect(parts.filter((p) => !(OP_KEY_PARTS as readonly string[]).includes(p))).toEqual([]);
  });
});
