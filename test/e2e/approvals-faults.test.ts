/**
 * Removal jobs under faults the workflow does not expect: an operation must never stay
 * "running" for ever, and a removal held by the kill switch is not given up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { ApprovalStore } from '../../src/approvals/store.js';

const open: Harness[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((h) => h.close()));
});

async function harness(): Promise<Harness> {
  const h = await makeHarness();
  open.push(h);
  return h;
}

async function latest(h: Harness) {
  const id = (await h.rt.redis.get(h.rt.key('approval', 'seq')))!;
  return { id, store: new ApprovalStore(h.rt) };
}

describe('removal job faults', () => {
  it('a removal job that runs out of attempts ends failed and says so (not "running" for ever)', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const { id, store } = await latest(h);
    h.deps.ops.cancelRequested = async () => {
      throw new Error('redis went away');
    };
    await h.run(`approve ${id}`, 'bob');
    const opId = (await store.get(id))!.meta.opId!;
    const op = await h.waitFor(async () => {
      const o = await h.deps.ops.get(opId);
      return o && o.status !== 'running' && o.status !== 'queued' ? o : undefined;
    }, 'the removal to end', 20_000);
    expect(op.status).toBe('failed');
    await h.waitFor(async () => h.transcript().includes(`job ${opId} stopped after 3 attempts`), 'the stop notice');
  }, 30_000);
});
