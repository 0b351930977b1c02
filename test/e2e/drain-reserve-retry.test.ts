/**
 * Memory double-booked between concurrent drains (issue 11, last known gap): a drain's failed
 * move drops its memory reservation, the drain is held, another drain of the cluster
 * (maxInMaintenance 2) plans and reserves that memory, and then a retry of the first drain moved
 * its VM there anyway. A retried move reserves again first; with no room it is not made and
 * says why.
 */
import { afterEach, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { availableMiB } from '../../src/jobs/drain/reserve.js';
import { drainLabYaml, setHostVms, vmName, whereIs } from '../support/drain-support.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function waitStage(h: Harness, id: number, stage: string, status = 'waiting') {
  return h.waitFor(async () => {
    const op = await h.deps.ops.get(id);
    return op && op.params.stage === stage && op.status === status ? op : undefined;
  }, `job ${id} to reach ${stage}/${status}`);
}

async function planned(h: Harness, line: string) {
  const before = (await h.deps.ops.recent(1))[0]?.id ?? 0;
  await h.run(line);
  const op = await h.waitFor(async () => {
    const o = (await h.deps.ops.recent(1))[0];
    return o && o.id > before ? o : undefined;
  }, `a new operation for ${line}`);
  return waitStage(h, op.id, 'awaiting-start');
}

it('a held drain retried after another drain reserved its target: the VM is not moved onto memory promised twice', async () => {
  h = await makeHarness({ yaml: drainLabYaml({ hosts: 'hyp[01-03]', maxInMaintenance: 2, retries: 0 }) });
  const hosts = ['hyp01', 'hyp02', 'hyp03'];
  await setHostVms(h.deps, 'hyp03', 0);
  // Each drained VM takes 60% of what hyp03 (the only target left) can take: one fits, not two.
  const room = availableMiB(await h.rt.adapters.forHost('hyp03').describeHost('hyp03'));
  const mib = Math.floor(room * 0.6);
  await setHostVms(h.deps, 'hyp01', 1, { memoryMiB: mib });
  await setHostVms(h.deps, 'hyp02', 1, { memoryMiB: mib });
  const a1 = vmName('hyp01', 1);
  const b1 = vmName('hyp02', 1);

  // Drain A: its VM's migration fails, the drain is held (its reservation dropped).
  await setLabFault(h.rt.redis, h.rt.prefix, `vm:${a1}`, 'migrate-fail');
  const a = await planned(h, 'drain hyp01 rollback hold');
  await h.run(`start ${a.id}`);
  await waitStage(h, a.id, 'held');

  // Drain B plans meanwhile: hyp03's memory is free to it, and it reserves it.
  const b = await planned(h, 'drain hyp02');
  expect(b.id).not.toBe(a.id);

  // A is retried with the fault gone: hyp03 is promised to B now, so a1 must not go there.
  await setLabFault(h.rt.redis, h.rt.prefix, `vm:${a1}`, null);
  await h.run(`retry ${a.id}`);
  await h.waitFor(async () => h!.transcript().includes(`hyp03 has no room for ${a1} any more`), 'the retried move to be refused for want of memory');
  await waitStage(h, a.id, 'held');
  expect((await whereIs(h.rt, hosts)).get(a1)).toBe('hyp01');

  // B goes ahead on the memory it reserved.
  await h.run(`start ${b.id}`);
  const done = await h.waitForOp(b.id);
  expect(done.status).toBe('succeeded');
  const where = await whereIs(h.rt, hosts);
  expect(where.get(b1)).toBe('hyp03');
  expect(where.get(a1)).toBe('hyp01');
});
