/**
 * Drains that overlap in one cluster (maxInMaintenance 2), end to end on the lab (real Redis,
 * in-process workers): a VM that came to a host from another host's open drain keeps its real
 * home in the second ledger; two drains planning at once never count the same free memory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { reservationsOf } from '../../src/jobs/drain/reserve.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import type { Operation } from '../../src/jobs/operations.js';
import { drainLabYaml, hostState, setHostVms, whereIs } from '../support/drain-support.js';
import { queryAudit } from '../../src/audit/audit.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function restore(h: Harness, host: string) {
  await h.run(`restore ${host}`);
  const op = (await h.deps.ops.recent(1))[0]!;
  expect(op.title).toContain(`restore ${host}`);
  return h.waitForOp(op.id);
}

describe('a VM that came from another host\'s open drain', () => {
  it('keeps its original home: restore of the host it passed through leaves it alone and says where it belongs; restore of its home brings it back', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ maxInMaintenance: 2 }) });
    for (const host of CLUSTER) await setHostVms(h.deps, host, 1, { memoryMiB: 1024 });
    const [a] = await setHostVms(h.deps, 'hyp01', 1, { memoryMiB: 1024 });
    const first = await h.planned('drain hyp01');
    await h.run(`start ${first.id}`);
    expect((await h.waitForOp(first.id)).status).toBe('succeeded');
    const via = (await whereIs(h.rt, CLUSTER)).get(a!)!;
    expect(via).not.toBe('hyp01');

    // Drain the host it went to: it moves on, and its home stays hyp01.
    const second = await h.planned(`drain ${via}`);
    await h.waitForText(`${a} belongs to hyp01 (moved here by drain job ${first.id}, not restored yet)`);
    await h.run(`start ${second.id}`);
    expect((await h.waitForOp(second.id)).status).toBe('succeeded');
    const ledger = await readLedger(h.rt, via);
    expect(ledger?.vms.find((v) => v.name === a)).toMatchObject({ home: 'hyp01', homeOpId: first.id });
    const parked = (await whereIs(h.rt, CLUSTER)).get(a!)!;
    expect([via, 'hyp01']).not.toContain(parked);
    // status says where it belongs, from the open ledgers.
    await h.run(`status ${a}`);
    await h.waitForText(`${a} is running on ${parked} (home: hyp01, drained by job ${first.id}; restore hyp01 brings it back)`);

    // Restore of the host it passed through: its own VM comes home, hyp01's stays and is named.
    const r1 = await restore(h, via);
    expect(r1.status, h.transcript()).toBe('succeeded');
    expect((await whereIs(h.rt, CLUSTER)).get(a!)).toBe(parked);
    await h.waitForText(`${a} belongs to hyp01, not here (drain job ${first.id} moved it off hyp01); it stays on ${parked}, and restore hyp01 brings it home.`);
    await h.waitForText(new RegExp(`${via} restored in .*: 1 VM back home, 0 already there, 1 left to its own home host`));

    // Restore of its home brings it back.
    const r2 = await restore(h, 'hyp01');
    expect(r2.status, h.transcript()).toBe('succeeded');
    expect((await whereIs(h.rt, CLUSTER)).get(a!)).toBe('hyp01');
  });
});

describe('memory reserved by concurrent drains', () => {
  // Lab hosts have 512 GiB; plans keep 10% headroom. hyp01's and hyp02's one VM (S MiB) fits on
  // hyp03 only, and only one of them does: every other host has 4 GiB left.
  const TOTAL = 512 * 1024;
  const LIMIT = Math.floor(TOTAL * 0.9);
  const S = LIMIT - 4096;

  async function settled(h: Harness, host: string, after: number): Promise<Operation> {
    return h.waitFor(async () => {
      const ops = await h.deps.ops.recent(10);
      const op = ops.find((o) => o.id > after && o.kind === 'drain' && o.hosts[0] === host);
      return op && ((op.status === 'waiting' && op.params.stage === 'awaiting-start') || op.status === 'failed') ? op : undefined;
    }, `the plan of drain ${host}`);
  }

  it('two drains planning at once: only one counts hyp03\'s free memory; a cancel, a failed move and a finished move release or settle it', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ maxInMaintenance: 2 }) });
    const [a] = await setHostVms(h.deps, 'hyp01', 1, { memoryMiB: S });
    const [b] = await setHostVms(h.deps, 'hyp02', 1, { memoryMiB: S });
    await setHostVms(h.deps, 'hyp03', 1, { memoryMiB: 2048 });
    for (const host of ['hyp04', 'hyp05', 'hyp06']) await setHostVms(h.deps, host, 1, { memoryMiB: S });
    const before = (await h.deps.ops.recent(1))[0]?.id ?? 0;

    await Promise.all([h.run('drain hyp01'), h.run('drain hyp02')]);
    const plans = await Promise.all([settled(h, 'hyp01', before), settled(h, 'hyp02', before)]);
    const won = plans.filter((o) => o.status === 'waiting');
    const lost = plans.filter((o) => o.status === 'failed');
    expect(won, h.transcript()).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const winner = won[0]!;
    const loser = lost[0]!;
    expect(Object.values(await reservationsOf(h.rt, 'prod-a', winner.id))).toEqual([{ target: 'hyp03', mib: S }]);
    expect(await reservationsOf(h.rt, 'prod-a', loser.id)).toEqual({});
    await h.waitForText(`of hyp03's memory is reserved by job ${winner.id} (VMs planned there, not moved yet) and counted as used.`);

    // Cancelling the plan frees the memory: the other host now plans onto hyp03.
    await h.run(`cancel ${winner.id}`);
    expect((await h.waitForOp(winner.id)).status).toBe('cancelled');
    expect(await reservationsOf(h.rt, 'prod-a', winner.id)).toEqual({});
    const otherHost = loser.hosts[0]!;
    const otherVm = otherHost === 'hyp01' ? a! : b!;
    const second = await h.planned(`drain ${otherHost} rollback auto`);
    expect(Object.values(await reservationsOf(h.rt, 'prod-a', second.id))).toEqual([{ target: 'hyp03', mib: S }]);

    // A move that fails frees it too.
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${otherVm}`, 'migrate-fail');
    await h.run(`start ${second.id}`);
    expect((await h.waitForOp(second.id)).status).toBe('failed');
    expect(await reservationsOf(h.rt, 'prod-a', second.id)).toEqual({});

    // A move that ends on its target settles it (done): the VM's memory is the host's now.
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${otherVm}`, null);
    const third = await h.planned(`drain ${otherHost}`);
    await h.run(`start ${third.id}`);
    expect((await h.waitForOp(third.id)).status, h.transcript()).toBe('succeeded');
    expect((await whereIs(h.rt, ['hyp03'])).get(otherVm)).toBe('hyp03');
    const [entry] = Object.values(await reservationsOf(h.rt, 'prod-a', third.id));
    expect(entry?.done).toBeGreaterThan(0);
    expect((await hostState(h.rt, 'hyp03')).vms.reduce((s, v) => s + v.memoryMiB, 0)).toBe(2048 + S);
  });

  it('a restore reserves the memory its VMs take back before its host leaves maintenance: a drain planned meanwhile does not count it', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ maxInMaintenance: 2, migrationMs: 3000 }) });
    const [a] = await setHostVms(h.deps, 'hyp01', 1, { memoryMiB: S });
    await setHostVms(h.deps, 'hyp02', 1, { memoryMiB: S });
    await setHostVms(h.deps, 'hyp03', 1, { memoryMiB: 2048 });
    for (const host of ['hyp04', 'hyp05', 'hyp06']) await setHostVms(h.deps, host, 1, { memoryMiB: S });
    const drain = await h.planned('drain hyp01');
    await h.run(`start ${drain.id}`);
    expect((await h.waitForOp(drain.id)).status).toBe('succeeded');
    expect((await whereIs(h.rt, ['hyp03'])).get(a!)).toBe('hyp03');

    await h.run('restore hyp01');
    const restore = (await h.deps.ops.recent(1))[0]!;
    // While the VM is on its way home, hyp01 is out of maintenance and still looks empty.
    await h.waitFor(async () => (await queryAudit(h!.rt, a!)).filter((e) => e.action === 'migrateVm' && e.outcome === 'started').length === 2, `${a} to start home`);
    expect((await hostState(h.rt, 'hyp01')).facts.maintenance).toBe(false);
    expect((await hostState(h.rt, 'hyp01')).vms).toHaveLength(0);
    const before = (await h.deps.ops.recent(1))[0]!.id;
    await h.run('drain hyp02');
    const plan = await settled(h, 'hyp02', before);
    expect(plan.status, h.transcript()).toBe('failed');
    await h.waitForText(`of hyp01's memory is reserved by job ${restore.id} (VMs planned there, not moved yet) and counted as used.`);
    expect((await h.waitForOp(restore.id)).status).toBe('succeeded');
    expect(Object.values(await reservationsOf(h.rt, 'prod-a', restore.id)).every((r) => r.done !== undefined)).toBe(true);
  });
});
