/**
 * Removal jobs under faults the workflow does not expect: an operation must never stay
 * "running" for ever, and a removal held by the kill switch is not given up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { setPause, clearPause } from '../../src/approvals/kill-switch.js';
import { queryAudit } from '../../src/audit/audit.js';
import type { PlannedPort } from '../../src/approvals/cards.js';

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

  it('a removal held by pause all on its last attempt is not given up: it finishes after resume all', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const { id, store } = await latest(h);
    const plan = (await store.get<PlannedPort[]>(id))!.request.plan;
    const real = h.deps.ops.cancelRequested.bind(h.deps.ops);
    let calls = 0;
    h.deps.ops.cancelRequested = async (opId: number) => {
      calls++;
      if (calls === 2) await setPause(h.rt, 'carol');
      if (calls <= 2) throw new Error('redis blip');
      return real(opId);
    };
    await h.run(`approve ${id}`, 'bob');
    const opId = (await store.get(id))!.meta.opId!;
    await h.waitFor(async () => h.transcript().includes('Held: @carol paused Ferry'), 'the hold', 20_000);
    await new Promise((r) => setTimeout(r, 500));
    expect((await h.deps.ops.get(opId))!.status).toBe('running');
    await clearPause(h.rt);
    const op = await h.waitForOp(opId, 20_000);
    expect(op.status).toBe('succeeded');
    for (const p of plan) expect((await queryAudit(h.rt, p.wwpn)).filter((e) => e.kind === 'adapter' && e.outcome === 'ok')).toHaveLength(1);
    expect(h.transcript()).not.toContain('stopped after');
  }, 40_000);
});
