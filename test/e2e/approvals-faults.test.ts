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
  });

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
  });
  it('an approval interrupted before its removal was queued: a later Approve carries it out instead of saying "nothing to do"', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const { id, store } = await latest(h);
    const plan = (await store.get<PlannedPort[]>(id))!.request.plan;
    const queues = h.deps.queues.ops;
    const realAdd = queues.add.bind(queues);
    let failed = false;
    queues.add = (async (...args: Parameters<typeof realAdd>) => {
      if (!failed) {
        failed = true;
        throw new Error('connection reset');
      }
      return realAdd(...args);
    }) as typeof queues.add;
    await h.run(`approve ${id}`, 'bob');
    expect((await store.get(id))!.request.status).toBe('approved');
    await h.run(`approve ${id}`, 'carol');
    const opId = (await store.get(id))!.meta.opId!;
    await h.waitFor(async () => h.transcript().includes(`Request ${id} was approved by @bob but its removal never started (Ferry was interrupted); removing the ports now, one by one (job ${opId}).`), 'the recovery notice');
    const op = await h.waitForOp(opId, 20_000);
    expect(op.status).toBe('succeeded');
    for (const p of plan) expect((await queryAudit(h.rt, p.wwpn)).filter((e) => e.kind === 'adapter' && e.outcome === 'ok')).toHaveLength(1);
  });

  it('a second approver while the first is still handing the approval on: told it is already approved, nothing taken over', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const { id, store } = await latest(h);
    const queues = h.deps.queues.ops;
    const realAdd = queues.add.bind(queues);
    // Bob's call stops just before it queues the removal (its operation exists, no job yet).
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const atGate = new Promise<void>((r) => (entered = r));
    let adds = 0;
    queues.add = (async (...args: Parameters<typeof realAdd>) => {
      if (adds++ === 0) {
        entered();
        await gate;
      }
      return realAdd(...args);
    }) as typeof queues.add;
    const bob = h.run(`approve ${id}`, 'bob');
    await atGate;
    await h.run(`approve ${id}`, 'carol');
    await h.sync();
    expect(h.ephemerals('carol')).toEqual([`Already approved by @bob; nothing to do.`]);
    expect(h.transcript()).not.toContain('never started');
    release();
    await bob;
    const opId = (await store.get(id))!.meta.opId!;
    expect((await h.waitForOp(opId, 20_000)).status).toBe('succeeded');
    expect(adds).toBe(1);
  });

  it('an approval interrupted before its operation was created: a later Approve creates one operation and runs it once', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const { id, store } = await latest(h);
    const ops = h.deps.ops;
    const realCreate = ops.create.bind(ops);
    let failed = false;
    ops.create = async (op) => {
      if (!failed) {
        failed = true;
        throw new Error('connection reset');
      }
      return realCreate(op);
    };
    await h.run(`approve ${id}`, 'bob');
    expect((await store.get(id))!.meta.opId).toBeUndefined();
    await Promise.all([h.run(`approve ${id}`, 'carol'), h.run(`approve ${id}`, 'bob')]);
    const opId = await h.waitFor(async () => (await store.get(id))!.meta.opId, 'an operation');
    expect((await h.waitForOp(opId, 20_000)).status).toBe('succeeded');
    expect((await h.deps.ops.recent(10)).filter((o) => o.kind === 'remove-stale-ports')).toHaveLength(1);
  });
});
